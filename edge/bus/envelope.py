"""The wire envelope shared by every bus message.

Frames: ``[topic, header, body, *blobs]``

- topic: UTF-8 text, the subscription key (see :mod:`edge.bus.topics`);
- header: msgpack array ``[type, v, src, seq, ts, epoch]``: message type
  name, schema version, publishing source, a sequence number per (source,
  topic) so a subscriber of any prefix can tell what it missed, wall-clock ns,
  and the publisher's epoch: random per client instance, so a restarted
  service (same source name, sequence from 1 again) is told apart from a
  replay of what it said before. Readers take a missing epoch as 0 and ignore
  elements after the sixth, so the header can grow. (An array, not a map: it
  is on every message, and positions pack and parse faster.)
- body: msgpack map of the message's fields (:mod:`edge.bus.messages`);
- blobs: raw binary frames (thumbnails, video), never copied into msgpack.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgpack

from edge.bus.messages import MESSAGE_TYPES, Message, SchemaError


class MalformedFrame(ValueError):
    """A multipart message that cannot be decoded; `kind` groups them for counting."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class Header(NamedTuple):
    """A message's header. A tuple, not a frozen dataclass: every message on the
    bus makes one, and a frozen dataclass costs four times as much to build."""

    type: str
    version: int
    source: str
    seq: int
    ts_ns: int
    epoch: int = 0


@dataclass(slots=True)
class Envelope:
    """A received message: decoded header and body, and the raw blobs."""

    topic: str
    header: Header
    message: Message | None  # None when `raw` decoding was asked for, or type unknown
    body: dict[str, Any]
    blobs: list[bytes]
    gap: int = 0  # messages of this (source, topic) missed just before this one
    replayed: bool = False  # a last-value-cache replay of something older


_packb = msgpack.Packer(use_bin_type=True).pack
_unpackb = msgpack.unpackb
# Builds a Header from the checked six-element list without the keyword handling.
_new_header = tuple.__new__
_ARRAY6 = b"\x96"
_prefixes: dict[tuple[str, int, str], bytes] = {}
MAX_EPOCH = 2**32 - 1


def _header_prefix(type_name: str, version: int, source: str) -> bytes:
    # type, version and source repeat on every message of a publisher: pack them once.
    key = (type_name, version, source)
    prefix = _prefixes.get(key)
    if prefix is None:
        prefix = _prefixes[key] = _ARRAY6 + _packb(type_name) + _packb(version) + _packb(source)
    return prefix


def encode(
    topic: str, message: Message, source: str, seq: int, blobs: tuple[bytes, ...] = (),
    epoch: int = 0,
) -> list[bytes]:
    # seq, stamp and epoch packed as one array, less its one-byte array marker: one call.
    header = _header_prefix(message.TYPE, message.VERSION, source) + _packb(
        (seq, time.time_ns(), epoch))[1:]
    return [topic.encode(), header, _packb(message.to_body()), *blobs]


def decode_header(frames: list[bytes]) -> tuple[str, Header]:
    """Topic and header of one multipart message, without touching its body.

    The broker checks state messages with this before caching them.
    """
    if len(frames) < 3:
        raise MalformedFrame("too few frames", f"{len(frames)} frame(s), expected at least 3")
    try:
        topic = frames[0].decode()
    except UnicodeDecodeError:
        raise MalformedFrame("bad topic", "topic is not UTF-8") from None
    try:
        h = _unpackb(frames[1], strict_map_key=False)  # elements added later may be maps
    except Exception as e:  # msgpack raises many types for garbage input
        raise MalformedFrame("bad header", f"{type(e).__name__}: {e}") from None
    if type(h) is not list or len(h) < 5:
        raise MalformedFrame("bad header", "header is not an array of at least 5 elements")
    if len(h) != 6:
        h = h[:5] + [h[5] if len(h) > 5 else 0]
    t, v, src, seq, ts, epoch = h
    if not (type(t) is str and type(src) is str and type(v) is int
            and type(seq) is int and type(ts) is int and type(epoch) is int):
        raise MalformedFrame("bad header", "header fields have the wrong types")
    return topic, _new_header(Header, h)


def decode(frames: list[bytes], *, raw: bool = False) -> Envelope:
    """Decode one multipart message; raise :class:`MalformedFrame` on anything wrong."""
    topic, header = decode_header(frames)
    try:
        body = _unpackb(frames[2], strict_map_key=False)
    except Exception as e:  # msgpack raises many types for garbage input
        raise MalformedFrame("bad body", f"{type(e).__name__}: {e}") from None
    if type(body) is not dict:
        raise MalformedFrame("bad body", f"body is {type(body).__name__}, expected a map")
    message: Message | None = None
    if not raw:
        cls = MESSAGE_TYPES.get(header.type)
        if cls is None:
            raise MalformedFrame("unknown type", repr(header.type))
        try:
            message = cls.from_body(body)
        except SchemaError as e:
            raise MalformedFrame("schema", str(e)) from None
    return Envelope(topic, header, message, body, frames[3:])
