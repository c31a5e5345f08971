"""`uplink`: the city centre's way in. WHEP, the viewer page and the state API over HTTP(S).

One process, one event loop (aiortc needs one): the aiohttp server
(:mod:`edge.uplink.whep`), every viewer session (:mod:`edge.uplink.session`)
with its peer connection (:mod:`edge.uplink.peer`) and every stream fanout
(:mod:`edge.uplink.streams`), and a bus subscription that keeps
:class:`~edge.uplink.state.UplinkState` current. It publishes the sessions on
``uplink/sessions`` whenever one starts, changes state or ends, and every
second while any is open (bitrate, round trip), so the commander sees who at
the centre watches what.

With ``[uplink.push]`` it also pushes chosen cameras to the centre's WHIP
server (:mod:`edge.uplink.whip_push`): those the config lists from the start,
and any the commander starts or stops with a ``PushCommand`` asked of
``uplink`` on the bus; every feed's state is on ``uplink/push/status``.

Stopping (SIGTERM, cancel) ends every push (DELETE at the server), closes every
peer connection and media subscription, then the HTTP server, within the
runner's grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiortc import RTCIceServer

from edge.bus import topics
from edge.bus.client import RequestError, RequestTimeout
from edge.bus.envelope import Envelope
from edge.bus.messages import (
    CommandEvent,
    KeyframeRequest,
    Message,
    PtzCommand,
    PushCommand,
    ReplayCommand,
    Reply,
    UplinkSessions,
)
from edge.config import ConfigError
from edge.runtime.service import Service
from edge.uplink.auth import load_token
from edge.uplink.peer import ice_servers
from edge.uplink.session import SessionManager
from edge.uplink.state import UplinkState
from edge.uplink.streams import StreamKey
from edge.uplink.whep import UplinkHttp, serve, tls_context
from edge.uplink.whip_push import PushManager

PUBLISH_MIN_INTERVAL_S = 0.2
PUSH_EVERY_S = 1.0
# A keyframe asked later than this is no use to the viewer that asked.
KEYFRAME_REPLY_S = 2.0


class UplinkService(Service):
    url: str = ""

    async def run(self) -> None:
        cfg = self.ctx.config.uplink
        # aioice narrates every connectivity check at INFO (a dozen lines a
        # viewer); our own session log says what the commander needs.
        logging.getLogger("aioice").setLevel(logging.WARNING)
        token = load_token(cfg, self.ctx.config_dir, str(self.ctx.config_path))
        self.state = UplinkState(self.ctx.config)
        ice = ice_servers(cfg.ice, self.ctx.config_dir)
        self.manager = SessionManager(cfg, self.state, self.ctx.bus.sync_ctx, self.ctx.endpoints,
                                      on_change=self._sessions_changed, ice=ice,
                                      ask_keyframe=self._ask_keyframe)
        self.state.sessions = self.manager.to_json
        self.pushes = self._pushes(ice)
        self.state.extra = lambda: {"uplink": {
            "max_sessions": cfg.max_sessions, "max_transcodes": cfg.max_transcodes,
            "transcodes": self.manager.streams.transcodes_running(), "profile": cfg.profile,
            "worst_rtt_ms": cfg.worst_rtt_ms, "redundancy": cfg.redundancy,
            "keyframe_requests": dict(self.manager.keyframes.outcomes)},
            "push": self.pushes.to_json() if self.pushes is not None else None}
        self.http = UplinkHttp(self.manager, self.state, token, ice, replay=self._replay,
                               ptz=self._ptz)
        self._publish_due = asyncio.Event()
        self._push_due = asyncio.Event()
        tasks = [asyncio.create_task(self.state.follow(self.ctx.bus), name="uplink-state"),
                 asyncio.create_task(self.manager.run(), name="uplink-sessions"),
                 asyncio.create_task(self._publish_loop(), name="uplink-publish"),
                 asyncio.create_task(self._push_loop(), name="uplink-push-publish")]
        runner = None
        try:
            tls = tls_context(cfg.tls_cert, cfg.tls_key, self.ctx.config_dir,
                              str(self.ctx.config_path))
            runner, self.url = await serve(self.http, cfg.listen, tls)
            self._publish_due.set()
            self.ctx.bus.serve(topics.UPLINK_SERVICE, self._handle)
            if self.pushes is not None:
                self.pushes.start_configured()
            self.ctx.ready(f"serving WHEP on {self.url}")
            await asyncio.Event().wait()
        finally:
            self.http.stopping.set()
            if self.pushes is not None:
                await self.pushes.close_all()
            await self.manager.close_all()
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            if runner is not None:
                await runner.cleanup()
            self._publish()
            self._publish_pushes()

    def _pushes(self, ice: list[RTCIceServer]) -> PushManager | None:
        """The WHIP pushes of [uplink.push], their token read now (ConfigError if not)."""
        push = self.ctx.config.uplink.push
        if push is None:
            return None
        try:
            token = push.bearer(self.ctx.config_dir)
        except ConfigError as e:
            raise ConfigError(e.path, [f"uplink.push.token: {p}" for p in e.problems]) from None
        pushes = PushManager(push, self.ctx.config.uplink, self.state, self.manager.streams,
                             self.manager.budgets, token=token, ice=ice,
                             ask_keyframe=self.manager.keyframes.want,
                             on_change=self._pushes_changed,
                             vehicle=self.ctx.config.vehicle)
        # Pushes follow the link to the centre as the viewers' sessions do.
        follow_sessions = self.state.on_link

        def follow(link_id: str) -> None:
            follow_sessions(link_id)
            pushes.follow_links()

        self.state.on_link = follow
        return pushes

    async def _handle(self, env: Envelope) -> Message:
        """Requests asked of `uplink`: `PushCommand` (start or stop pushing a camera)."""
        started = time.monotonic()
        req = env.message
        if not isinstance(req, PushCommand):
            return Reply(status="error", detail=f"expected an uplink.push request, got "
                                                f"{env.header.type}")
        if self.pushes is None:
            reply = Reply(status="rejected", detail="no WHIP server to push to: this "
                          "vehicle's config has no [uplink.push] whip_url")
        else:
            reply = await self.pushes.handle(req)
        reply.elapsed_ms = round((time.monotonic() - started) * 1000, 1)
        self.ctx.log.info("push %s %s by %s: %s (%s)", req.action[:20], req.camera_id[:64],
                          env.header.source, reply.status, reply.detail)
        # Everyone hears what was done (a second console, the recorder, the centre).
        self.ctx.bus.publish(topics.EVENT_COMMAND, CommandEvent(
            service=self.ctx.name, subject=req.camera_id[:64], action=f"push {req.action}"[:40],
            by=env.header.source, status=reply.status, detail=reply.detail,
            elapsed_ms=reply.elapsed_ms))
        return reply

    def _pushes_changed(self) -> None:
        self._push_due.set()

    async def _push_loop(self) -> None:
        # On every change (at most every PUBLISH_MIN_INTERVAL_S) and each second while any
        # camera is pushed: its bit rate and a retry's countdown move.
        if self.pushes is None:
            return
        while True:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancel that
            # comes as the event is set (the stop sets it), and the loop would run on.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PUSH_EVERY_S if self.pushes.active else None):
                    await self._push_due.wait()
            self._push_due.clear()
            # Also when no link status is heard: a move up to main comes due.
            self.pushes.follow_links()
            self._publish_pushes()
            await asyncio.sleep(PUBLISH_MIN_INTERVAL_S)

    def _publish_pushes(self) -> None:
        if self.pushes is not None:
            self.ctx.bus.publish(topics.UPLINK_PUSH_STATUS, self.pushes.message())

    async def _ask_keyframe(self, key: StreamKey, reason: str) -> str:
        try:
            env = await self.ctx.bus.request(
                topics.camera_service(key.camera_id),
                KeyframeRequest(profile=key.profile, reason=reason), timeout=KEYFRAME_REPLY_S)
        except (RequestTimeout, RequestError) as e:
            return f"no answer: {e}"
        reply = env.message
        if not isinstance(reply, Reply):
            return f"answered with {env.header.type}"
        if reply.status != "accepted":
            self.ctx.log.debug("keyframe for %s: %s %s", key.name, reply.status, reply.detail)
        return reply.status

    async def _replay(self, command: ReplayCommand) -> Reply:
        """A control from the viewer page, asked of the replay vehicle (on a replay's bus)."""
        try:
            env = await self.ctx.bus.request(topics.REPLAY_SERVICE, command)
        except (RequestTimeout, RequestError) as e:
            return Reply(status="error", detail=f"the replay did not answer: {e}")
        reply = env.message
        if not isinstance(reply, Reply):
            return Reply(status="error", detail=f"the replay answered {env.header.type}")
        return reply

    async def _ptz(self, camera_id: str, command: PtzCommand) -> Reply:
        """Steering from the centre's viewer page, asked of the camera's service."""
        service = topics.camera_service(camera_id)
        try:
            env = await self.ctx.bus.request(service, command)
        except (RequestTimeout, RequestError) as e:
            return Reply(status="timeout" if isinstance(e, RequestTimeout) else "error",
                         detail=f"{service} did not answer: {e}")
        reply = env.message
        if not isinstance(reply, Reply):
            return Reply(status="error", detail=f"{service} answered {env.header.type}")
        return reply

    def _sessions_changed(self) -> None:
        self._publish_due.set()
        self.state.changed("sessions")

    async def _publish_loop(self) -> None:
        # Session changes come in bursts (a state change per ICE step); one
        # message per burst is what the dashboard needs.
        while True:
            await self._publish_due.wait()
            self._publish_due.clear()
            self._publish()
            await asyncio.sleep(PUBLISH_MIN_INTERVAL_S)

    def _publish(self) -> None:
        self.ctx.bus.publish(topics.UPLINK_SESSIONS,
                             UplinkSessions(sessions=self.manager.messages()))

    def health(self) -> tuple[str, str]:
        if not self.ctx._ready.is_set():
            return ("starting", "")
        n = len(self.manager.sessions)
        pushed = "" if self.pushes is None else f", {self.pushes.active} pushed"
        return ("running", f"{n} session{'s' if n != 1 else ''}{pushed} on {self.url}")
