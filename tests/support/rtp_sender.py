"""A real aiortc RTP sender with nothing under it: what it would put on the wire, recorded.

For the uplink's repair and redundancy tests, which drive `RTCRtpSender`'s own
send, NACK and RTX code and read the packets it produced. The transport is
the one stand-in: a DTLS/ICE connection would add nothing those tests check.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

H264 = RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102)


class FakeDtls:
    """Just enough of RTCDtlsTransport for a sender: it records what would go on the wire."""

    state = "connected"
    _stats_id = "transport"

    def __init__(self) -> None:
        self.sent: list[RtpPacket] = []

    async def _send_rtp(self, data: bytes) -> None:
        self.sent.append(RtpPacket.parse(data))


class Units(MediaStreamTrack):
    """`n` small access units (one RTP packet each), as the passthrough track hands them."""

    kind = "video"

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.i = 0

    async def recv(self) -> av.Packet[Any]:
        if self.i >= self.n:
            raise MediaStreamError
        self.i += 1
        packet = av.Packet(b"\x00\x00\x00\x01\x41" + bytes([self.i % 256]) * 100)
        packet.pts = self.i * 3000
        packet.time_base = Fraction(1, 90000)
        return packet
