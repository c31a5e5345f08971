"""RTP/PS depacketising: UDP and RFC 4571 TCP, SSRC filter, reordering, loss."""

from __future__ import annotations

import asyncio
import random
import socket
import struct

import pytest

from drivers.gb28181.ps_demux import PsAccessUnit
from drivers.gb28181.ps_mux import PsMuxer
from drivers.gb28181.rtp_ps import RtpError, RtpPsReceiver, parse_rtp
from drivers.rtsp.annexb import Codec, split_annexb
from tests.support.ps_media import SSRC, TICKS, Picture, chunks, decode, encoded, rtp_frames

OTHER_SSRC = 0x0BEBC202


def frames_of(codec: Codec, *, ssrc: int = SSRC, first_seq: int = 0,
              max_packet: int = 1400) -> list[list[bytes]]:
    """The clip as a device sends it: one pack per picture, one RTP frame per pack."""
    mux = PsMuxer(codec)
    return rtp_frames([mux.mux(p.data, p.pts * TICKS, p.dts * TICKS, keyframe=p.keyframe)
                       for p in encoded(codec)], ssrc=ssrc, first_seq=first_seq,
                      max_packet=max_packet)


def assert_same(units: list[PsAccessUnit], pictures: tuple[Picture, ...] | list[Picture]) -> None:
    assert [split_annexb(u.data) for u in units] == [p.nals for p in pictures]
    assert [u.keyframe for u in units] == [p.keyframe for p in pictures]
    assert [u.pts for u in units] == [p.pts * TICKS for p in pictures]


def receive(receiver: RtpPsReceiver, packets: list[bytes]) -> list[PsAccessUnit]:
    units = []
    for packet in packets:
        units += receiver.datagram(packet)
    return units + receiver.flush()


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_round_trip(codec: Codec) -> None:
    packets = [p for frame in frames_of(codec) for p in frame]
    assert max(len(p) for p in packets) <= 1400
    receiver = RtpPsReceiver(SSRC)
    units = receive(receiver, packets)
    assert_same(units, encoded(codec))
    assert decode(codec, [u.data for u in units]) == len(units)
    assert receiver.stats.packets == len(packets)
    assert receiver.stats.frames == len(encoded(codec))
    assert (receiver.stats.lost, receiver.stats.reordered) == (0, 0)


def test_sequence_numbers_wrap() -> None:
    packets = [p for frame in frames_of("h264", first_seq=65_530) for p in frame]
    receiver = RtpPsReceiver(SSRC)
    assert_same(receive(receiver, packets), encoded("h264"))
    assert (receiver.stats.lost, receiver.stats.sequence_jumps) == (0, 0)


def test_reordering_within_the_window() -> None:
    packets = [p for frame in frames_of("h264", max_packet=400) for p in frame]
    rng = random.Random(3)
    shuffled = list(packets)
    for start in range(0, len(shuffled), 8):  # swap packets around within groups of 8
        group = shuffled[start : start + 8]
        rng.shuffle(group)
        shuffled[start : start + 8] = group
    assert shuffled != packets
    receiver = RtpPsReceiver(SSRC)
    assert_same(receive(receiver, shuffled), encoded("h264"))
    assert receiver.stats.reordered > 0
    assert receiver.stats.lost == 0


def test_duplicates_are_dropped() -> None:
    packets = [p for frame in frames_of("h264") for p in frame]
    doubled = [q for p in packets for q in (p, p)]
    receiver = RtpPsReceiver(SSRC)
    assert_same(receive(receiver, doubled), encoded("h264"))
    assert receiver.stats.duplicates == len(packets)


def test_loss_mid_frame_drops_to_the_next_keyframe() -> None:
    """A packet lost in the middle of a picture: that picture is never handed on (nor any
    that depend on it); the keyframe after brings the stream back, whole."""
    frames = frames_of("h264", max_packet=300)
    victim = 4
    assert len(frames[victim]) >= 3
    packets = [p for n, frame in enumerate(frames) for k, p in enumerate(frame)
               if (n, k) != (victim, 1)]
    receiver = RtpPsReceiver(SSRC)
    units = receive(receiver, packets)
    pictures = encoded("h264")
    # Frame ends are trusted from picture 3 on (test_ps_demux), so 0-3 are already out.
    assert_same(units, [*pictures[:4], *pictures[10:]])
    assert receiver.stats.lost == 1
    assert receiver.stats.last_problem == "1 RTP packet lost"
    assert receiver.demuxer.stats.discontinuities == 1
    assert receiver.demuxer.stats.units_dropped == 1
    assert receiver.demuxer.stats.units_before_keyframe == 10 - 4 - 1
    assert decode("h264", [u.data for u in units]) == len(units)


def test_loss_of_a_marker_packet() -> None:
    """The last packet of a picture (the one with the marker) is lost: same recovery."""
    frames = frames_of("h264", max_packet=300)
    packets = [p for n, frame in enumerate(frames) for k, p in enumerate(frame)
               if (n, k) != (12, len(frame) - 1)]
    receiver = RtpPsReceiver(SSRC)
    units = receive(receiver, packets)
    pictures = encoded("h264")
    assert_same(units, pictures[:12])  # the clip has no keyframe after 10 to restart at
    assert receiver.stats.lost == 1
    assert receiver.demuxer.stats.units_dropped == 1
    assert receiver.demuxer.stats.units_before_keyframe == 7


def test_skip_missing_releases_held_packets() -> None:
    """A gap and then silence: the caller's timer lets what is held through."""
    packets = [p for frame in frames_of("h264", max_packet=300) for p in frame]
    cut = len(packets) - 5
    receiver = RtpPsReceiver(SSRC)
    for packet in packets[:cut] + packets[cut + 1:]:
        receiver.datagram(packet)
    assert receiver.stats.lost == 0  # four packets held, waiting for the missing one
    receiver.skip_missing()
    assert receiver.stats.lost == 1
    assert receiver.stats.packets == len(packets) - 1


def test_missing_marker_bits() -> None:
    """A device that never sets the marker: frames end when the timestamp changes."""
    packets = [bytearray(p) for frame in frames_of("h265") for p in frame]
    for packet in packets:
        packet[1] &= 0x7F
    receiver = RtpPsReceiver(SSRC)
    assert_same(receive(receiver, [bytes(p) for p in packets]), encoded("h265"))
    assert receiver.stats.frames == len(encoded("h265"))


def test_foreign_ssrc_is_dropped() -> None:
    """Another stream on the same port (say a stale INVITE's): counted, never mixed in."""
    ours = [p for frame in frames_of("h264") for p in frame]
    theirs = [p for frame in frames_of("h265", ssrc=OTHER_SSRC, first_seq=0) for p in frame]
    mixed = [p for pair in zip(ours, theirs, strict=False) for p in pair]
    mixed += ours[len(theirs):] if len(ours) > len(theirs) else []
    receiver = RtpPsReceiver(SSRC)
    assert_same(receive(receiver, mixed), encoded("h264"))
    assert receiver.stats.foreign_ssrc == min(len(ours), len(theirs))
    assert str(OTHER_SSRC) in receiver.stats.last_problem


def test_first_ssrc_is_kept_without_one_given() -> None:
    ours = [p for frame in frames_of("h264") for p in frame]
    theirs = [p for frame in frames_of("h264", ssrc=OTHER_SSRC) for p in frame]
    receiver = RtpPsReceiver(None)
    assert_same(receive(receiver, [ours[0], *theirs, *ours[1:]]), encoded("h264"))
    assert receiver.ssrc == SSRC
    assert receiver.stats.foreign_ssrc == len(theirs)


def test_bad_packets_are_counted() -> None:
    good = [p for frame in frames_of("h264") for p in frame]
    wrong_pt = bytearray(good[3])
    wrong_pt[1] = (wrong_pt[1] & 0x80) | 98
    bad = [b"\x80\x60", b"\x40" + good[0][1:], bytes(wrong_pt),
           b"\xa0" + good[0][1:12] + b"\x00"]  # padding flag, pad length 0
    receiver = RtpPsReceiver(SSRC)
    units = receive(receiver, [*bad, *good])
    assert_same(units, encoded("h264"))
    assert receiver.stats.malformed == 3
    assert receiver.stats.wrong_payload_type == 1
    for packet, reason in [(b"\x80\x60", "shorter than its 12-byte header"),
                           (b"\x40" + good[0][1:], "RTP version 1, expected 2")]:
        with pytest.raises(RtpError, match=reason):
            parse_rtp(packet)


def test_rtp_header_fields() -> None:
    """CSRCs, a header extension and padding are taken off the payload."""
    body = b"\x00\x00\x01\xba payload"
    packet = struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 2, 0x80 | 96, 7, 3600, SSRC) \
        + b"\x00" * 8 + b"\xbe\xde\x00\x01" + b"\x11\x22\x33\x44" + body + b"\x00\x00\x03"
    parsed = parse_rtp(packet)
    assert (parsed.marker, parsed.payload_type, parsed.sequence, parsed.timestamp, parsed.ssrc) \
        == (True, 96, 7, 3600, SSRC)
    assert parsed.payload == body


def test_sequence_restart() -> None:
    """The device restarts its stream (a new sequence far away): counted, then resumes."""
    first = [p for frame in frames_of("h264") for p in frame]
    second = [p for frame in frames_of("h264", first_seq=40_000) for p in frame]
    receiver = RtpPsReceiver(SSRC)
    units = receive(receiver, [*first, *second])
    pictures = encoded("h264")
    assert_same(units[:20], pictures)
    assert_same(units[20:], pictures)
    assert receiver.stats.sequence_jumps == 1


@pytest.mark.parametrize("seed", range(4))
def test_tcp_framing_split_anywhere(seed: int) -> None:
    framed = b"".join(struct.pack("!H", len(p)) + p
                      for frame in frames_of("h265") for p in frame)
    receiver = RtpPsReceiver(SSRC)
    units = []
    for part in chunks(framed, seed, largest=1 + 997 * seed):
        units += receiver.stream(part)
    units += receiver.flush()
    assert_same(units, encoded("h265"))
    assert receiver.stats.framing_errors == 0


def test_tcp_garbage_resyncs() -> None:
    frames = frames_of("h264")
    framed = [[struct.pack("!H", len(p)) + p for p in frame] for frame in frames]
    garbage = bytes(random.Random(5).randrange(256) for _ in range(333))
    stream = b"".join(b"".join(f) for f in framed[:5]) + garbage \
        + b"".join(b"".join(f) for f in framed[5:])
    receiver = RtpPsReceiver(SSRC)
    units = []
    for part in chunks(stream, 9):
        units += receiver.stream(part)
    units += receiver.flush()
    pictures = encoded("h264")
    assert_same(units, [*pictures[:5], *pictures[10:]])
    assert 0 < receiver.stats.framing_errors <= len(garbage)
    assert receiver.demuxer.stats.discontinuities == 1


async def test_over_real_sockets() -> None:
    """UDP datagrams and an RFC 4571 TCP connection on 127.0.0.1, as the service will read
    them (the service owns the sockets; here a plain reader stands in for it)."""
    frames = frames_of("h264")
    packets = [p for frame in frames for p in frame]
    loop = asyncio.get_running_loop()

    udp_in = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp_in.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    udp_in.bind(("127.0.0.1", 0))
    udp_in.setblocking(False)
    udp_out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver = RtpPsReceiver(SSRC)
    units: list[PsAccessUnit] = []
    try:
        for packet in packets:
            udp_out.sendto(packet, udp_in.getsockname())
            # Generous: loopback delivers at once; the bound only stops a hang.
            data = await asyncio.wait_for(loop.sock_recv(udp_in, 2048), 10)
            units += receiver.datagram(data)
    finally:
        udp_in.close()
        udp_out.close()
    assert_same(units + receiver.flush(), encoded("h264"))

    tcp_units: list[PsAccessUnit] = []
    tcp_receiver = RtpPsReceiver(SSRC)
    done = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1000):
            tcp_units.extend(tcp_receiver.stream(data))
        writer.close()
        done.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for packet in packets:
            writer.write(struct.pack("!H", len(packet)) + packet)
        await writer.drain()
        writer.close()
        await asyncio.wait_for(done.wait(), 10)  # generous: a loopback stream of ~50 kB
    finally:
        server.close()
        await server.wait_closed()
    assert_same(tcp_units + tcp_receiver.flush(), encoded("h264"))
