"""Viewer sessions: an SDP offer in, a peer connection sending one camera stream out.

:class:`SessionManager` owns every session, every stream fanout and every
transcoder of the uplink, and decides each WHEP request:

- which stream: ``main`` or ``sub`` as asked, or for ``auto`` the camera's
  ``uplink_profile`` when the link to the centre is constrained (every link
  that is up is constrained) and ``main`` otherwise; an H.265 camera always
  sends its sub stream transcoded (:mod:`edge.uplink.transcode`);
- whether it can: camera known (404), live with its stream announced (409
  with ``Retry-After``), sessions and transcoders free (503), offer usable (400);
- the peer connection: a passthrough track on a sink of the stream's fanout,
  the offer pinned to one H.264 format (:mod:`edge.uplink.sdp`), a NACK
  history for the worst round trip (:mod:`edge.uplink.history`), no ICE
  servers unless configured (aiortc would otherwise ask Google's STUN).

A session closes when the viewer DELETEs it, when its connection fails or
closes, when it has not connected within :data:`CONNECT_TIMEOUT_S`, when its
camera's stream changes codec or profile (the answer no longer describes it),
and when the uplink stops. While its camera is down it stays, says so
(state ``waiting``), and resumes by itself when the camera is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq
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

from edge.bus.endpoints import Endpoints
from edge.bus.messages import CameraStream, ViewerSession
from edge.config import UplinkConfig
from edge.media.subscriber import MediaSubscriber
from edge.uplink.fanout import Fanout, FrameSource, Sink
from edge.uplink.history import NackHistory, deepen_history
from edge.uplink.sdp import (
    AIORTC_PLID,
    DEFAULT_PLID,
    BadOffer,
    PinnedOffer,
    VideoOffer,
    choose_format,
    inspect_offer,
    pin_answer,
    pin_offer,
    profile_level_id_from_annexb,
    refusal_reason,
    restore_payload_types,
)
from edge.uplink.state import CameraState, UplinkState
from edge.uplink.track import PassthroughTrack
from edge.uplink.transcode import Transcoder

log = logging.getLogger(__name__)

PROFILES = ("main", "sub", "auto")
CONNECT_TIMEOUT_S = 30.0
STALL_S = 2.0  # no unit from the camera for this long: the session is waiting
# Camera states that only say the bus has not told us lately (the bus may be
# stalled while the camera's media plane flows): the media plane decides.
MEDIA_DECIDES = ("silent", "unknown")
# How long a request waits for a live unit when the bus cannot vouch for the camera.
MEDIA_PROBE_S = 1.5
TRANSCODE_START_S = 4.0
RETRY_AFTER_S = 2
STATS_EVERY_S = 1.0


class WhepError(Exception):
    """A refusal: HTTP status, a reason an operator can act on, extra headers."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


@dataclass(frozen=True, slots=True)
class StreamKey:
    camera_id: str
    profile: str  # the camera stream read: main | sub
    transcoded: bool

    @property
    def name(self) -> str:
        return f"{self.camera_id}/{self.profile}{'@h264' if self.transcoded else ''}"


def ice_servers(urls: list[str]) -> list[RTCIceServer]:
    return [RTCIceServer(urls=url) for url in urls]


def _short_agent(user_agent: str) -> str:
    for name in ("Edg/", "OPR/", "Firefox/", "Chrome/", "Safari/"):
        i = user_agent.find(name)
        if i >= 0:
            version = user_agent[i + len(name):].split(" ")[0].split(".")[0]
            browser = {"Edg/": "Edge", "OPR/": "Opera"}.get(name, name.rstrip("/"))
            return f"{browser} {version}"
    return user_agent.split(" ")[0][:32]


class Session:
    def __init__(self, manager: SessionManager, key: StreamKey, requested: str,
                 remote: str, user_agent: str) -> None:
        self.id = secrets.token_urlsafe(12)
        self.manager = manager
        self.key = key
        self.requested = requested
        self.remote = remote
        self.user_agent = user_agent
        self.viewer = f"{remote} ({_short_agent(user_agent)})" if user_agent else remote
        self.started_ns = time.time_ns()
        self.started_mono = time.monotonic()
        self.pc: RTCPeerConnection | None = None
        self.sender: RTCRtpSender | None = None
        self.track: PassthroughTrack | None = None
        self.sink: Sink | None = None
        self.fanout: Fanout | None = None
        self.history: NackHistory | None = None
        self.payload_type: int | None = None
        self.profile_level_id = ""
        self.closed = False
        self.close_reason = ""
        self.kbps = 0.0
        self.rtt_ms: float | None = None
        self.packets_lost: int | None = None
        self._bytes: tuple[float, int] | None = None
        self.deferred: asyncio.Task[None] | None = None

    @property
    def camera_id(self) -> str:
        return self.key.camera_id

    @property
    def connection_state(self) -> str:
        return self.pc.connectionState if self.pc is not None else "new"

    def state_detail(self) -> tuple[str, str]:
        if self.closed:
            return "closed", self.close_reason
        cam = self.manager.state.camera(self.camera_id)
        fanout = self.fanout
        if fanout is not None and fanout.error:
            return "waiting", f"stream error: {fanout.error}"
        stalled = fanout.stalled_for() if fanout is not None else None
        flowing = stalled is not None and stalled < STALL_S
        if cam is not None and not cam.live and not (flowing and cam.state in MEDIA_DECIDES):
            return "waiting", f"camera {self.camera_id} is {cam.state}: {cam.reason}".rstrip(": ")
        if not flowing:
            silent = "no video yet" if stalled is None else f"no video for {stalled:.0f} s"
            return "waiting", f"camera {self.camera_id}: {silent}"
        if self.connection_state != "connected":
            return "connecting", f"ICE/DTLS {self.connection_state}"
        return "live", ""

    def to_message(self) -> ViewerSession:
        state, detail = self.state_detail()
        return ViewerSession(
            session_id=self.id, viewer=self.viewer, camera_id=self.camera_id,
            profile=self.key.profile, kbps=round(self.kbps, 1),
            rtt_ms=None if self.rtt_ms is None else round(self.rtt_ms, 1),
            started_ns=self.started_ns, state=state, detail=detail,
            packets_lost=self.packets_lost, transcoded=self.key.transcoded)

    def to_json(self) -> dict[str, Any]:
        body = self.to_message().to_body()
        body["requested"] = self.requested
        body["profile_level_id"] = self.profile_level_id
        track, sink, hist = self.track, self.sink, self.history
        body["frames_sent"] = track.sent if track else 0
        body["frames_dropped"] = sink.stats.dropped if sink else 0
        body["resyncs"] = sink.stats.resyncs if sink else 0
        body["source_lost"] = self.fanout.source_lost if self.fanout else 0
        delays = sorted(track.delays_ms) if track else []
        body["uplink_delay_ms"] = None if not delays else {
            "p50": round(delays[len(delays) // 2], 1),
            "p95": round(delays[int(len(delays) * 0.95)], 1)}
        body["nack"] = None if hist is None else {
            "window_s": hist.window_s, "packets": len(hist), "span_s": round(hist.span_s, 2),
            "retransmitted": hist.retransmitted, "missed": hist.missed}
        return body

    async def update_stats(self) -> None:
        if self.sender is None or self.connection_state != "connected":
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


class SessionManager:
    def __init__(self, config: UplinkConfig, state: UplinkState,
                 zmq_ctx: zmq.Context[zmq.Socket[bytes]], endpoints: Endpoints,
                 on_change: Callable[[], None] = lambda: None) -> None:
        self.config = config
        self.state = state
        self.zmq_ctx = zmq_ctx
        self.endpoints = endpoints
        self.on_change = on_change
        self.sessions: dict[str, Session] = {}
        self.fanouts: dict[StreamKey, Fanout] = {}
        self.transcoders: dict[StreamKey, Transcoder] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._creating = 0  # sessions being negotiated: they hold a slot already
        state.on_stream = self._stream_announced

    # -- deciding ---------------------------------------------------------------------
    def resolve(self, cam: CameraState, requested: str) -> StreamKey:
        """The camera stream a request gets (see the module docstring)."""
        if requested not in PROFILES:
            raise WhepError(400, f'profile must be one of {", ".join(PROFILES)}, '
                            f'not "{requested}"')
        profile = requested
        if profile == "auto":
            constrained = self.state.constrained()
            profile = (cam.config.uplink_profile if cam.config else "sub") if constrained \
                else "main"
        has_sub = "sub" in cam.streams or bool(cam.config and cam.config.sub)
        if profile == "sub" and not has_sub:
            profile = "main"  # a camera without a sub stream sends what it has
        codec = (cam.streams.get(profile) or cam.streams.get("main") or
                 CameraStream()).codec or (cam.status.codec if cam.status else "")
        if codec == "h265":
            # Only H.264 leaves the vehicle: the smaller stream is transcoded.
            return StreamKey(cam.id, "sub" if has_sub else "main", True)
        return StreamKey(cam.id, profile, False)

    def transcodes_running(self) -> int:
        return sum(1 for k in self.fanouts if k.transcoded)

    # -- creating ---------------------------------------------------------------------
    async def create(self, camera_id: str, requested: str, offer_sdp: str, remote: str,
                     user_agent: str = "") -> tuple[Session, str]:
        """A new session and its SDP answer, or WhepError."""
        if self._closing:
            raise WhepError(503, "the uplink is shutting down", {"Retry-After": "5"})
        cam = self.state.camera(camera_id)
        if cam is None:
            raise WhepError(404, f'no camera "{camera_id}" on this vehicle')
        try:
            offer = inspect_offer(offer_sdp)
        except BadOffer as e:
            raise WhepError(400, str(e)) from None
        key = self.resolve(cam, requested)
        stream = cam.streams.get(key.profile)
        if stream is None or not (cam.live or cam.state in MEDIA_DECIDES):
            why = cam.reason if stream is not None else \
                f"its {key.profile} stream is not announced yet"
            raise WhepError(409, f"camera {camera_id} is not live ({cam.state}): {why}",
                            {"Retry-After": str(RETRY_AFTER_S)})
        if len(self.sessions) + self._creating >= self.config.max_sessions:
            raise WhepError(503, f"all {self.config.max_sessions} viewer sessions are in use; "
                            "close one or raise uplink.max_sessions",
                            {"Retry-After": str(RETRY_AFTER_S * 5)})
        if key.transcoded and key not in self.fanouts and \
                self.transcodes_running() >= self.config.max_transcodes:
            raise WhepError(503, f"camera {camera_id} is H.265 and needs a transcoder to "
                            f"H.264, but all {self.config.max_transcodes} allowed "
                            "(uplink.max_transcodes) are busy with other cameras",
                            {"Retry-After": str(RETRY_AFTER_S * 5)})
        session = Session(self, key, requested, remote, user_agent)
        fanout = self._fanout(key, stream)
        session.fanout = fanout
        self._creating += 1
        try:
            session.sink = fanout.add_sink()
            if not cam.live and not await fanout.wait_live(MEDIA_PROBE_S, STALL_S):
                raise WhepError(409, f"camera {camera_id} is not live ({cam.state}): "
                                f"{cam.reason}, and no video from it within "
                                f"{MEDIA_PROBE_S:g} s", {"Retry-After": str(RETRY_AFTER_S)})
            plid = await self._profile_level_id(key, stream, fanout)
            answer = await self._negotiate(session, offer, offer_sdp, plid)
        except BaseException:
            await self._discard(session)
            raise
        finally:
            self._creating -= 1
        self.sessions[session.id] = session
        log.info("session %s: %s watches %s (asked %s)", session.id, session.viewer,
                 key.name, requested)
        self.on_change()
        return session, answer

    def _fanout(self, key: StreamKey, stream: CameraStream) -> Fanout:
        fanout = self.fanouts.get(key)
        if fanout is not None:
            return fanout
        endpoint = stream.endpoint or self.endpoints.media(key.camera_id, key.profile)

        def open_source() -> FrameSource:
            sub = MediaSubscriber(self.zmq_ctx, endpoint)
            if not key.transcoded:
                return sub
            transcoder = Transcoder(sub, name=key.name, fps=stream.fps or 30.0)
            self.transcoders[key] = transcoder
            return transcoder

        fanout = Fanout((key.camera_id, key.name), open_source, on_idle=self._fanout_idle)
        self.fanouts[key] = fanout
        return fanout

    def _fanout_idle(self, fanout: Fanout) -> None:
        for key, f in list(self.fanouts.items()):
            if f is fanout:
                del self.fanouts[key]
                self.transcoders.pop(key, None)

    async def _profile_level_id(self, key: StreamKey, stream: CameraStream,
                                fanout: Fanout) -> str:
        if key.transcoded:
            # Known only once our encoder has produced its first keyframe.
            transcoder = self.transcoders.get(key)
            if transcoder is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(transcoder.first_keyframe.wait(), TRANSCODE_START_S)
            if transcoder is None or transcoder.profile_level_id is None:
                raise WhepError(409, f"camera {key.camera_id}: its H.265 stream gave no picture "
                                f"to transcode within {TRANSCODE_START_S:.0f} s",
                                {"Retry-After": str(RETRY_AFTER_S)})
            return transcoder.profile_level_id
        if stream.profile_level_id:
            return stream.profile_level_id.lower()
        for frame in fanout.gop[:1]:
            found = profile_level_id_from_annexb(frame.data)
            if found:
                return found
        return DEFAULT_PLID

    async def _negotiate(self, session: Session, offer: VideoOffer, offer_sdp: str,
                         plid: str) -> str:
        assert session.sink is not None
        chosen = choose_format(offer, plid)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers(self.config.ice_servers)))
        session.pc = pc
        track = PassthroughTrack(session.sink)
        session.track = track
        transceiver = pc.addTransceiver(track, direction="sendonly")
        session.sender = transceiver.sender
        _prefer_h264(transceiver)
        pinned = pin_offer(offer_sdp, chosen)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(pinned.sdp, "offer"))
            restore_payload_types(transceiver._codecs, pinned.renumbered)
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as e:  # aiortc's OperationError & co: the offer is what it cannot take
            raise WhepError(400, refusal_reason(e)) from None
        session.history = deepen_history(transceiver.sender, self.config.worst_rtt_ms)
        session.payload_type = chosen.pt
        session.profile_level_id = plid
        pc.on("connectionstatechange", lambda: self._connection_changed(session))
        if pinned.deferred:
            session.deferred = asyncio.create_task(_add_deferred(pc, pinned),
                                                   name=f"session-{session.id}-candidates")
        return pin_answer(pc.localDescription.sdp, pinned, plid)

    # -- closing ----------------------------------------------------------------------
    def _connection_changed(self, session: Session) -> None:
        state = session.connection_state
        log.info("session %s: connection %s", session.id, state)
        if state in ("failed", "closed") and not session.closed:
            self._spawn(self.close(session.id, f"connection {state}"))
        self.on_change()

    def _stream_announced(self, camera_id: str, profile: str, stream: CameraStream) -> None:
        for s in list(self.sessions.values()):
            if s.camera_id != camera_id or s.key.profile != profile or s.key.transcoded:
                continue
            plid = stream.profile_level_id.lower()
            if stream.codec != "h264" or (plid and s.profile_level_id and
                                          plid != s.profile_level_id):
                self._spawn(self.close(s.id, f"camera {camera_id} now sends {stream.codec} "
                                             f"{plid}; reconnect"))

    async def close(self, session_id: str, reason: str = "closed by the viewer") -> bool:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return False
        session.closed, session.close_reason = True, reason
        log.info("session %s closed: %s", session.id, reason)
        await self._discard(session)
        self.on_change()
        return True

    async def _discard(self, session: Session) -> None:
        session.closed = True
        if session.deferred is not None:
            session.deferred.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await session.deferred
        fanout = session.fanout
        if fanout is not None and session.sink is not None:
            await fanout.remove_sink(session.sink)
        elif fanout is not None and not fanout.sinks:
            # Its source failed to open for this, its first viewer.
            await fanout.stop()
            self._fanout_idle(fanout)
        if session.pc is not None:
            with contextlib.suppress(Exception):
                await session.pc.close()

    async def close_all(self, reason: str = "the uplink stopped") -> None:
        self._closing = True
        for sid in list(self.sessions):
            await self.close(sid, reason)
        for fanout in list(self.fanouts.values()):
            await fanout.stop()
        self.fanouts.clear()
        self.transcoders.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- housekeeping -------------------------------------------------------------------
    async def run(self) -> None:
        """Stats and timeouts, once a second, until cancelled."""
        while True:
            await asyncio.sleep(STATS_EVERY_S)
            now = time.monotonic()
            for s in list(self.sessions.values()):
                if s.connection_state != "connected" and \
                        now - s.started_mono > CONNECT_TIMEOUT_S:
                    await self.close(s.id, f"not connected within {CONNECT_TIMEOUT_S:.0f} s")
                    continue
                try:
                    await s.update_stats()
                except Exception as e:  # stats are a nicety; a session must not die of them
                    log.debug("session %s stats: %s", s.id, e)
            if self.sessions:
                self.on_change()

    def messages(self) -> list[ViewerSession]:
        return [s.to_message() for s in self.sessions.values()]

    def to_json(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.sessions.values()]


async def _add_deferred(pc: RTCPeerConnection, pinned: PinnedOffer) -> None:
    """The offer's mDNS candidates, resolved while the session already runs."""

    async def add(mid: str | None, value: str) -> None:
        try:
            candidate = candidate_from_sdp(value.removeprefix("candidate:"))
            candidate.sdpMid = mid
            await pc.addIceCandidate(candidate)
        except Exception as e:  # one bad candidate must not end the others, nor the session
            log.debug("deferred candidate %r: %s", value, e)

    await asyncio.gather(*(add(mid, value) for mid, value in pinned.deferred))
    if pinned.end_of_candidates:
        with contextlib.suppress(Exception):
            await pc.addIceCandidate(None)


def _prefer_h264(transceiver: RTCRtpTransceiver) -> None:
    # pin_offer has already left one H.264 format; the preference makes the pin
    # explicit at aiortc's level too (and RTX with it, for NACK repair).
    codecs = RTCRtpSender.getCapabilities("video").codecs
    h264 = [c for c in codecs if c.mimeType.lower() == "video/h264"
            and c.parameters.get("profile-level-id") == AIORTC_PLID]
    rtx = [c for c in codecs if c.mimeType.lower() == "video/rtx"]
    preferred: list[RTCRtpCodecCapability] = h264 + rtx
    if h264:
        transceiver.setCodecPreferences(preferred)
