"""The link probe datagram: 24 bytes the vehicle sends per WAN and the centre sends back.

::

    0      4        5     6          8       12     16          24
    | EDGP | version | kind | reserved | link | seq  | sent_ns   |   network byte order

- ``link``: CRC-32 of the link's id (:func:`link_tag`), so a reply that reached the
  wrong prober is recognised, and the centre could count per link without a table;
- ``seq``: the prober's sequence number; with ``sent_ns`` (the prober's own
  monotonic clock, never compared with the centre's) it names one probe;
- ``kind``: the responder sends the datagram back unchanged but for this byte,
  ``PROBE`` → ``REPLY``, and answers only a ``PROBE``. Without it two responders
  could be made to reflect one spoofed datagram to each other for ever (the
  UDP echo loop); the reply is as long as the probe, so nothing is amplified.

:func:`parse` never raises: anything that is not exactly a probe of this version is
None, which the caller counts as malformed.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Final

MAGIC: Final = b"EDGP"
VERSION: Final = 1
PROBE: Final = 0
REPLY: Final = 1
_FORMAT = struct.Struct("!4sBBHIIQ")
SIZE: Final = _FORMAT.size
_KIND_AT = 5  # byte offset of `kind`, which the responder flips
_U32 = 0xFFFF_FFFF
_U64 = 0xFFFF_FFFF_FFFF_FFFF


@dataclass(frozen=True, slots=True)
class Probe:
    link: int
    seq: int
    sent_ns: int
    kind: int = PROBE


def link_tag(link_id: str) -> int:
    """The 32-bit tag of a link id as it travels in a probe."""
    return zlib.crc32(link_id.encode())


def encode(probe: Probe) -> bytes:
    if probe.kind not in (PROBE, REPLY):
        raise ValueError(f"probe kind {probe.kind}: expected {PROBE} or {REPLY}")
    return _FORMAT.pack(MAGIC, VERSION, probe.kind, 0, probe.link & _U32, probe.seq & _U32,
                        probe.sent_ns & _U64)


def parse(data: bytes) -> Probe | None:
    """The probe or reply in `data`, or None for anything else (never raises)."""
    if len(data) != SIZE:
        return None
    magic, version, kind, reserved, link, seq, sent_ns = _FORMAT.unpack(data)
    if magic != MAGIC or version != VERSION or kind not in (PROBE, REPLY) or reserved != 0:
        return None
    return Probe(link, seq, sent_ns, kind)


def reply_to(data: bytes) -> bytes | None:
    """What the responder sends back for `data`: the same bytes marked as a reply.

    None when `data` is not a probe (a reply, another version, garbage).
    """
    probe = parse(data)
    if probe is None or probe.kind != PROBE:
        return None
    return data[:_KIND_AT] + bytes([REPLY]) + data[_KIND_AT + 1:]
