"""How one access unit travels on the media plane.

Frames: ``[b"au", header, data]``; header is a msgpack array
``[epoch, seq, keyframe, pts, dts, tb_num, tb_den, codec, received_ns]``.

``epoch`` is random per publisher start: a consumer that sees it change knows
the camera process restarted and its sequence numbers began again. ``seq``
counts every unit the publisher sent, so a gap means units were lost between
publisher and consumer. ``data`` is the Annex-B access unit exactly as the
camera sent it (keyframes begin with their parameter sets), in its own frame
and never copied into msgpack.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction

import msgpack

TOPIC = b"au"


class MediaFormatError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class MediaFrame:
    epoch: int
    seq: int
    keyframe: bool
    pts: int | None
    dts: int | None
    time_base: Fraction
    codec: str
    received_ns: int
    data: bytes

    @property
    def pts_s(self) -> float | None:
        return None if self.pts is None else float(self.pts * self.time_base)


def encode(frame: MediaFrame) -> list[bytes]:
    return encode_parts(frame.epoch, frame.seq, frame.keyframe, frame.pts, frame.dts,
                        frame.time_base, frame.codec, frame.received_ns, frame.data)


def encode_parts(epoch: int, seq: int, keyframe: bool, pts: int | None, dts: int | None,
                 time_base: Fraction, codec: str, received_ns: int, data: bytes) -> list[bytes]:
    """`encode` without building a `MediaFrame` first (the publisher's per-frame path)."""
    header = msgpack.packb([epoch, seq, keyframe, pts, dts, time_base.numerator,
                            time_base.denominator, codec, received_ns])
    return [TOPIC, header, data]


@functools.lru_cache(maxsize=8)
def _fraction(num: int, den: int) -> Fraction:
    # A stream's time base never changes; building a Fraction costs a gcd per frame.
    return Fraction(num, den)


def decode(frames: list[bytes]) -> MediaFrame:
    if len(frames) != 3 or frames[0] != TOPIC:
        raise MediaFormatError(f"expected 3 frames starting {TOPIC!r}, got {len(frames)}")
    try:
        h = msgpack.unpackb(frames[1])
        epoch, seq, key, pts, dts, num, den, codec, received = h[:9]
        return MediaFrame(int(epoch), int(seq), bool(key), pts, dts, _fraction(num, den),
                          str(codec), int(received), frames[2])
    except Exception as e:  # anything wrong in a header is the same problem to us
        raise MediaFormatError(f"bad media header: {type(e).__name__}: {e}") from None
