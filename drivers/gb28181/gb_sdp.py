"""The SDP of a GB/T 28181 INVITE (§9.2, appendix F): the platform's offer and the device's answer,
both sides of each (the platform writes offers and reads answers; the simulated device the reverse).

The offer names where the platform receives the device's PS stream: `s=Play` for live
video, `u=` the channel, `m=video PORT RTP/AVP 96` with `a=rtpmap:96 PS/90000` (or
`TCP/RTP/AVP` with `a=setup:passive` when the device connects to us, `active` when we
connect to it, RFC 4571 framing), `a=recvonly`, and `y=` the SSRC the device must use:
ten decimal digits, 0 for live, digits 4 to 8 of the platform's domain, and a sequence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

MediaTransport = Literal["udp", "tcp-passive", "tcp-active"]
PS_PAYLOAD = 96


class SdpError(ValueError):
    """An answer we cannot use; `str()` says what was wrong."""


def live_ssrc(realm: str, sequence: int) -> str:
    """`y=` for live video: `0` + digits 4..8 of the 10-digit domain + a 4-digit sequence."""
    if len(realm) < 8 or not realm[:8].isdigit():
        raise SdpError(f"domain {realm!r} does not start with 8 digits")
    if not 0 <= sequence <= 9999:
        raise SdpError(f"SSRC sequence {sequence} is outside 0..9999")
    return f"0{realm[3:8]}{sequence:04d}"


@dataclass(frozen=True)
class Offer:
    platform_id: str
    channel_id: str
    host: str
    port: int
    ssrc: str
    transport: MediaTransport = "udp"
    payload: int = PS_PAYLOAD  # PS's RTP payload type (96 by the standard)

    def to_bytes(self) -> bytes:
        family = "IP6" if ":" in self.host else "IP4"
        profile = "RTP/AVP" if self.transport == "udp" else "TCP/RTP/AVP"
        lines = ["v=0", f"o={self.platform_id} 0 0 IN {family} {self.host}", "s=Play",
                 f"u={self.channel_id}:0", f"c=IN {family} {self.host}", "t=0 0",
                 f"m=video {self.port} {profile} {self.payload}", "a=recvonly",
                 f"a=rtpmap:{self.payload} PS/90000"]
        if self.transport != "udp":
            lines += [f"a=setup:{self.transport.removeprefix('tcp-')}", "a=connection:new"]
        lines.append(f"y={self.ssrc}")
        return ("\r\n".join(lines) + "\r\n").encode("ascii")


@dataclass(frozen=True)
class Answer:
    """Where the device sends from (or, TCP active, where we connect) and with what SSRC."""

    host: str
    port: int
    transport: MediaTransport
    ssrc: str | None
    payloads: dict[int, str] = field(default_factory=dict)

    @property
    def ssrc_value(self) -> int | None:
        """The SSRC as RTP carries it: the decimal `y=` value as a 32-bit number."""
        return int(self.ssrc) & 0xFFFFFFFF if self.ssrc else None


@dataclass(frozen=True)
class _Description:
    """What both sides read from an SDP body: the first m=video and the GB lines."""

    session: str | None
    host: str
    port: int
    profile: str  # RTP/AVP or TCP/RTP/AVP
    setup: str | None
    ssrc: str | None
    payloads: dict[int, str]


def _describe(body: bytes, what: str) -> _Description:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("gb18030", errors="replace")
    session = host = setup = ssrc = None
    media: list[str] | None = None
    payloads: dict[int, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        kind, eq, value = line.partition("=")
        if not eq or len(kind) != 1:
            continue
        if kind == "s":
            session = value.strip()
        elif kind == "c":
            parts = value.split()
            if len(parts) != 3:
                raise SdpError(f"bad c= line {line[:60]!r}")
            host = parts[2].split("/")[0]
        elif kind == "m" and media is None:
            media = value.split()
        elif kind == "a" and value.startswith("setup:"):
            setup = value[6:].strip().lower()
        elif kind == "a" and value.startswith("rtpmap:"):
            number, _, name = value[7:].partition(" ")
            if number.isdigit():
                payloads[int(number)] = name.strip()
        elif kind == "y":
            ssrc = value.strip()
            if not ssrc.isdigit() or len(ssrc) > 10:
                raise SdpError(f"bad y= SSRC {ssrc[:20]!r}")
    if media is None:
        raise SdpError(f"{what} has no m= line")
    if len(media) < 4 or media[0] != "video" or not media[1].isdigit():
        raise SdpError(f"bad m= line {' '.join(media)[:60]!r}")
    if host is None:
        raise SdpError(f"{what} has no c= line")
    profile = media[2].upper()
    if profile not in ("RTP/AVP", "TCP/RTP/AVP"):
        raise SdpError(f"unsupported media profile {media[2][:20]!r}")
    return _Description(session, host, int(media[1]), profile, setup, ssrc, payloads)


def parse_answer(body: bytes) -> Answer:
    """The device's 200 SDP, read by the platform."""
    d = _describe(body, "answer")
    transport: MediaTransport = "udp"
    if d.profile == "TCP/RTP/AVP":
        # The device's own role: it answers `active` to our `passive` offer.
        transport = "tcp-passive" if d.setup in (None, "active") else "tcp-active"
    return Answer(d.host, d.port, transport, d.ssrc, d.payloads)


def parse_offer(body: bytes) -> Offer:
    """The platform's INVITE SDP, read by a device: only live `s=Play` of PS/90000.

    `transport` is the platform's role as the offer names it, as in :class:`Offer`.
    """
    d = _describe(body, "offer")
    if d.session is None or d.session.lower() != "play":
        raise SdpError(f"only live Play is supported, not s={d.session or '(none)'}")
    if d.ssrc is None:
        raise SdpError("offer has no y= SSRC")
    ps = [number for number, name in d.payloads.items() if name.upper().startswith("PS/")]
    if not ps:
        raise SdpError("offer has no PS/90000 payload")
    transport: MediaTransport = "udp"
    if d.profile == "TCP/RTP/AVP":
        transport = "tcp-active" if d.setup == "active" else "tcp-passive"
    return Offer(platform_id="", channel_id="", host=d.host, port=d.port, ssrc=d.ssrc,
                 transport=transport, payload=ps[0])


def answer_to(offer: Offer, *, channel_id: str, host: str, port: int) -> bytes:
    """The device's 200 SDP: where it sends from (or listens, when the platform connects)."""
    family = "IP6" if ":" in host else "IP4"
    profile = "RTP/AVP" if offer.transport == "udp" else "TCP/RTP/AVP"
    lines = ["v=0", f"o={channel_id} 0 0 IN {family} {host}", "s=Play",
             f"c=IN {family} {host}", "t=0 0", f"m=video {port} {profile} {offer.payload}",
             "a=sendonly", f"a=rtpmap:{offer.payload} PS/90000"]
    if offer.transport != "udp":
        # The other role of the offer's: connect to a passive platform, listen for an
        # active one.
        mine = "active" if offer.transport == "tcp-passive" else "passive"
        lines += [f"a=setup:{mine}", "a=connection:new"]
    lines.append(f"y={offer.ssrc}")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")
