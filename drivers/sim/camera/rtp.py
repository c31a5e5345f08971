"""RTP payload formats for H.264 (RFC 6184) and H.265 (RFC 7798), and RTCP SR.

Payloads are computed once per access unit (they do not depend on the
receiver) and each session only prepends its own 12-byte RTP header, so a
camera with several viewers pays for fragmentation once.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from drivers.rtsp.annexb import Codec

RTP_VERSION = 2
DEFAULT_MTU = 1400
RTP_HEADER_SIZE = 12
H264_STAP_A = 24
H264_FU_A = 28
H265_AP = 48
H265_FU = 49
# Seconds between 1900 (NTP epoch) and 1970 (Unix epoch).
NTP_OFFSET = 2_208_988_800


@dataclass(frozen=True, slots=True)
class Payload:
    data: bytes
    marker: bool


def packetize(
    codec: Codec, nals: Iterable[bytes], mtu: int = DEFAULT_MTU, aggregate: bool = True
) -> list[Payload]:
    """RTP payloads for one access unit; the marker is set on the last one.

    `mtu` bounds the whole RTP packet (header included).  Small consecutive NAL
    units (parameter sets, SEI) are aggregated (STAP-A / AP) when `aggregate`.
    """
    limit = mtu - RTP_HEADER_SIZE
    payloads: list[bytes] = []
    pending: list[bytes] = []

    def flush() -> None:
        if len(pending) == 1:
            payloads.append(pending[0])
        elif pending:
            payloads.append(_aggregate(codec, pending))
        pending.clear()

    hdr = 1 if codec == "h264" else 2
    for nal in nals:
        if len(nal) > limit:
            flush()
            payloads.extend(_fragment(codec, nal, limit))
            continue
        if not aggregate:
            payloads.append(nal)
            continue
        size = hdr + sum(2 + len(n) for n in pending) + 2 + len(nal)
        if pending and size > limit:
            flush()
        pending.append(nal)
    flush()
    return [Payload(p, i == len(payloads) - 1) for i, p in enumerate(payloads)]


def _aggregate(codec: Codec, nals: list[bytes]) -> bytes:
    body = b"".join(struct.pack("!H", len(n)) + n for n in nals)
    if codec == "h264":
        forbidden = max(n[0] & 0x80 for n in nals)
        nri = max(n[0] & 0x60 for n in nals)
        return bytes([forbidden | nri | H264_STAP_A]) + body
    forbidden = max(n[0] & 0x80 for n in nals)
    layer = min(((n[0] & 0x01) << 5) | (n[1] >> 3) for n in nals)
    tid = min(n[1] & 0x07 for n in nals)
    header = struct.pack("!H", (forbidden << 8) | (H265_AP << 9) | (layer << 3) | tid)
    return header + body


def _fragment(codec: Codec, nal: bytes, limit: int) -> list[bytes]:
    out: list[bytes] = []
    if codec == "h264":
        indicator = bytes([(nal[0] & 0xE0) | H264_FU_A])
        ntype = nal[0] & 0x1F
        body = nal[1:]
        prefix_len = 2
    else:
        indicator = bytes([(nal[0] & 0x81) | (H265_FU << 1), nal[1]])
        ntype = (nal[0] >> 1) & 0x3F
        body = nal[2:]
        prefix_len = 3
    chunk = limit - prefix_len
    for offset in range(0, len(body), chunk):
        start = offset == 0
        end = offset + chunk >= len(body)
        fu_header = (0x80 if start else 0) | (0x40 if end else 0) | ntype
        out.append(indicator + bytes([fu_header]) + body[offset : offset + chunk])
    return out


def rtp_header(marker: bool, payload_type: int, seq: int, timestamp: int, ssrc: int) -> bytes:
    return struct.pack(
        "!BBHII",
        RTP_VERSION << 6,
        (0x80 if marker else 0) | payload_type,
        seq & 0xFFFF,
        timestamp & 0xFFFFFFFF,
        ssrc,
    )


def ntp_timestamp(wall_ns: int) -> int:
    seconds, rem = divmod(wall_ns, 1_000_000_000)
    return ((seconds + NTP_OFFSET) << 32) | (rem * (1 << 32) // 1_000_000_000)


def rtcp_sender_report(
    ssrc: int, wall_ns: int, rtp_ts: int, packets: int, octets: int, cname: str
) -> bytes:
    """Compound RTCP packet: SR (RFC 3550 6.4.1) followed by SDES CNAME."""
    ntp = ntp_timestamp(wall_ns)
    sr = struct.pack(
        "!BBHIIIIII",
        RTP_VERSION << 6,
        200,
        6,
        ssrc,
        ntp >> 32,
        ntp & 0xFFFFFFFF,
        rtp_ts & 0xFFFFFFFF,
        packets & 0xFFFFFFFF,
        octets & 0xFFFFFFFF,
    )
    name = cname.encode()[:255]
    item = bytes([1, len(name)]) + name + b"\x00"
    item += b"\x00" * (-len(item) % 4)
    sdes_len = (4 + len(item)) // 4 - 1
    sdes = struct.pack("!BBHI", (RTP_VERSION << 6) | 1, 202, sdes_len, ssrc) + item
    return sr + sdes
