"""One WebRTC peer connection sending one camera stream, as it is: never decoded.

A :class:`Peer` holds an aiortc ``RTCPeerConnection`` with one sendonly video
transceiver whose track is a :class:`~edge.uplink.track.PassthroughTrack` on a
viewer's :class:`~edge.uplink.fanout.Sink`. It negotiates either way round:

- answering (WHEP: the viewer offers): :meth:`Peer.answer` takes the offer
  and returns the answer;
- offering (WHIP: we push to a server that answers): :meth:`Peer.offer`
  returns our offer and :meth:`Peer.accept` takes the server's answer.

Either way the description pins the one H.264 format the camera's profile
needs (:mod:`edge.uplink.sdp`: aiortc's own codec table knows only
constrained baseline, so what aiortc reads is labelled ``42e01f`` and what
the other side reads carries the camera's real profile-level-id), the
transceiver prefers that format and its RTX (``setCodecPreferences``), and
the sender gets a NACK history for the worst round trip
(:mod:`edge.uplink.history`), media and repairs draw from the link's shared
budgets (:mod:`edge.uplink.link_budget`), a far viewer may get every packet
twice (:mod:`edge.uplink.redundancy`), and its ICE connection consent checks that
survive a satellite round trip (:mod:`edge.uplink.consent`). No ICE servers
unless configured (aiortc would otherwise ask Google's STUN).

A description the peer cannot use is a :class:`BadOffer` (an offer we cannot
answer) or a :class:`BadAnswer` (an answer to our offer we cannot take), each
one sentence naming what is wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.sdp import candidate_from_sdp

from edge.config import IceServerConfig
from edge.uplink.consent import sustain_consent
from edge.uplink.fanout import Sink
from edge.uplink.history import NackHistory, deepen_history
from edge.uplink.host_candidates import offer_only
from edge.uplink.link_budget import LinkBudgets
from edge.uplink.redundancy import Redundancy
from edge.uplink.sdp import (
    AIORTC_PLID,
    BadOffer,
    PinnedOffer,
    VideoOffer,
    choose_format,
    h264_payload_type,
    inspect_offer,
    label_profile,
    pin_answer,
    pin_offer,
    refusal_reason,
    restore_payload_types,
)
from edge.uplink.track import PassthroughTrack

log = logging.getLogger(__name__)

class BadAnswer(ValueError):
    """An answer to our offer that we cannot take; `str()` says why, in one sentence."""


def ice_servers(servers: Sequence[IceServerConfig], base_dir: Path) -> list[RTCIceServer]:
    """aiortc's ICE servers from the config, TURN credentials read now (ConfigError if not)."""
    return [RTCIceServer(urls=s.url, username=s.username, credential=s.password(base_dir))
            for s in servers]


class Peer:
    """A peer connection sending `sink`'s units as H.264 labelled `profile_level_id`."""

    def __init__(self, sink: Sink, profile_level_id: str, *, ice: list[RTCIceServer],
                 worst_rtt_ms: int, budgets: LinkBudgets | None = None,
                 name: str = "", ice_address: str | None = None) -> None:
        self.name = name
        self.profile_level_id = profile_level_id
        self.worst_rtt_ms = worst_rtt_ms
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=ice))
        self.budgets = budgets
        self.track = PassthroughTrack(sink, budgets.media if budgets else None)
        self.transceiver: RTCRtpTransceiver = self.pc.addTransceiver(self.track,
                                                                     direction="sendonly")
        self.sender: RTCRtpSender = self.transceiver.sender
        _prefer_h264(self.transceiver)
        # aiortc made the transport with the transceiver; ICE connects later.
        connection = getattr(getattr(self.sender.transport, "transport", None),
                             "_connection", None)
        self.consent_sustained = sustain_consent(connection)
        # Host candidates on the address the viewer reached us at, alone
        # (:mod:`edge.uplink.host_candidates`): a centre that came through the tunnel
        # must not pair with a WAN's address.
        self.ice_address = ice_address if ice_address and offer_only(
            connection, ice_address) else None
        self.history: NackHistory | None = None
        self.redundancy: Redundancy | None = None
        self.keyframes_wanted = 0  # PLI/FIR from the viewer
        self.payload_type: int | None = None
        self.kbps = 0.0
        self.rtt_ms: float | None = None
        self.packets_lost: int | None = None
        self._bytes: tuple[float, int] | None = None
        self._deferred: asyncio.Task[None] | None = None

    @property
    def connection_state(self) -> str:
        return str(self.pc.connectionState)

    def on_keyframe_wanted(self, callback: Callable[[], None]) -> None:
        """Call `callback()` when the viewer asks for a keyframe (RTCP PLI or FIR).

        aiortc's sender would only mark its own encoder's next frame, which a
        passthrough track does not have; the callback asks whoever can.
        """
        def wanted() -> None:
            self.keyframes_wanted += 1
            callback()

        self.sender._send_keyframe = wanted  # type: ignore[method-assign]

    def on_state(self, callback: Callable[[str], None]) -> None:
        """Call `callback(connection_state)` whenever the connection state changes."""
        self.pc.on("connectionstatechange", lambda: callback(self.connection_state))

    # -- answering (WHEP) ------------------------------------------------------------
    async def answer(self, offer_sdp: str, checked: VideoOffer | None = None) -> str:
        """Our answer to `offer_sdp` (`checked`: its :func:`inspect_offer`, if done already).

        BadOffer when the offer is unusable, from our checks or aiortc's.
        """
        offer = checked if checked is not None else inspect_offer(offer_sdp)
        chosen = choose_format(offer, self.profile_level_id)
        pinned = pin_offer(offer_sdp, chosen)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(pinned.sdp, "offer"))
            restore_payload_types(self.transceiver._codecs, pinned.renumbered)
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as e:  # aiortc's OperationError & co: the offer is what it cannot take
            raise BadOffer(refusal_reason(e)) from None
        self._negotiated(chosen.pt)
        if pinned.deferred:
            self._deferred = asyncio.create_task(self._add_deferred(pinned),
                                                 name=f"peer-{self.name}-candidates")
        return pin_answer(self.pc.localDescription.sdp, pinned, self.profile_level_id)

    async def _add_deferred(self, pinned: PinnedOffer) -> None:
        """The offer's mDNS candidates, resolved while the session already runs."""

        async def add(mid: str | None, value: str) -> None:
            try:
                candidate = candidate_from_sdp(value.removeprefix("candidate:"))
                candidate.sdpMid = mid
                await self.pc.addIceCandidate(candidate)
            except Exception as e:  # one bad candidate must not end the others, nor the session
                log.debug("deferred candidate %r: %s", value, e)

        await asyncio.gather(*(add(mid, value) for mid, value in pinned.deferred))
        if pinned.end_of_candidates:
            with contextlib.suppress(Exception):
                await self.pc.addIceCandidate(None)

    # -- offering (WHIP) -------------------------------------------------------------
    async def offer(self) -> str:
        """Our offer: the one H.264 format (and its RTX), with every candidate gathered."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp = self.pc.localDescription.sdp
        pt = h264_payload_type(sdp)
        if pt is None:  # an aiortc without H.264 in its codec table: nothing to send with
            raise RuntimeError("this aiortc offers no H.264, which the uplink needs")
        return label_profile(sdp, pt, self.profile_level_id)

    async def accept(self, answer_sdp: str) -> None:
        """Take the answer to :meth:`offer`; BadAnswer (one sentence) if it cannot be used."""
        pt = h264_payload_type(answer_sdp)
        if pt is None:
            raise BadAnswer("the answer accepts no H.264 in its first video section")
        # The answer may carry the camera's real profile (ours did); aiortc
        # matches formats by profile and knows only its own.
        relabelled = label_profile(answer_sdp, pt, AIORTC_PLID)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(relabelled, "answer"))
        except Exception as e:  # aiortc raises whatever its parser trips on
            log.warning("cannot take an answer: %s: %s", type(e).__name__, e)
            raise BadAnswer("the answer cannot be used (the log has aiortc's reason)") from None
        self._negotiated(pt)

    # -- both ------------------------------------------------------------------------
    def _negotiated(self, pt: int) -> None:
        repair = self.budgets.repair if self.budgets else None
        self.history = deepen_history(self.sender, self.worst_rtt_ms, budget=repair)
        if self.history is not None:
            self.redundancy = Redundancy(self.sender, self.history, repair, self.name)
            self.redundancy.start()
        self.payload_type = pt

    async def update_stats(self) -> None:
        """Bitrate sent, round trip and loss from RTCP; nothing until connected."""
        if self.connection_state != "connected":
            return
        report = await self.sender.getStats()
        now = time.monotonic()
        for stats in report.values():
            kind = getattr(stats, "type", "")
            if kind == "outbound-rtp":
                sent = int(stats.bytesSent)
                if self._bytes is not None and now > self._bytes[0]:
                    rate = (sent - self._bytes[1]) * 8 / 1000 / (now - self._bytes[0])
                    self.kbps = rate if self.kbps == 0 else 0.5 * self.kbps + 0.5 * rate
                self._bytes = (now, sent)
            elif kind == "remote-inbound-rtp":
                rtt = getattr(stats, "roundTripTime", None)
                if rtt is not None:
                    self.rtt_ms = float(rtt) * 1000
                self.packets_lost = int(stats.packetsLost)

    async def close(self) -> None:
        """Stop sending and close the connection (the track's sink closes with it)."""
        if self.redundancy is not None:
            await self.redundancy.stop()
        if self._deferred is not None:
            self._deferred.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._deferred
        with contextlib.suppress(Exception):
            await self.pc.close()


def _prefer_h264(transceiver: RTCRtpTransceiver) -> None:
    # The pinned description leaves one H.264 format; the preference makes the
    # pin explicit at aiortc's level too (and RTX with it, for NACK repair).
    codecs = RTCRtpSender.getCapabilities("video").codecs
    h264 = [c for c in codecs if c.mimeType.lower() == "video/h264"
            and c.parameters.get("profile-level-id") == AIORTC_PLID]
    rtx = [c for c in codecs if c.mimeType.lower() == "video/rtx"]
    preferred: list[RTCRtpCodecCapability] = h264 + rtx
    if h264:
        transceiver.setCodecPreferences(preferred)
