"""Annex-B byte streams, avcC/hvcC extradata, and parameter-set bookkeeping.

Consumers (recorder, WebRTC uplink, a decoder started mid-stream) must be able to
start at any keyframe.  Cameras usually repeat SPS/PPS before each IDR, but not
all do (GStreamer's rtph264pay by default sends them only in the SDP), so the
ingest tracks the latest parameter sets and prepends them to keyframes that
lack them.
"""

from __future__ import annotations

import struct
from typing import Literal

Codec = Literal["h264", "h265"]

START_CODE = b"\x00\x00\x00\x01"

H264_IDR = 5
H264_SPS = 7
H264_PPS = 8
H264_AUD = 9
H265_VPS = 32
H265_SPS = 33
H265_PPS = 34
H265_AUD = 35


def split_annexb(data: bytes) -> list[bytes]:
    """NAL units of an Annex-B buffer, start codes (and trailing zeros) removed."""
    nals: list[bytes] = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        start = i + 3
        j = data.find(b"\x00\x00\x01", start)
        # A NAL unit ends in a non-zero byte (rbsp_stop_one_bit); zeros before
        # the next start code belong to a 4-byte start code or are padding.
        nal = data[start : len(data) if j < 0 else j].rstrip(b"\x00")
        if nal:
            nals.append(nal)
        i = j
    return nals


def nal_types(codec: Codec, data: bytes) -> list[int]:
    """Types of the NAL units of an Annex-B buffer, read in place (nothing is copied)."""
    types: list[int] = []
    end = len(data) - 3
    h264 = codec == "h264"
    i = data.find(b"\x00\x00\x01")
    # Emulation prevention guarantees 00 00 01 never occurs inside a NAL unit.
    while 0 <= i < end:
        header = data[i + 3]
        if header:  # a zero here is padding before a 4-byte start code, not a unit
            types.append(header & 0x1F if h264 else (header >> 1) & 0x3F)
        i = data.find(b"\x00\x00\x01", i + 3)
    return types


def picture_nal_types(codec: Codec, data: bytes) -> list[int]:
    """Types of an access unit's NAL units up to and including its first slice.

    For a unit framed by FFmpeg's H.264/H.265 parser (the RTSP demuxer always
    uses it) this is everything that says whether it is a keyframe and whether
    it carries parameter sets: the parser ends a packet at any parameter set,
    AUD or prefix SEI that follows a slice, so what comes after the first slice
    is more slices of the same picture (and, in H.265, suffix SEI). Stopping
    there spares scanning the slice data, nearly all of every unit's bytes: the
    full scan was the largest piece of per-unit Python in the ingest. A buffer
    without a slice gives the types of all its units. Unlike `nal_types`, an
    H.265 TRAIL_N slice (first header byte zero) is a unit, not padding.
    """
    types: list[int] = []
    end = len(data) - 3
    i = data.find(b"\x00\x00\x01")
    if codec == "h264":
        while 0 <= i < end:
            header = data[i + 3]
            if header:  # a zero here is padding before a 4-byte start code
                t = header & 0x1F
                types.append(t)
                if 1 <= t <= 5:  # coded slice (non-IDR, data partitions A-C, IDR)
                    break
            i = data.find(b"\x00\x00\x01", i + 3)
        return types
    while 0 <= i < end:
        # A zero first header byte is TRAIL_N, a slice, when the second one (the
        # temporal id plus one) is not zero; two zeros are padding.
        if data[i + 3] or data[i + 4 : i + 5] not in (b"", b"\x00"):
            t = (data[i + 3] >> 1) & 0x3F
            types.append(t)
            if t < 32:  # VCL NAL unit
                break
        i = data.find(b"\x00\x00\x01", i + 3)
    return types


def join_annexb(nals: list[bytes] | tuple[bytes, ...]) -> bytes:
    return b"".join(START_CODE + n for n in nals)


def is_annexb(data: bytes) -> bool:
    return data.startswith(b"\x00\x00\x01") or data.startswith(b"\x00\x00\x00\x01")


def length_prefixed_to_annexb(data: bytes, length_size: int = 4) -> bytes:
    """AVCC/HVCC sample (big-endian length prefixes) to Annex-B."""
    out = []
    pos = 0
    while pos + length_size <= len(data):
        size = int.from_bytes(data[pos : pos + length_size], "big")
        pos += length_size
        if size == 0 or pos + size > len(data):
            break
        out.append(START_CODE + data[pos : pos + size])
        pos += size
    return b"".join(out)


def nal_type(codec: Codec, nal: bytes) -> int:
    if codec == "h264":
        return nal[0] & 0x1F
    return (nal[0] >> 1) & 0x3F


def is_keyframe_nal(codec: Codec, nal: bytes) -> bool:
    """IDR (H.264) or IRAP (H.265: BLA, IDR, CRA) slice."""
    t = nal_type(codec, nal)
    return t == H264_IDR if codec == "h264" else 16 <= t <= 21


def keyframe_nal_types(codec: Codec) -> tuple[int, ...]:
    """NAL types `is_keyframe_nal` accepts."""
    return (H264_IDR,) if codec == "h264" else tuple(range(16, 22))


def parameter_set_types(codec: Codec) -> tuple[int, ...]:
    return (H264_SPS, H264_PPS) if codec == "h264" else (H265_VPS, H265_SPS, H265_PPS)


def sps_type(codec: Codec) -> int:
    return H264_SPS if codec == "h264" else H265_SPS


def parse_extradata(codec: Codec, extradata: bytes) -> tuple[list[bytes], int]:
    """Parameter-set NAL units in `extradata` and the sample NAL length size.

    FFmpeg's RTSP demuxer gives Annex-B extradata built from sprop-parameter-sets;
    other demuxers give avcC (ISO 14496-15 5.2.4.1) or hvcC (8.3.3.1).  The
    length size is 0 when samples are Annex-B.
    """
    if not extradata:
        return [], 0
    if is_annexb(extradata):
        return split_annexb(extradata), 0
    try:
        if codec == "h264":
            return _parse_avcc(extradata)
        return _parse_hvcc(extradata)
    except (IndexError, struct.error):
        return [], 0


def _parse_avcc(data: bytes) -> tuple[list[bytes], int]:
    if data[0] != 1:
        return [], 0
    length_size = (data[4] & 0x03) + 1
    nals = []
    pos = 5
    for count_mask in (0x1F, 0xFF):
        count = data[pos] & count_mask
        pos += 1
        for _ in range(count):
            (size,) = struct.unpack_from("!H", data, pos)
            pos += 2
            nals.append(data[pos : pos + size])
            pos += size
    return nals, length_size


def _parse_hvcc(data: bytes) -> tuple[list[bytes], int]:
    if data[0] != 1 or len(data) < 23:
        return [], 0
    length_size = (data[21] & 0x03) + 1
    arrays = data[22]
    pos = 23
    nals = []
    for _ in range(arrays):
        pos += 1  # array_completeness, reserved, NAL_unit_type
        (count,) = struct.unpack_from("!H", data, pos)
        pos += 2
        for _ in range(count):
            (size,) = struct.unpack_from("!H", data, pos)
            pos += 2
            nals.append(data[pos : pos + size])
            pos += size
    return nals, length_size


class ParameterSetCache:
    """Latest VPS/SPS/PPS seen (extradata or in-band), by NAL type."""

    def __init__(self, codec: Codec) -> None:
        self.codec: Codec = codec
        self._sets: dict[int, bytes] = {}
        self.version = 0

    def update(self, nal: bytes) -> None:
        t = nal_type(self.codec, nal)
        if t in parameter_set_types(self.codec) and self._sets.get(t) != nal:
            self._sets[t] = nal
            self.version += 1

    def ordered(self) -> tuple[bytes, ...]:
        return tuple(self._sets[t] for t in parameter_set_types(self.codec) if t in self._sets)

    @property
    def complete(self) -> bool:
        return all(t in self._sets for t in parameter_set_types(self.codec))

    def get(self, t: int) -> bytes | None:
        return self._sets.get(t)
