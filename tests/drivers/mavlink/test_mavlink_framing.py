"""The frame finder against noise, truncation and corruption (no sockets)."""

from __future__ import annotations

import random

import pytest

from drivers.mavlink.dialect import MAVLink, mavlink
from drivers.mavlink.framing import FrameParser


def good_frames(n: int, sysid: int = 1) -> list[bytes]:
    mav = MAVLink(None, srcSystem=sysid, srcComponent=1)
    out = []
    for i in range(n):
        if i % 3 == 0:
            msg = mav.heartbeat_encode(2, 3, 217, 4, 4)
        elif i % 3 == 1:
            msg = mav.global_position_int_encode(
                i, 312304000, 1214737000, 60000, 50000, 100, -50, 0, 9000
            )
        else:
            msg = mav.statustext_encode(6, f"message {i}".encode())
        out.append(msg.pack(mav))
        mav.seq = (mav.seq + 1) & 0xFF
    return out


def feed_in_chunks(parser: FrameParser, data: bytes, rng: random.Random) -> list[int]:
    seqs = []
    pos = 0
    while pos < len(data):
        step = rng.randint(1, 64)
        seqs += [f.seq for f in parser.feed(data[pos : pos + step])]
        pos += step
    return seqs


@pytest.mark.parametrize("seed", range(20))
def test_noise_between_frames_loses_nothing(seed: int) -> None:
    rng = random.Random(seed)
    frames = good_frames(70)
    stream = bytearray()
    for frame in frames[:60]:
        noise = bytearray(rng.randbytes(rng.randint(0, 30)))
        if noise and rng.random() < 0.5:
            noise[rng.randrange(len(noise))] = 0xFD  # a fake start of frame
        stream += noise + frame
    # more clean traffic: a fake header near the end waits for its claimed length
    stream += b"".join(frames[60:])
    parser = FrameParser()
    seqs = feed_in_chunks(parser, bytes(stream), rng)
    # frames are only ever lost to noise that happens to pass a CRC
    assert seqs[:60] == list(range(60))
    assert parser.stats.bad_bytes > 0


def test_truncated_and_corrupted_frames_between_good_ones() -> None:
    frames = good_frames(9)
    truncated = frames[1][: len(frames[1]) // 2]
    corrupted = bytearray(frames[4])
    corrupted[12] ^= 0x55
    stream = frames[0] + truncated + frames[2] + frames[3] + bytes(corrupted) + b"".join(frames[5:])
    for chunked in (False, True):
        parser = FrameParser()
        if chunked:
            seqs = feed_in_chunks(parser, stream, random.Random(3))
        else:
            seqs = [f.seq for f in parser.feed(stream)]
        assert seqs == [0, 2, 3, 5, 6, 7, 8]
        assert parser.stats.crc_errors >= 2


def test_datagram_tail_is_resynchronised_not_waited_for() -> None:
    frames = good_frames(3)
    # one UDP datagram: a frame start that claims 255 bytes, then a good frame
    datagram = b"\xfd\xff\x00\x00" + frames[0]
    parser = FrameParser()
    got = parser.feed(datagram, datagram=True)
    assert [f.seq for f in got] == [0]
    assert [f.seq for f in parser.feed(frames[1], datagram=True)] == [1]


def test_decoded_messages_and_raw_bytes() -> None:
    frames = good_frames(2)
    parser = FrameParser()
    got = parser.feed(b"".join(frames))
    assert got[0].msg is not None and got[0].msg.get_type() == "HEARTBEAT"
    assert got[1].raw == frames[1] and got[1].msg_id == mavlink.MAVLINK_MSG_ID_GLOBAL_POSITION_INT
    assert got[1].msg.lat == 312304000


def test_router_mode_checks_crc_without_decoding() -> None:
    frames = good_frames(3)
    bad = bytearray(frames[1])
    bad[-1] ^= 0xFF
    parser = FrameParser(decode=False)
    got = parser.feed(frames[0] + bytes(bad) + frames[2])
    assert [f.seq for f in got] == [0, 2] and all(f.msg is None for f in got)
    assert parser.stats.crc_errors == 1


def test_mavlink1_frames_are_understood() -> None:
    mav = MAVLink(None, srcSystem=7, srcComponent=1)
    raw = mav.heartbeat_encode(2, 3, 0, 0, 3).pack(mav, force_mavlink1=True)
    got = FrameParser().feed(b"\x00\x01" + raw)
    assert len(got) == 1 and got[0].sysid == 7 and got[0].msg.get_type() == "HEARTBEAT"


def test_unknown_message_is_kept_only_when_a_good_frame_follows() -> None:
    frames = good_frames(3)
    mav = MAVLink(None, srcSystem=1, srcComponent=1)
    # a well-formed v2 frame of a message id this dialect does not have
    body = bytes([0xFD, 3, 0, 0, 9, 1, 1, 0x39, 0x30, 0x00]) + b"abc" + b"\x12\x34"
    assert 0x3039 not in mavlink.mavlink_map
    parser = FrameParser()
    got = parser.feed(frames[0] + body + frames[1])
    assert [f.msg_id for f in got] == [0, 0x3039, frames_msg_id(frames[1], mav)]
    assert got[1].msg is None and parser.stats.unknown == 1
    # at the end of a stream read it waits for the next frame before deciding
    parser = FrameParser()
    assert len(parser.feed(frames[0] + body)) == 1
    assert len(parser.feed(frames[2])) == 2


def frames_msg_id(raw: bytes, mav: MAVLink) -> int:
    return raw[7] | (raw[8] << 8) | (raw[9] << 16)
