"""The PS muxer and RTP packetiser, checked by FFmpeg's PS demuxer and aiortc's RTP parser."""

from __future__ import annotations

import io
import os
import struct
from fractions import Fraction
from typing import Any

import av
import numpy as np
import pytest
from aiortc.rtp import RtpPacket

from drivers.gb28181.ps_demux import PsDemuxer
from drivers.gb28181.ps_mux import (
    MAX_PES_LENGTH,
    PsMuxer,
    RtpPacketizer,
    crc32_mpeg2,
    pack_header,
    pes_packets,
    program_stream_map,
    rfc4571_frame,
)
from drivers.rtsp.annexb import Codec, split_annexb
from tests.support.ps_media import TICKS, encoded


def ffmpeg_reads(ps: bytes) -> tuple[str, list[av.Packet[Any]]]:
    with av.open(io.BytesIO(ps), "r", format="mpeg") as container:
        name = container.streams.video[0].codec_context.name
        return name, [p for p in container.demux(video=0) if p.size]


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_ffmpeg_reads_our_ps(codec: Codec) -> None:
    pictures = encoded(codec)
    mux = PsMuxer(codec)
    ps = b"".join(mux.mux(p.data, 9000 + p.pts * TICKS, 9000 + p.dts * TICKS,
                          keyframe=p.keyframe) for p in pictures)
    name, packets = ffmpeg_reads(ps)
    assert name == {"h264": "h264", "h265": "hevc"}[codec]
    assert [split_annexb(bytes(p)) for p in packets] == [p.nals for p in pictures]
    assert [(p.pts, p.dts) for p in packets] == \
        [(9000 + p.pts * TICKS, 9000 + p.dts * TICKS) for p in pictures]
    with av.open(io.BytesIO(ps), "r", format="mpeg") as container:
        assert len(list(container.decode(video=0))) == len(pictures)


@pytest.mark.parametrize(("codec", "stream_type"), [("h264", 0x1B), ("h265", 0x24)])
def test_keyframes_carry_system_header_and_map(codec: Codec, stream_type: int) -> None:
    pictures = encoded(codec)
    mux = PsMuxer(codec)
    key = mux.mux(pictures[0].data, 0, keyframe=True)
    other = mux.mux(pictures[1].data, TICKS, keyframe=False)
    assert key.startswith(b"\x00\x00\x01\xba") and other.startswith(b"\x00\x00\x01\xba")
    assert b"\x00\x00\x01\xbb" in key and b"\x00\x00\x01\xbb" not in other
    psm_at = key.index(b"\x00\x00\x01\xbc")
    psm = key[psm_at : psm_at + 6 + struct.unpack_from("!H", key, psm_at + 4)[0]]
    assert psm[12:14] == bytes([stream_type, 0xE0])  # the one entry: type, stream id
    assert crc32_mpeg2(psm) == 0  # a correct CRC_32 leaves no remainder
    assert b"\x00\x00\x01\xbc" not in other
    assert program_stream_map(codec) == psm


def test_crc32_mpeg2_check_value() -> None:
    assert crc32_mpeg2(b"123456789") == 0x0376E6E7  # the catalogue's check value


def test_pack_header_layout() -> None:
    assert pack_header(0)[4:10] == bytes.fromhex("440004000401")  # SCR 0, all markers set
    demuxer = PsDemuxer("h264")
    demuxer.feed(pack_header(123_456_789) + pack_header((1 << 33) - 1))
    assert (demuxer.stats.packs, demuxer.stats.bad_headers) == (2, 0)


def test_large_picture_is_split_into_pes_of_at_most_65535_bytes() -> None:
    nal = b"\x00\x00\x00\x01\x65\x88" + bytes(x % 255 + 1 for x in os.urandom(200_000))
    packets = pes_packets(nal, 3600)
    assert len(packets) == 4
    assert all(len(p) - 6 <= MAX_PES_LENGTH for p in packets)
    assert [struct.unpack_from("!H", p, 4)[0] == len(p) - 6 for p in packets] == [True] * 4
    assert packets[0][7] >> 6 == 2 and all(p[7] >> 6 == 0 for p in packets[1:])  # PTS once
    demuxer = PsDemuxer("h264")
    sps_pps = split_annexb(encoded("h264")[0].data)[:2]
    head = b"".join(b"\x00\x00\x00\x01" + n for n in sps_pps)
    ps = PsMuxer("h264").mux(head + nal, 3600, keyframe=True)
    units = demuxer.feed(ps) + demuxer.flush()
    assert len(units) == 1
    assert units[0].data == head + nal
    assert (units[0].pts, units[0].keyframe) == (3600, True)
    _, packets_read = ffmpeg_reads(ps)
    assert b"".join(bytes(p) for p in packets_read) == head + nal


def test_large_real_keyframe_decodes() -> None:
    """A real keyframe over 65535 bytes: several PES, one picture back, FFmpeg decodes it."""
    cc = av.CodecContext.create("libx264", "w")
    cc.width, cc.height, cc.pix_fmt = 320, 240, "yuv420p"
    cc.time_base = Fraction(1, 25)
    cc.options = {"qp": "0"}
    frame = av.VideoFrame.from_ndarray(
        np.random.default_rng(1).integers(0, 255, (240, 320, 3), dtype=np.uint8), format="rgb24")
    frame.pts = 0
    data = b"".join(bytes(p) for p in [*cc.encode(frame), *cc.encode(None)])
    assert len(data) > MAX_PES_LENGTH
    demuxer = PsDemuxer()
    packets = RtpPacketizer(1).packetize(PsMuxer("h264").mux(data, 0, keyframe=True), 0)
    units = []
    for packet in packets:
        units += demuxer.feed(RtpPacket.parse(packet).payload)
    units += demuxer.flush()
    assert [u.data for u in units] == [data]
    decoder = av.CodecContext.create("h264", "r")
    assert len(decoder.decode(av.Packet(units[0].data))) + len(decoder.decode(None)) == 1


def test_rtp_packets() -> None:
    ps = os.urandom(5000)
    packetizer = RtpPacketizer(0x1234, sequence=65_534)
    packets = packetizer.packetize(ps, 1 << 33)
    parsed = [RtpPacket.parse(p) for p in packets]
    assert all(len(p) <= 1400 for p in packets)
    assert b"".join(p.payload for p in parsed) == ps
    assert [p.marker for p in parsed] == [0] * (len(packets) - 1) + [1]
    assert [p.sequence_number for p in parsed] == [65_534, 65_535, 0, 1]
    assert {(p.payload_type, p.ssrc, p.timestamp) for p in parsed} == {(96, 0x1234, 0)}
    assert packetizer.sequence == 2
    with pytest.raises(ValueError, match="leaves no room"):
        RtpPacketizer(1, max_packet=12)


def test_rfc4571_frame() -> None:
    packet = RtpPacketizer(7).packetize(b"abc", 0)[0]
    assert rfc4571_frame(packet) == struct.pack("!H", len(packet)) + packet
    with pytest.raises(ValueError, match="70000 bytes does not fit"):
        rfc4571_frame(bytes(70_000))
