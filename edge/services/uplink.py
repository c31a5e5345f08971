"""`uplink`: the city centre's way in. WHEP, the viewer page and the state API over HTTP(S).

One process, one event loop (aiortc needs one): the aiohttp server
(:mod:`edge.uplink.whep`), every viewer session (:mod:`edge.uplink.session`)
with its peer connection (:mod:`edge.uplink.peer`) and every stream fanout
(:mod:`edge.uplink.streams`), and a bus subscription that keeps
:class:`~edge.uplink.state.UplinkState` current. It publishes the sessions on
``uplink/sessions`` whenever one starts, changes state or ends, and every
second while any is open (bitrate, round trip), so the commander sees who at
the centre watches what.

Stopping (SIGTERM, cancel) closes every peer connection and media
subscription, then the HTTP server, within the runner's grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from edge.bus import topics
from edge.bus.client import RequestError, RequestTimeout
from edge.bus.messages import KeyframeRequest, ReplayCommand, Reply, UplinkSessions
from edge.runtime.service import Service
from edge.uplink.auth import load_token
from edge.uplink.peer import ice_servers
from edge.uplink.session import SessionManager
from edge.uplink.state import UplinkState
from edge.uplink.streams import StreamKey
from edge.uplink.whep import UplinkHttp, serve, tls_context

PUBLISH_MIN_INTERVAL_S = 0.2
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
        self.state.extra = lambda: {"uplink": {
            "max_sessions": cfg.max_sessions, "max_transcodes": cfg.max_transcodes,
            "transcodes": self.manager.streams.transcodes_running(), "profile": cfg.profile,
            "worst_rtt_ms": cfg.worst_rtt_ms, "redundancy": cfg.redundancy,
            "keyframe_requests": dict(self.manager.keyframes.outcomes)}}
        self.http = UplinkHttp(self.manager, self.state, token, ice, replay=self._replay)
        self._publish_due = asyncio.Event()
        tasks = [asyncio.create_task(self.state.follow(self.ctx.bus), name="uplink-state"),
                 asyncio.create_task(self.manager.run(), name="uplink-sessions"),
                 asyncio.create_task(self._publish_loop(), name="uplink-publish")]
        runner = None
        try:
            tls = tls_context(cfg.tls_cert, cfg.tls_key, self.ctx.config_dir,
                              str(self.ctx.config_path))
            runner, self.url = await serve(self.http, cfg.listen, tls)
            self._publish_due.set()
            self.ctx.ready(f"serving WHEP on {self.url}")
            await asyncio.Event().wait()
        finally:
            self.http.stopping.set()
            await self.manager.close_all()
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            if runner is not None:
                await runner.cleanup()
            self._publish()

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
        return ("running", f"{n} session{'s' if n != 1 else ''} on {self.url}")
