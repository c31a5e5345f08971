"""Viewer sessions: one viewer, one camera stream, one peer connection, from offer to close.

:class:`SessionManager` keeps every session of the uplink. For a WHEP request
it asks :class:`~edge.uplink.streams.Streams` which stream the viewer gets and
whether it may have it, takes a sink on that stream's shared fanout, and lets
a :class:`~edge.uplink.peer.Peer` answer the offer.

A session closes when the viewer DELETEs it, when its connection fails or
closes, when it has not connected within :data:`CONNECT_TIMEOUT_S`, when its
camera's stream changes codec or profile (the answer no longer describes it),
and when the uplink stops. While its camera is down it stays, says so
(state ``waiting``), and resumes by itself when the camera is back.

Open sessions follow the link that carries the tunnel to the centre, as the
links service reports it (:meth:`~edge.uplink.state.UplinkState.active_link`):
when that link changes so that a session would now be given the camera's
other stream (a session that asked for ``auto`` or ``main`` is on main, and
the new link is constrained or does not let main cross; or the link allows
main again), the session moves to that stream in-band
(:meth:`~edge.uplink.track.PassthroughTrack.switch_to`: same track, SSRC and
payload type, from the new stream's next keyframe). aiortc cannot renegotiate
an open session cheaply (and has no ICE restart), and the centre's player
should not notice anything but the picture's size. Down to sub is at once;
back to main only once it has been due for ``[uplink] upgrade_after_s``
(the links service already waits before it fails back; this keeps a link
that flaps from flipping the picture). Only cameras with a main and a sub
stream in H.264 switch; with no active link reported, open sessions stay on
their stream, as before.
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
from aiortc import RTCIceServer, RTCPeerConnection

from edge.bus.endpoints import Endpoints
from edge.bus.messages import CameraStream, ViewerSession
from edge.config import UplinkConfig
from edge.uplink.fanout import Fanout, Sink
from edge.uplink.host_candidates import chosen_address
from edge.uplink.keyframes import Ask, KeyframeAsker
from edge.uplink.link_budget import LinkBudgets
from edge.uplink.peer import Peer
from edge.uplink.sdp import DEFAULT_PLID, BadOffer, VideoOffer, inspect_offer
from edge.uplink.state import UplinkState
from edge.uplink.streams import (
    MEDIA_DECIDES,
    SATELLITE_RTT_MS,
    STALL_S,
    Choice,
    Refusal,
    StreamKey,
    Streams,
    covers,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 30.0
STATS_EVERY_S = 1.0
MAX_VIEWERS_REMEMBERED = 1024


def _short_agent(user_agent: str) -> str:
    for name in ("Edg/", "OPR/", "Firefox/", "Chrome/", "Safari/"):
        i = user_agent.find(name)
        if i >= 0:
            version = user_agent[i + len(name):].split(" ")[0].split(".")[0]
            browser = {"Edg/": "Edge", "OPR/": "Opera"}.get(name, name.rstrip("/"))
            return f"{browser} {version}"
    return user_agent.split(" ")[0][:32]


@dataclass
class Switch:
    """A move to another stream under way: its reader and sink, and why."""

    key: StreamKey
    fanout: Fanout
    sink: Sink
    plid: str  # the stream's own profile-level-id
    why: str  # why the session is to be on that stream ("sat allows sub only")
    reason: str  # why it moves, with the link change ("lte → sat: sat allows sub only")


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
        self.peer: Peer | None = None
        self.sink: Sink | None = None
        self.fanout: Fanout | None = None
        self.closed = False
        self.close_reason = ""
        # Why it is on the stream it is on, when that is not the one asked for.
        self.stream_reason = ""
        # The profile-level-id of that stream when the session went onto it: a new one
        # announced means the camera changed it under us.
        self.stream_plid = ""
        self.switches = 0
        self.last_switch = ""  # why it made its last switch ("lte → sat: sat allows sub only")
        self.switch: Switch | None = None
        # Since when (monotonic) it has been due to move up to main: see upgrade_after_s.
        self.upgrade_due_since: float | None = None

    @property
    def camera_id(self) -> str:
        return self.key.camera_id

    @property
    def pc(self) -> RTCPeerConnection | None:
        return self.peer.pc if self.peer is not None else None

    @property
    def profile_level_id(self) -> str:
        """What the answer told the viewer the stream is ("" before it was answered)."""
        return self.peer.profile_level_id if self.peer is not None else ""

    @property
    def connection_state(self) -> str:
        return self.peer.connection_state if self.peer is not None else "new"

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
        peer = self.peer
        rtt = peer.rtt_ms if peer is not None else None
        return ViewerSession(
            session_id=self.id, viewer=self.viewer, camera_id=self.camera_id,
            profile=self.key.profile, kbps=round(peer.kbps if peer is not None else 0.0, 1),
            rtt_ms=None if rtt is None else round(rtt, 1),
            started_ns=self.started_ns, state=state, detail=detail,
            packets_lost=peer.packets_lost if peer is not None else None,
            transcoded=self.key.transcoded)

    def to_json(self) -> dict[str, Any]:
        body = self.to_message().to_body()
        body["requested"] = self.requested
        body["profile_level_id"] = self.profile_level_id
        body["stream_reason"] = self.stream_reason
        body["switches"] = self.switches
        body["last_switch"] = self.last_switch
        # Under way (until the new stream's keyframe), or due up to main and waiting out
        # upgrade_after_s (`upgrade_in_s` more seconds).
        due = self.upgrade_due_since
        wait = None if due is None else max(
            0.0, self.manager.config.upgrade_after_s - (time.monotonic() - due))
        body["switching_to"] = (self.switch.key.profile if self.switch is not None
                                else "main" if due is not None else None)
        body["upgrade_in_s"] = None if wait is None else round(wait, 1)
        peer, sink = self.peer, self.sink
        # The one host address its ICE candidates offer (None: every address).
        body["ice_address"] = peer.ice_address if peer is not None else None
        track = peer.track if peer is not None else None
        hist = peer.history if peer is not None else None
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
            "retransmitted": hist.retransmitted, "missed": hist.missed,
            "suppressed": hist.suppressed, "over_budget": hist.over_budget}
        body["paced_s"] = round(track.paced_s, 3) if track else 0.0
        body["keyframes_wanted"] = peer.keyframes_wanted if peer is not None else 0
        copies = peer.redundancy if peer is not None else None
        body["redundancy"] = None if copies is None else {
            "enabled": copies.enabled, "copies": copies.copies, "skipped": copies.skipped}
        return body


async def _nobody_to_ask(_key: StreamKey, _reason: str) -> str:
    return "no camera service to ask"


class SessionManager:
    def __init__(self, config: UplinkConfig, state: UplinkState,
                 zmq_ctx: zmq.Context[zmq.Socket[bytes]], endpoints: Endpoints,
                 on_change: Callable[[], None] = lambda: None,
                 ice: list[RTCIceServer] | None = None,
                 ask_keyframe: Ask | None = None) -> None:
        self.config = config
        self.ice = ice or []  # STUN/TURN for our own candidates; none unless configured
        self.state = state
        self.streams = Streams(config, state, zmq_ctx, endpoints)
        self.keyframes = KeyframeAsker(ask_keyframe or _nobody_to_ask, self._force_idr)
        self.on_change = on_change
        self.sessions: dict[str, Session] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._creating = 0  # sessions being negotiated: they hold a slot already
        # The round trip last measured (RTCP) to each viewer address: `auto` uses it.
        self.viewer_rtt_ms: dict[str, float] = {}
        # One budget for all sessions: they share the link and its modem's queue.
        self.budgets = LinkBudgets(state.capacity_bps())
        state.on_stream = self._stream_announced
        state.on_link = lambda _link: self.follow_links()
        # The active link as last seen, and the last change of it in words ("lte → sat").
        self._active: str | None = None
        self._link_change = ""

    # -- creating ---------------------------------------------------------------------
    async def create(self, camera_id: str, requested: str, offer_sdp: str, remote: str,
                     user_agent: str = "", local: str | None = None) -> tuple[Session, str]:
        """A new session and its SDP answer, or Refusal. `local`: the address the viewer
        reached us at (its session offers only that one, when it is a host address)."""
        if self._closing:
            raise Refusal(503, "the uplink is shutting down", {"Retry-After": "5"})
        cam = self.streams.camera(camera_id)
        try:
            offer = inspect_offer(offer_sdp)
        except BadOffer as e:
            raise Refusal(400, str(e)) from None
        choice = self.streams.choose(cam, requested, self.viewer_rtt_ms.get(remote))
        self.streams.admit(choice, len(self.sessions) + self._creating)
        session = Session(self, choice.key, requested, remote, user_agent)
        session.stream_reason = choice.reason
        session.stream_plid = choice.stream.profile_level_id.lower() or DEFAULT_PLID
        fanout = self.streams.fanout(choice)
        session.fanout = fanout
        self._creating += 1
        try:
            session.sink = fanout.add_sink()
            await self.streams.confirm_live(choice, fanout)
            answer = await self._answer(session, choice, offer_sdp, offer,
                                        chosen_address(local))
        except BaseException:
            await self._discard(session)
            raise
        finally:
            self._creating -= 1
        self.sessions[session.id] = session
        log.info("session %s: %s watches %s (asked %s%s)", session.id, session.viewer,
                 choice.key.name, requested, f": {choice.reason}" if choice.reason else "")
        self.on_change()
        return session, answer

    async def _answer(self, session: Session, choice: Choice, offer_sdp: str,
                      offer: VideoOffer, ice_address: str | None = None) -> str:
        assert session.sink is not None
        plid = await self.streams.profile_level_id(choice)
        self.budgets.capacity_bps = self.state.capacity_bps()
        peer = Peer(session.sink, plid, ice=self.ice, budgets=self.budgets,
                    worst_rtt_ms=self.config.worst_rtt_ms, name=session.id,
                    ice_address=ice_address)
        session.peer = peer
        try:
            answer = await peer.answer(offer_sdp, checked=offer)
        except BadOffer as e:
            raise Refusal(400, str(e)) from None
        peer.on_state(lambda state: self._connection_changed(session, state))
        peer.on_keyframe_wanted(lambda: self.keyframes.want(
            session.key, f"session {session.id} lost a picture"))
        self._choose_redundancy(peer, self.viewer_rtt_ms.get(session.remote))
        return answer

    def _choose_redundancy(self, peer: Peer, rtt_ms: float | None) -> None:
        if peer.redundancy is None:
            return
        mode = self.config.redundancy
        peer.redundancy.enabled = mode == "always" or (
            mode == "auto" and rtt_ms is not None and rtt_ms >= SATELLITE_RTT_MS)

    # -- closing ----------------------------------------------------------------------
    def _connection_changed(self, session: Session, state: str) -> None:
        log.info("session %s: connection %s", session.id, state)
        if state in ("failed", "closed") and not session.closed:
            self._spawn(self.close(session.id, f"connection {state}"))
        self.on_change()

    def _stream_announced(self, camera_id: str, profile: str, stream: CameraStream) -> None:
        for s in list(self.sessions.values()):
            if s.camera_id != camera_id or s.key.transcoded:
                continue
            switch = s.switch
            if switch is not None and switch.key.profile == profile and (
                    stream.codec != "h264" or
                    (stream.profile_level_id.lower() or DEFAULT_PLID) != switch.plid):
                # Moving onto a stream that just changed: decide again from the new one.
                self._cancel_switch(s)
            if s.key.profile != profile:
                continue
            plid = stream.profile_level_id.lower()
            if stream.codec != "h264" or (plid and s.stream_plid and plid != s.stream_plid):
                self._spawn(self.close(s.id, f"camera {camera_id} now sends {stream.codec} "
                                             f"{plid}; reconnect"))

    # -- following the active link ------------------------------------------------------
    def follow_links(self) -> None:
        """Move open sessions to the stream the active link now gives them (see the module
        docstring). Called whenever a link's status is heard and once a second."""
        self.budgets.capacity_bps = self.state.capacity_bps()
        active = self.state.active_link()
        now = time.monotonic()
        if active is None:
            # No links service to follow (or not lately): sessions stay where they are.
            for s in self.sessions.values():
                s.upgrade_due_since = None
            return
        if active.id != self._active:
            was = self._active
            self._link_change = f"{was} → {active.id}" if was else f"{active.id} active"
            self._active = active.id
            log.info("the tunnel to the centre is on %s (%s)", active.id,
                     active.limits() or "main allowed")
        for s in list(self.sessions.values()):
            if not s.closed and s.peer is not None:
                self._follow(s, now)

    def _follow(self, s: Session, now: float) -> None:
        if s.switch is not None and s.switch.sink.closed:
            self._cancel_switch(s)  # its stream's reader stopped under it
        cam = self.state.camera(s.camera_id)
        if cam is None or s.key.transcoded or not self.streams.switchable(cam):
            return
        # The viewer's round trip may keep a session on sub, never move it there: a 4G
        # link's queue can spike past a satellite's round trip for a moment, and the
        # link itself says whether main may cross.
        rtt = self.viewer_rtt_ms.get(s.remote) if s.key.profile == "sub" else None
        try:
            key, why = self.streams.decide(cam, s.requested, rtt)
        except Refusal:
            return
        if key.transcoded or key == s.key:
            s.upgrade_due_since = None
            if s.switch is not None:
                self._cancel_switch(s)  # due back where it is before it got away
            s.stream_reason = why
            return
        if s.switch is not None and s.switch.key == key:
            return  # under way
        if key.profile == "main":
            # Up: only once it has been due for a while (a link that flaps must not flip
            # the picture); down: at once, the link cannot take main now.
            if s.upgrade_due_since is None:
                s.upgrade_due_since = now
            if now - s.upgrade_due_since < self.config.upgrade_after_s:
                return
        s.upgrade_due_since = None
        stream = cam.streams.get(key.profile)
        if stream is None:
            return
        plid = stream.profile_level_id.lower() or DEFAULT_PLID
        if not covers(s.profile_level_id, plid):
            s.stream_reason = (f"stays on {s.key.profile}: {key.profile}'s profile-level-id "
                               f"{plid} is beyond the {s.profile_level_id} negotiated")
            return
        reason = f"{self._link_change}: {why or self._allows(key.profile)}"
        self._start_switch(s, Choice(cam, key, stream, why), plid, reason)

    def _allows(self, profile: str) -> str:
        active = self.state.active_link()
        return f"{active.id if active else 'the link'} allows {profile}"

    def _start_switch(self, s: Session, choice: Choice, plid: str, reason: str) -> None:
        assert s.peer is not None
        if s.switch is not None:
            self._cancel_switch(s)
        fanout = self.streams.fanout(choice)
        try:
            sink = fanout.add_sink()
        except Exception as e:  # its source would not open: stay, and try again next time
            log.warning("session %s: cannot move to %s: %s", s.id, choice.key.name, e)
            if not fanout.sinks:
                self.streams.forget(fanout)
            return
        s.switch = Switch(choice.key, fanout, sink, plid, choice.reason, reason)
        log.debug("session %s: moving to %s at its next keyframe (%s)", s.id,
                  choice.key.name, reason)
        s.peer.track.switch_to(sink, lambda old, new: self._switched(s, old, new))
        self.on_change()

    def _switched(self, s: Session, old: Sink, new: Sink) -> None:
        """The track took its first unit from the new stream: the session is on it now."""
        switch = s.switch
        if switch is None or switch.sink is not new:
            return
        was, old_fanout = s.key, s.fanout
        s.key, s.fanout, s.sink = switch.key, switch.fanout, new
        s.stream_plid, s.stream_reason = switch.plid, switch.why
        s.last_switch = switch.reason
        s.switch = None
        s.switches += 1
        log.info("session %s: %s → %s (%s)", s.id, was.name, s.key.name, switch.reason)
        if old_fanout is not None:
            self._spawn(old_fanout.remove_sink(old))
        self.on_change()

    def _cancel_switch(self, s: Session) -> None:
        switch, s.switch = s.switch, None
        if switch is None:
            return
        if s.peer is not None and s.peer.track.switching is switch.sink:
            s.peer.track.cancel_switch()
        self._spawn(switch.fanout.remove_sink(switch.sink))
        self.on_change()

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
        switch, session.switch = session.switch, None
        if switch is not None:
            await switch.fanout.remove_sink(switch.sink)
        fanout = session.fanout
        if fanout is not None and session.sink is not None:
            await fanout.remove_sink(session.sink)
        elif fanout is not None and not fanout.sinks:
            # Its source failed to open for this, its first viewer.
            await fanout.stop()
            self.streams.forget(fanout)
        if session.peer is not None:
            await session.peer.close()

    async def close_all(self, reason: str = "the uplink stopped") -> None:
        self._closing = True
        for sid in list(self.sessions):
            await self.close(sid, reason)
        await self.keyframes.close()
        await self.streams.stop()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _force_idr(self, key: StreamKey) -> bool:
        transcoder = self.streams.transcoders.get(key)
        if transcoder is None:
            return False
        transcoder.request_keyframe()
        return True

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
            # Also when nothing is heard: a silent links service's word lapses, and a move
            # up to main comes due.
            self.follow_links()
            for s in list(self.sessions.values()):
                if s.connection_state != "connected" and \
                        now - s.started_mono > CONNECT_TIMEOUT_S:
                    await self.close(s.id, f"not connected within {CONNECT_TIMEOUT_S:.0f} s")
                    continue
                if s.peer is None:
                    continue
                try:
                    await s.peer.update_stats()
                except Exception as e:  # stats are a nicety; a session must not die of them
                    log.debug("session %s stats: %s", s.id, e)
                if s.peer.rtt_ms is not None:
                    self._remember_rtt(s.remote, s.peer.rtt_ms)
                    self._choose_redundancy(s.peer, s.peer.rtt_ms)
            if self.sessions:
                self.on_change()

    def _remember_rtt(self, remote: str, rtt_ms: float) -> None:
        self.viewer_rtt_ms.pop(remote, None)
        self.viewer_rtt_ms[remote] = rtt_ms
        while len(self.viewer_rtt_ms) > MAX_VIEWERS_REMEMBERED:
            del self.viewer_rtt_ms[next(iter(self.viewer_rtt_ms))]

    def messages(self) -> list[ViewerSession]:
        return [s.to_message() for s in self.sessions.values()]

    def to_json(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.sessions.values()]
