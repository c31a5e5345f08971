"""Unit tests that need no network: timestamp blocks, SPS parsing, NAL helpers, RTP payloads."""

from __future__ import annotations

import struct

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.rtsp.annexb import (
    join_annexb,
    length_prefixed_to_annexb,
    parse_extradata,
    split_annexb,
)
from drivers.rtsp.sps import BitReader, parse_h264_sps, parse_h265_sps, unescape_rbsp
from drivers.sim.camera import decode_timestamp_blocks, draw_timestamp_blocks, wall_ms
from drivers.sim.camera.encoder import EncoderSettings, LiveEncoder, ParameterSets
from drivers.sim.camera.encoder import probe_parameter_sets as encoder_parameter_sets
from drivers.sim.camera.rtp import packetize
from drivers.sim.camera.scene import Scene

pytestmark = pytest.mark.timeout(30)


@given(st.integers(min_value=0, max_value=(1 << 48) - 1))
@settings(max_examples=50, deadline=None)
def test_timestamp_blocks_round_trip_raw(value: int) -> None:
    frame = np.full((360, 640, 3), 128, np.uint8)
    draw_timestamp_blocks(frame, value)
    assert decode_timestamp_blocks(frame) == value


def test_timestamp_blocks_absent_or_too_small() -> None:
    assert decode_timestamp_blocks(np.full((360, 640, 3), 128, np.uint8)) is None
    assert decode_timestamp_blocks(np.zeros((360, 640), np.uint8)) is None
    assert decode_timestamp_blocks(np.zeros((40, 100, 3), np.uint8)) is None
    with pytest.raises(ValueError):
        draw_timestamp_blocks(np.zeros((40, 100, 3), np.uint8), 1)


def test_timestamp_blocks_survive_low_bitrate_h264() -> None:
    """The sub stream's bitrate (512 kbit/s at 640x360) must not erase the code."""
    settings_ = EncoderSettings("unit", 640, 360, bitrate=512_000, preset="ultrafast")
    encoder = LiveEncoder(settings_)
    decoder = av.CodecContext.create("h264", "r")
    decoded = []
    start = wall_ms()
    for _ in range(15):
        for au in encoder.encode_next():
            for frame in decoder.decode(av.Packet(join_annexb(list(au.nals)))):
                assert isinstance(frame, av.VideoFrame)
                decoded.append(decode_timestamp_blocks(frame.to_ndarray(format="bgr24")))
    encoder.close()
    assert len(decoded) >= 10
    assert all(v is not None and start <= v <= wall_ms() for v in decoded)


def test_scene_is_cheap_and_changes() -> None:
    scene = Scene("north-gate", 1280, 720, 30)
    a, b = scene.render(0), scene.render(15)
    assert a.shape == (720, 1280, 3) and a.dtype == np.uint8
    assert not np.array_equal(a, b)


def test_exp_golomb() -> None:
    # ue: 1 -> 0, 010 -> 1, 011 -> 2, 00100 -> 3; se: 010 -> +1, 011 -> -1
    reader = BitReader(bytes([0b10100110, 0b01000000]))
    assert [reader.ue(), reader.ue(), reader.ue(), reader.ue()] == [0, 1, 2, 3]
    reader = BitReader(bytes([0b01001100]))
    assert [reader.se(), reader.se()] == [1, -1]
    assert unescape_rbsp(b"\x00\x00\x03\x01\x00\x00\x03") == b"\x00\x00\x01\x00\x00"


@pytest.mark.parametrize(
    ("width", "height", "profile", "expected"),
    [
        (1280, 720, "baseline", "Constrained Baseline"),
        (1920, 1080, "high", "High"),  # 1088 coded rows, cropped to 1080
        (640, 360, "main", "Main"),
    ],
)
def test_h264_sps_from_x264(width: int, height: int, profile: str, expected: str) -> None:
    params = encoder_parameter_sets(
        EncoderSettings("unit", width, height, profile=profile, preset="ultrafast")  # type: ignore[arg-type]
    )
    info = parse_h264_sps(params.sps)
    assert (info.width, info.height, info.profile, info.fps) == (width, height, expected, 30.0)
    assert info.profile_level_id == params.sps[1:4].hex()
    assert info.level in {"3", "3.1", "4", "4.1"}


def test_h265_sps_from_x265() -> None:
    params: ParameterSets = encoder_parameter_sets(
        EncoderSettings("unit", 640, 360, codec="h265", preset="ultrafast")
    )
    assert params.vps is not None
    info = parse_h265_sps(params.sps)
    assert (info.codec, info.profile, info.width, info.height) == ("h265", "Main", 640, 360)
    assert info.level in {"2.1", "3", "3.1"}


def test_annexb_and_avcc_helpers() -> None:
    sps, pps, idr = b"\x67\x42\xc0\x1f\xaa", b"\x68\xce\x3c\x80", b"\x65\x88\x00\x00\x03\x01"
    stream = b"\x00\x00\x00\x01" + sps + b"\x00\x00\x01" + pps + b"\x00\x00\x00\x01" + idr
    assert split_annexb(stream) == [sps, pps, idr]
    lp = b"".join(struct.pack("!I", len(n)) + n for n in (sps, pps))
    assert length_prefixed_to_annexb(lp) == join_annexb([sps, pps])
    avcc = bytes([1, 0x42, 0xC0, 0x1F, 0xFF, 0xE1]) + struct.pack("!H", len(sps)) + sps
    avcc += bytes([1]) + struct.pack("!H", len(pps)) + pps
    assert parse_extradata("h264", avcc) == ([sps, pps], 4)
    assert parse_extradata("h264", join_annexb([sps, pps])) == ([sps, pps], 0)


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_rtp_payloads_fragment_and_aggregate(codec: str) -> None:
    if codec == "h264":
        small = [b"\x67" + bytes(20), b"\x68" + bytes(3)]
        big = b"\x65" + bytes(range(256)) * 20
    else:
        small = [b"\x40\x01" + bytes(20), b"\x42\x01" + bytes(30), b"\x44\x01" + bytes(4)]
        big = b"\x26\x01" + bytes(range(256)) * 20
    payloads = packetize(codec, [*small, big], mtu=1400)  # type: ignore[arg-type]
    assert all(len(p.data) + 12 <= 1400 for p in payloads)
    assert [p.marker for p in payloads] == [False] * (len(payloads) - 1) + [True]
    if codec == "h264":
        assert payloads[0].data[0] & 0x1F == 24  # STAP-A
        fus = payloads[1:]
        assert all(p.data[0] & 0x1F == 28 for p in fus)
        body = b"".join(p.data[2:] for p in fus)
        assert bytes([(fus[0].data[0] & 0xE0) | (fus[0].data[1] & 0x1F)]) + body == big
    else:
        assert (payloads[0].data[0] >> 1) & 0x3F == 48  # AP
        fus = payloads[1:]
        assert all((p.data[0] >> 1) & 0x3F == 49 for p in fus)
        body = b"".join(p.data[3:] for p in fus)
        header = bytes([(fus[0].data[0] & 0x81) | ((fus[0].data[2] & 0x3F) << 1), fus[0].data[1]])
        assert header + body == big
    first_fu_header = fus[0].data[1 if codec == "h264" else 2]
    last_fu_header = fus[-1].data[1 if codec == "h264" else 2]
    assert first_fu_header & 0x80 and not first_fu_header & 0x40
    assert last_fu_header & 0x40 and not last_fu_header & 0x80
