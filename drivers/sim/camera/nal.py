"""H.264/H.265 NAL unit helpers the simulator needs (Annex-B splitting, types)."""

from __future__ import annotations

from typing import Literal

Codec = Literal["h264", "h265"]

H264_IDR = 5
H264_SPS = 7
H264_PPS = 8
H265_VPS = 32
H265_SPS = 33
H265_PPS = 34


def split_annexb(data: bytes) -> list[bytes]:
    """Split an Annex-B byte stream into NAL units (start codes removed)."""
    nals: list[bytes] = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        start = i + 3
        j = data.find(b"\x00\x00\x01", start)
        end = len(data) if j < 0 else j
        # A 4-byte start code leaves a zero on the previous unit; a NAL unit
        # itself always ends in a non-zero byte (rbsp_stop_one_bit).
        nal = data[start:end].rstrip(b"\x00")
        if nal:
            nals.append(nal)
        i = j
    return nals


def nal_type(codec: Codec, nal: bytes) -> int:
    if codec == "h264":
        return nal[0] & 0x1F
    return (nal[0] >> 1) & 0x3F


def is_keyframe_nal(codec: Codec, nal: bytes) -> bool:
    t = nal_type(codec, nal)
    if codec == "h264":
        return t == H264_IDR
    return 16 <= t <= 21


def parameter_set_types(codec: Codec) -> tuple[int, ...]:
    return (H264_SPS, H264_PPS) if codec == "h264" else (H265_VPS, H265_SPS, H265_PPS)
