"""Annex-B access units to MPEG-2 Program Stream and RTP, as a GB/T 28181 device sends them.

For the simulated device and the tests (the vehicle itself only receives).
Each picture is one pack: a pack header, then on keyframes the system header
and a program stream map (so a receiver joining at a keyframe learns the
codec), then the picture in PES packets of at most 65535 bytes, the first
with its PTS/DTS. The pack is sent as one RTP frame: packets of at most
`max_packet` bytes sharing the picture's 90 kHz timestamp, the marker bit on
the last; over TCP each packet is preceded by its 2-byte length (RFC 4571).
"""

from __future__ import annotations

import struct

from drivers.rtsp.annexb import Codec

STREAM_TYPE: dict[Codec, int] = {"h264": 0x1B, "h265": 0x24}
VIDEO_STREAM_ID = 0xE0
PS_PAYLOAD_TYPE = 96
MAX_RTP_PACKET = 1400
RTP_HEADER = 12
MAX_PES_LENGTH = 0xFFFF  # the 16-bit PES_packet_length
# program_mux_rate in units of 50 bytes/s: 20 Mbit/s, above any dome camera.
_MUX_RATE = 20_000_000 // 8 // 50
_PTS_MASK = (1 << 33) - 1


def crc32_mpeg2(data: bytes) -> int:
    """CRC-32/MPEG-2 (ISO 13818-1 annex A): poly 0x04C11DB7, MSB first, no final xor."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def pack_header(scr: int) -> bytes:
    """MPEG-2 pack header (2.5.3.3) with a 90 kHz system clock reference, no stuffing."""
    scr &= _PTS_MASK
    bits = (0b01 << 46 | (scr >> 30) << 43 | 1 << 42 | ((scr >> 15) & 0x7FFF) << 27 | 1 << 26
            | (scr & 0x7FFF) << 11 | 1 << 10 | 1)
    return b"\x00\x00\x01\xba" + bits.to_bytes(6, "big") + (_MUX_RATE << 2 | 3).to_bytes(3, "big") \
        + b"\xf8"


def system_header() -> bytes:
    """System header (2.5.3.5) announcing one video stream."""
    body = (1 << 23 | _MUX_RATE << 1 | 1).to_bytes(3, "big") + bytes([
        0x00,  # audio_bound 0, fixed_flag 0, CSPS_flag 0
        0xE1,  # audio and video locked to the SCR, marker, video_bound 1
        0xFF,  # no packet rate restriction, reserved
        VIDEO_STREAM_ID, 0xE0, 0x80,  # '11', P-STD buffer bound 128 x 1024 bytes
    ])
    return b"\x00\x00\x01\xbb" + struct.pack("!H", len(body)) + body


def program_stream_map(codec: Codec, version: int = 0) -> bytes:
    """Program stream map (2.5.4) with one video entry: stream_type 0x1B H.264 or 0x24 H.265."""
    entries = bytes([STREAM_TYPE[codec], VIDEO_STREAM_ID, 0, 0])
    # current_next_indicator, reserved, version; reserved and marker; no program descriptors
    body = bytes([0xA0 | (version & 0x1F), 0xFF]) + b"\x00\x00" \
        + struct.pack("!H", len(entries)) + entries
    head = b"\x00\x00\x01\xbc" + struct.pack("!H", len(body) + 4)
    return head + body + crc32_mpeg2(head + body).to_bytes(4, "big")


def _timestamp(prefix: int, ts: int) -> bytes:
    ts &= _PTS_MASK
    return bytes([prefix << 4 | (ts >> 29) & 0x0E | 1, (ts >> 22) & 0xFF, (ts >> 14) & 0xFE | 1,
                  (ts >> 7) & 0xFF, (ts << 1) & 0xFE | 1])


def pes_packets(data: bytes, pts: int | None, dts: int | None = None,
                stream_id: int = VIDEO_STREAM_ID) -> list[bytes]:
    """`data` in video PES packets of at most 65535 bytes; the first carries the timestamps."""
    out: list[bytes] = []
    pos = 0
    first = True
    while first or pos < len(data):
        if first and pts is not None:
            if dts is not None and dts != pts:
                flags, stamp = 0xC0, _timestamp(3, pts) + _timestamp(1, dts)
            else:
                flags, stamp = 0x80, _timestamp(2, pts)
        else:
            flags, stamp = 0x00, b""
        # data_alignment_indicator on the PES where the picture starts
        header = bytes([0x84 if first else 0x80, flags, len(stamp)]) + stamp
        room = MAX_PES_LENGTH - len(header)
        chunk = data[pos : pos + room]
        pos += len(chunk)
        out.append(b"\x00\x00\x01" + bytes([stream_id])
                   + struct.pack("!H", len(header) + len(chunk)) + header + chunk)
        first = False
    return out


class PsMuxer:
    """One picture in, one PS pack out."""

    def __init__(self, codec: Codec) -> None:
        self.codec: Codec = codec

    def mux(self, data: bytes, pts: int, dts: int | None = None, *, keyframe: bool) -> bytes:
        scr = dts if dts is not None else pts
        parts = [pack_header(scr)]
        if keyframe:
            parts += [system_header(), program_stream_map(self.codec)]
        parts += pes_packets(data, pts, dts)
        return b"".join(parts)


class RtpPacketizer:
    """PS bytes of one picture to RTP packets (RFC 3550) with payload type 96."""

    def __init__(self, ssrc: int, *, payload_type: int = PS_PAYLOAD_TYPE,
                 max_packet: int = MAX_RTP_PACKET, sequence: int = 0) -> None:
        if max_packet <= RTP_HEADER:
            raise ValueError(f"max_packet {max_packet} leaves no room after the RTP header")
        self.ssrc = ssrc & 0xFFFFFFFF
        self.payload_type = payload_type
        self.max_packet = max_packet
        self.sequence = sequence & 0xFFFF

    def packetize(self, ps: bytes, timestamp: int) -> list[bytes]:
        room = self.max_packet - RTP_HEADER
        chunks = [ps[i : i + room] for i in range(0, len(ps), room)] or [b""]
        packets = []
        for n, chunk in enumerate(chunks):
            marker = 0x80 if n == len(chunks) - 1 else 0
            packets.append(struct.pack("!BBHII", 0x80, marker | self.payload_type,
                                       self.sequence, timestamp & 0xFFFFFFFF, self.ssrc) + chunk)
            self.sequence = (self.sequence + 1) & 0xFFFF
        return packets


def rfc4571_frame(packet: bytes) -> bytes:
    """An RTP packet as sent over TCP: its length in 2 bytes, then the packet (RFC 4571)."""
    if len(packet) > 0xFFFF:
        raise ValueError(f"RTP packet of {len(packet)} bytes does not fit RFC 4571 framing")
    return struct.pack("!H", len(packet)) + packet
