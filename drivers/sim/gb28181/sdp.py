"""The device's side of the GB/T 28181 INVITE SDP: read the platform's offer, write the answer.

`drivers.gb28181.gb_sdp` has the platform's side (offer out, answer in); a device
needs the mirror image, kept here until the library grows it.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.sim.gb28181.media import MediaTransport

PS_PAYLOAD = 96


class OfferError(ValueError):
    """An offer the device cannot play; `str()` says what was wrong."""


@dataclass(frozen=True)
class PlayOffer:
    session: str  # s=: Play (live) is all the simulator does
    host: str
    port: int
    transport: MediaTransport  # the platform's role, as gb_sdp.Offer names it
    ssrc: str
    payload: int


def parse_offer(body: bytes) -> PlayOffer:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("gb18030", errors="replace")
    session = host = ssrc = None
    media: list[str] | None = None
    setup = None
    payloads: dict[int, str] = {}
    for raw in text.splitlines():
        kind, eq, value = raw.strip().partition("=")
        if not eq or len(kind) != 1:
            continue
        if kind == "s":
            session = value.strip()
        elif kind == "c":
            parts = value.split()
            if len(parts) != 3:
                raise OfferError(f"bad c= line {value[:60]!r}")
            host = parts[2].split("/")[0]
        elif kind == "m" and media is None:
            media = value.split()
        elif kind == "a" and value.startswith("setup:"):
            setup = value[6:].strip().lower()
        elif kind == "a" and value.startswith("rtpmap:"):
            number, _, name = value[7:].partition(" ")
            if number.isdigit():
                payloads[int(number)] = name.strip().upper()
        elif kind == "y":
            ssrc = value.strip()
    if media is None or len(media) < 4 or media[0] != "video" or not media[1].isdigit():
        raise OfferError("offer has no usable m=video line")
    if host is None:
        raise OfferError("offer has no c= line")
    if session is None or session.lower() != "play":
        raise OfferError(f"only live Play is simulated, not s={session or '(none)'}")
    if ssrc is None or not ssrc.isdigit() or len(ssrc) > 10:
        raise OfferError(f"offer has no usable y= SSRC ({(ssrc or 'none')[:20]!r})")
    ps = [n for n, name in payloads.items() if name.startswith("PS/")]
    if not ps:
        raise OfferError("offer has no PS/90000 payload")
    profile = media[2].upper()
    transport: MediaTransport
    if profile == "RTP/AVP":
        transport = "udp"
    elif profile == "TCP/RTP/AVP":
        transport = "tcp-active" if setup == "active" else "tcp-passive"
    else:
        raise OfferError(f"unsupported media profile {media[2][:20]!r}")
    return PlayOffer(session, host, int(media[1]), transport, ssrc, ps[0])


def answer(offer: PlayOffer, *, channel_id: str, host: str, port: int) -> bytes:
    """200's SDP: where the device sends from (or listens, when the platform connects)."""
    family = "IP6" if ":" in host else "IP4"
    profile = "RTP/AVP" if offer.transport == "udp" else "TCP/RTP/AVP"
    lines = ["v=0", f"o={channel_id} 0 0 IN {family} {host}", "s=Play",
             f"c=IN {family} {host}", "t=0 0", f"m=video {port} {profile} {offer.payload}",
             "a=sendonly", f"a=rtpmap:{offer.payload} PS/90000"]
    if offer.transport != "udp":
        # The other role of the offer's: we connect to a passive platform, listen for an
        # active one.
        mine = "active" if offer.transport == "tcp-passive" else "passive"
        lines += [f"a=setup:{mine}", "a=connection:new"]
    lines.append(f"y={offer.ssrc}")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")
