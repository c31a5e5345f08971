"""Minimal H.264 / H.265 sequence parameter set parsers.

The ingest never decodes, yet the dashboard and the WebRTC uplink need the
profile, level and picture size (aiortc only negotiates constrained baseline,
so a High-profile camera must be recognised before it is offered).  PyAV's
codec context fills those in only when FFmpeg's stream probing happens to parse
them, and not for every source, so we read them from the SPS ourselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Codec = Literal["h264", "h265"]

_H264_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}

H264_PROFILES = {
    44: "CAVLC 4:4:4 Intra",
    66: "Baseline",
    77: "Main",
    88: "Extended",
    100: "High",
    110: "High 10",
    122: "High 4:2:2",
    244: "High 4:4:4 Predictive",
}

H265_PROFILES = {
    1: "Main",
    2: "Main 10",
    3: "Main Still Picture",
    4: "Format Range Extensions",
    5: "High Throughput",
    9: "Screen Content Coding",
}


# The widest or tallest picture any level allows: sqrt(8 x MaxFS) at H.264
# level 6.2 (139264 macroblocks) and sqrt(8 x MaxLumaPs) at H.265 level 6.2
# both come to 16888 pixels. A larger one is a corrupt SPS.
MAX_DIMENSION = 16888
# A frame rate from the VUI beyond this is a corrupt or placeholder timing info.
MAX_FPS = 1000.0


class SpsError(ValueError):
    """The bytes are not a parameter set we can read."""


@dataclass(frozen=True, slots=True)
class SpsInfo:
    codec: Codec
    profile_idc: int
    profile: str
    level_idc: int
    level: str
    width: int
    height: int
    fps: float | None
    # H.264 only: bytes 1..3 of the SPS, the SDP profile-level-id.
    profile_level_id: str | None = None
    tier: str | None = None


def unescape_rbsp(nal: bytes) -> bytes:
    """Remove emulation-prevention bytes (00 00 03 -> 00 00)."""
    out = bytearray()
    zeros = 0
    for byte in nal:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


class BitReader:
    """MSB-first bit reader with Exp-Golomb codes (H.264 9.1)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def bits_left(self) -> int:
        return len(self._data) * 8 - self._pos

    def u(self, n: int) -> int:
        if n > self.bits_left:
            raise SpsError("parameter set truncated")
        value = 0
        for _ in range(n):
            byte = self._data[self._pos >> 3]
            value = (value << 1) | ((byte >> (7 - (self._pos & 7))) & 1)
            self._pos += 1
        return value

    def flag(self) -> bool:
        return self.u(1) == 1

    def skip(self, n: int) -> None:
        if n > self.bits_left:
            raise SpsError("parameter set truncated")
        self._pos += n

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise SpsError("bad Exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _h264_profile_name(profile_idc: int, constraints: int) -> str:
    if profile_idc == 66 and constraints & 0x40:
        return "Constrained Baseline"
    if profile_idc == 100 and constraints & 0x08:
        return "Constrained High" if constraints & 0x04 else "Progressive High"
    return H264_PROFILES.get(profile_idc, f"profile {profile_idc}")


def _scaling_list(r: BitReader, size: int) -> None:
    last, nxt = 8, 8
    for _ in range(size):
        if nxt != 0:
            nxt = (last + r.se() + 256) % 256
        last = nxt if nxt != 0 else last


def parse_h264_sps(nal: bytes) -> SpsInfo:
    """Parse an H.264 SPS NAL unit (with its 1-byte header, no start code)."""
    if not nal or nal[0] & 0x1F != 7:
        raise SpsError("not an H.264 SPS")
    r = BitReader(unescape_rbsp(nal[1:]))
    profile_idc = r.u(8)
    constraints = r.u(8)
    level_idc = r.u(8)
    r.ue()  # seq_parameter_set_id
    chroma_format_idc = 1
    separate_colour_plane = False
    if profile_idc in _H264_HIGH_PROFILES:
        chroma_format_idc = _chroma_format(r.ue())
        if chroma_format_idc == 3:
            separate_colour_plane = r.flag()
        r.ue()  # bit_depth_luma_minus8
        r.ue()  # bit_depth_chroma_minus8
        r.skip(1)  # qpprime_y_zero_transform_bypass_flag
        if r.flag():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if r.flag():
                    _scaling_list(r, 16 if i < 6 else 64)
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type > 2:
        raise SpsError(f"pic_order_cnt_type {poc_type} is not 0-2")
    if poc_type == 0:
        r.ue()
    elif poc_type == 1:
        r.skip(1)
        r.se()
        r.se()
        for _ in range(r.ue()):
            r.se()
    r.ue()  # max_num_ref_frames
    r.skip(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_units = r.ue() + 1
    frame_mbs_only = r.flag()
    if not frame_mbs_only:
        r.skip(1)
    r.skip(1)  # direct_8x8_inference_flag
    crop = (0, 0, 0, 0)
    if r.flag():
        crop = (r.ue(), r.ue(), r.ue(), r.ue())
    chroma_array_type = 0 if separate_colour_plane else chroma_format_idc
    if chroma_array_type == 0:
        crop_x, crop_y = 1, 2 - frame_mbs_only
    else:
        sub_w = 2 if chroma_format_idc in (1, 2) else 1
        sub_h = 2 if chroma_format_idc == 1 else 1
        crop_x, crop_y = sub_w, sub_h * (2 - frame_mbs_only)
    width = _cropped("width", width_mbs * 16, crop_x, crop[0], crop[1])
    height = _cropped("height", (2 - frame_mbs_only) * height_units * 16, crop_y, crop[2],
                      crop[3])
    fps = None
    try:
        fps = _h264_vui_fps(r)
    except SpsError:
        pass  # VUI is optional and sometimes truncated; fps then comes from elsewhere
    if fps is not None and not 0 < fps <= MAX_FPS:
        fps = None
    if level_idc == 9 or (level_idc == 11 and constraints & 0x10 and profile_idc in (66, 77, 88)):
        level = "1b"
    else:
        level = f"{level_idc / 10:g}"
    return SpsInfo(
        codec="h264",
        profile_idc=profile_idc,
        profile=_h264_profile_name(profile_idc, constraints),
        level_idc=level_idc,
        level=level,
        width=width,
        height=height,
        fps=fps,
        profile_level_id=nal[1:4].hex(),
    )


def _chroma_format(idc: int) -> int:
    if idc > 3:
        raise SpsError(f"chroma_format_idc {idc} is not 0-3")
    return idc


def _cropped(what: str, coded: int, unit: int, first: int, second: int) -> int:
    """The picture's `what` (width or height) once its cropping window is taken off."""
    if not 0 < coded <= MAX_DIMENSION:
        raise SpsError(f"the SPS's coded picture {what} {coded} is not 1-{MAX_DIMENSION} pixels")
    cut = unit * (first + second)
    if cut >= coded:
        raise SpsError(f"the SPS's cropping window takes {cut} of its {coded} pixel {what} "
                       f"(offsets {first} + {second} in units of {unit}), leaving no picture")
    return coded - cut


def _h264_vui_fps(r: BitReader) -> float | None:
    if not r.flag():  # vui_parameters_present_flag
        return None
    if r.flag():  # aspect_ratio_info_present_flag
        if r.u(8) == 255:
            r.skip(32)
    if r.flag():  # overscan_info_present_flag
        r.skip(1)
    if r.flag():  # video_signal_type_present_flag
        r.skip(4)
        if r.flag():
            r.skip(24)
    if r.flag():  # chroma_loc_info_present_flag
        r.ue()
        r.ue()
    if not r.flag():  # timing_info_present_flag
        return None
    num_units_in_tick = r.u(32)
    time_scale = r.u(32)
    if num_units_in_tick == 0 or time_scale == 0:
        return None
    return time_scale / (2 * num_units_in_tick)


def parse_h265_sps(nal: bytes) -> SpsInfo:
    """Parse an H.265 SPS NAL unit (with its 2-byte header) up to the picture size."""
    if len(nal) < 3 or (nal[0] >> 1) & 0x3F != 33:
        raise SpsError("not an H.265 SPS")
    r = BitReader(unescape_rbsp(nal[2:]))
    r.skip(4)  # sps_video_parameter_set_id
    max_sub_layers_minus1 = r.u(3)
    if max_sub_layers_minus1 > 6:
        raise SpsError(f"sps_max_sub_layers_minus1 {max_sub_layers_minus1} is not 0-6")
    r.skip(1)  # sps_temporal_id_nesting_flag
    r.skip(2)  # general_profile_space
    tier = "High" if r.flag() else "Main"
    profile_idc = r.u(5)
    compatibility = r.u(32)
    r.skip(4 + 43 + 1)  # source flags, constraint/reserved bits
    level_idc = r.u(8)
    sub_profile, sub_level = [], []
    for _ in range(max_sub_layers_minus1):
        sub_profile.append(r.flag())
        sub_level.append(r.flag())
    if max_sub_layers_minus1 > 0:
        r.skip(2 * (8 - max_sub_layers_minus1))
    for has_profile, has_level in zip(sub_profile, sub_level, strict=True):
        if has_profile:
            r.skip(88)
        if has_level:
            r.skip(8)
    r.ue()  # sps_seq_parameter_set_id
    chroma_format_idc = _chroma_format(r.ue())
    separate_colour_plane = chroma_format_idc == 3 and r.flag()
    coded_width = r.ue()
    coded_height = r.ue()
    left = right = top = bottom = 0
    if r.flag():  # conformance_window_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
    chroma_array_type = 0 if separate_colour_plane else chroma_format_idc
    sub_w = 2 if chroma_array_type in (1, 2) else 1
    sub_h = 2 if chroma_array_type == 1 else 1
    width = _cropped("width", coded_width, sub_w, left, right)
    height = _cropped("height", coded_height, sub_h, top, bottom)
    if profile_idc == 0:
        # Some encoders leave general_profile_idc 0 and only set a compatibility flag.
        for idc in range(1, 32):
            if compatibility & (1 << (31 - idc)):
                profile_idc = idc
                break
    return SpsInfo(
        codec="h265",
        profile_idc=profile_idc,
        profile=H265_PROFILES.get(profile_idc, f"profile {profile_idc}"),
        level_idc=level_idc,
        level=f"{level_idc / 30:g}",
        width=width,
        height=height,
        fps=None,
        tier=tier,
    )


def parse_sps(codec: Codec, nal: bytes) -> SpsInfo:
    return parse_h264_sps(nal) if codec == "h264" else parse_h265_sps(nal)
