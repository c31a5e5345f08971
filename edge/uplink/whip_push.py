"""WHIP push: chosen cameras sent up to the centre's WHIP server (RFC 9725), once each.

The centre's own media server fans a pushed feed out to its many viewers, so the
satellite carries each feed once however many watch it. Any standard WHIP server
will do: the tests push to one built on werift, a WebRTC stack that is not aiortc.

A :class:`WhipPusher` pushes one camera. An attempt takes a sink on the camera
stream's shared fanout (the same reader the WHEP viewers use: video is never
decoded on the way), lets a :class:`~edge.uplink.peer.Peer` make the offer
(sendonly H.264 labelled with the camera's real profile), POSTs it to the WHIP
URL with the bearer token, applies the answer and keeps the resource its
``Location`` names, to DELETE it when the push stops or fails. No trickle ICE:
the offer carries every candidate, as aiortc gathers them before it offers.

States (:data:`~edge.bus.messages.PUSH_STATES`): ``connecting`` (the offer is out,
or ICE and DTLS are under way), ``live`` (connected), ``retrying`` (the last attempt
failed; the next is due after a backoff from ``retry_min_s`` doubling to
``retry_max_s``, with a little jitter so that vehicles do not return in step after
the centre restarts), ``failed`` (the server refused us for a reason that retrying
cannot mend: a wrong token, a forbidden or malformed request; pushed again only
when asked), ``idle`` (stopped). The last error is one line.

A push is over when its connection fails or closes: ICE consent (RFC 7675, kept
by :mod:`edge.uplink.consent`) closes it once the server has answered no check for
30 s, which is how a server that died or restarted (and so knows nothing of the
session) shows. Then it is retried. (werift 0.25 sends our sender no RTCP receiver
reports, so their silence cannot tell a dead server sooner for every server.)

The stream follows the link to the centre as a WHEP session with ``auto`` does
(:meth:`~edge.uplink.streams.Streams.decide`): on a constrained or satellite link
the camera's ``uplink_profile``, else main; when the active link changes, the push
moves to the other stream in-band (same track and SSRC, from the new stream's next
keyframe; :meth:`~edge.uplink.track.PassthroughTrack.switch_to`), down at once,
back up to main after ``[uplink] upgrade_after_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiortc import RTCIceServer

from edge.bus.messages import PushCommand, PushFeed, PushStateName, Reply, UplinkPushStatus
from edge.config.addresses import fill_url
from edge.config.uplink import PushConfig, UplinkConfig
from edge.uplink.fanout import Fanout, Sink
from edge.uplink.link_budget import LinkBudgets
from edge.uplink.peer import BadAnswer, Peer
from edge.uplink.sdp import DEFAULT_PLID
from edge.uplink.state import UplinkState
from edge.uplink.streams import Choice, Refusal, StreamKey, Streams, covers

log = logging.getLogger(__name__)

# The POST carries the offer and waits for the answer (a server may gather its own
# candidates first); over a satellite hop a few round trips, well within this.
POST_TIMEOUT_S = 15.0
DELETE_TIMEOUT_S = 5.0
# ICE and DTLS after the answer: a few round trips, with ICE's retransmissions.
CONNECT_TIMEOUT_S = 20.0
WATCH_EVERY_S = 1.0
# A push live this long starts its next backoff from retry_min_s again.
STEADY_S = 30.0
JITTER = 0.1
# Answers that no retry can change: our token, our right to push, our request.
FATAL_STATUSES = frozenset({400, 401, 403, 405, 415})
ERROR_CHARS = 200


class PushError(Exception):
    """An attempt failed; `str()` is one line for the commander. `fatal`: do not retry."""

    def __init__(self, text: str, fatal: bool = False) -> None:
        super().__init__(text)
        self.fatal = fatal


def _line(text: str) -> str:
    return " ".join(text.split())[:ERROR_CHARS]


def shown_url(url: str) -> str:
    """The WHIP URL without its query (a server may take a token there; ours never puts
    one in it, but an operator might)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


@dataclass
class _Switch:
    key: StreamKey
    fanout: Fanout
    sink: Sink
    why: str


AskKeyframe = Callable[[StreamKey, str], None]


class WhipPusher:
    """One camera pushed to the WHIP server, attempt after attempt, until stopped."""

    def __init__(self, camera_id: str, pushes: PushManager) -> None:
        self.camera_id = camera_id
        self.pushes = pushes
        self.state: PushStateName = "idle"
        self.since_ns = time.time_ns()
        self.retries = 0
        self.last_error = ""
        self.retry_at: float | None = None  # monotonic
        self.key: StreamKey | None = None
        self.profile_reason = ""
        self.peer: Peer | None = None
        self.fanout: Fanout | None = None
        self.sink: Sink | None = None
        self.location: str | None = None
        self.switch: _Switch | None = None
        self.upgrade_due_since: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._live_since: float | None = None

    # -- control ---------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self.running:
            return
        self.retries = 0
        self.last_error = ""
        self._task = asyncio.create_task(self._run(), name=f"whip-push-{self.camera_id}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.retry_at = None
        self._set("idle")

    def _set(self, state: PushStateName, error: str | None = None) -> None:
        if error is not None:
            self.last_error = _line(error)
        if state != self.state:
            self.state = state
            self.since_ns = time.time_ns()
            log.info("push %s: %s%s", self.camera_id, state,
                     f": {self.last_error}" if state in ("retrying", "failed") else "")
        self.pushes.changed()

    # -- attempts --------------------------------------------------------------------------
    async def _run(self) -> None:
        streak = 0
        cfg = self.pushes.config
        while True:
            self.retry_at = None
            error = ""
            try:
                await self._attempt()
            except PushError as e:
                error = str(e)
                if e.fatal:
                    self._set("failed", error)
                    return
            except Exception as e:  # the push must go on; the log has the detail
                log.exception("push %s: attempt failed", self.camera_id)
                error = f"internal error: {type(e).__name__}: {e}"
            finally:
                await asyncio.shield(self._teardown())
            if self._live_since is not None and \
                    time.monotonic() - self._live_since >= STEADY_S:
                streak = 0
            self._live_since = None
            streak += 1
            self.retries += 1
            delay = min(cfg.retry_max_s, cfg.retry_min_s * 2 ** (streak - 1))
            delay *= 1 + JITTER * (2 * random.random() - 1)
            self.retry_at = time.monotonic() + delay
            self._set("retrying", error)
            await asyncio.sleep(delay)

    async def _attempt(self) -> None:
        pushes = self.pushes
        self._set("connecting")
        cam = pushes.state.camera(self.camera_id)
        if cam is None:
            raise PushError(f"no camera {self.camera_id} on this vehicle")
        try:
            choice = pushes.streams.choose(cam, pushes.config.profile)
        except Refusal as e:
            raise PushError(e.text) from None
        self.key, self.profile_reason = choice.key, choice.reason
        fanout = pushes.streams.fanout(choice)
        self.fanout = fanout
        try:
            self.sink = fanout.add_sink()
        except Exception as e:  # its source would not open
            raise PushError(f"cannot read camera {self.camera_id}'s stream: {e}") from None
        try:
            await pushes.streams.confirm_live(choice, fanout)
            plid = await pushes.streams.profile_level_id(choice)
        except Refusal as e:
            raise PushError(e.text) from None
        pushes.budgets.capacity_bps = pushes.state.capacity_bps()
        peer = Peer(self.sink, plid, ice=pushes.ice, budgets=pushes.budgets,
                    worst_rtt_ms=pushes.uplink.worst_rtt_ms, name=f"push-{self.camera_id}")
        self.peer = peer
        self._wake.clear()
        peer.on_state(lambda _state: self._wake.set())
        peer.on_keyframe_wanted(lambda: pushes.ask_keyframe(
            self.key or choice.key, f"the WHIP server lost a picture of {self.camera_id}"))
        offer = await peer.offer()
        answer = await self._post(offer)
        try:
            await peer.accept(answer)
        except BadAnswer as e:
            raise PushError(f"the WHIP server's answer: {e}") from None
        await self._connected(peer)
        self._live_since = time.monotonic()
        self.retry_at = None
        self._set("live", "")
        await self._watch(peer)

    async def _post(self, offer: str) -> str:
        pushes = self.pushes
        headers = {"Content-Type": "application/sdp", "Accept": "application/sdp"}
        if pushes.token:
            headers["Authorization"] = f"Bearer {pushes.token}"
        url = fill_url(pushes.config.whip_url, pushes.vehicle, self.camera_id)
        try:
            async with pushes.http.post(url, data=offer.encode(), headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT_S),
                                        allow_redirects=True) as response:
                body = await response.text(errors="replace")
                if response.status != 201:
                    why = _line(body) or response.reason or ""
                    raise PushError(
                        f"the WHIP server answered {response.status}"
                        + (f": {why}" if why else "")
                        + (" (check uplink.push.token)" if response.status in (401, 403)
                           else ""),
                        fatal=response.status in FATAL_STATUSES)
                location = response.headers.get("Location")
                if location:
                    self.location = urljoin(str(response.url), location)
                else:  # RFC 9725 requires one; without it the push cannot be ended cleanly
                    log.warning("push %s: the WHIP server gave no Location: the session "
                                "cannot be DELETEd", self.camera_id)
                if not body.strip():
                    raise PushError("the WHIP server answered 201 with no SDP")
                return body
        except aiohttp.ClientConnectorError as e:
            err = e.os_error
            # aiohttp's own text ("Connect call failed (...)") hides the reason.
            why = os.strerror(err.errno) if err is not None and err.errno else str(err or e)
            raise PushError(f"cannot reach the WHIP server {shown_url(url)}: {why}") from None
        except TimeoutError:
            raise PushError(f"no answer from the WHIP server within {POST_TIMEOUT_S:.0f} s"
                            ) from None
        except aiohttp.ClientError as e:
            raise PushError(f"the WHIP server {shown_url(url)}: {type(e).__name__}: {e}"
                            ) from None

    async def _connected(self, peer: Peer) -> None:
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while peer.connection_state != "connected":
            if peer.connection_state in ("failed", "closed"):
                raise PushError(f"ICE/DTLS {peer.connection_state} before connecting")
            left = deadline - time.monotonic()
            if left <= 0:
                raise PushError(f"not connected within {CONNECT_TIMEOUT_S:.0f} s "
                                f"(ICE/DTLS {peer.connection_state})")
            self._wake.clear()
            await _wait(self._wake, left)

    async def _watch(self, peer: Peer) -> None:
        """Until the session is over: its connection fails or closes."""
        while True:
            self._wake.clear()
            await _wait(self._wake, WATCH_EVERY_S)
            if peer.connection_state != "connected":
                raise PushError(f"the connection to the WHIP server {peer.connection_state} "
                                "(it stopped answering, or ended the session)")
            with contextlib.suppress(Exception):  # stats are a nicety
                await peer.update_stats()
            self._check_stream()
            self.pushes.changed()

    def _check_stream(self) -> None:
        """A camera that now announces a stream the answer does not describe: push again."""
        cam = self.pushes.state.camera(self.camera_id)
        key, peer = self.key, self.peer
        if cam is None or key is None or peer is None or key.transcoded:
            return
        stream = cam.streams.get(key.profile)
        if stream is None:
            return
        plid = stream.profile_level_id.lower() or DEFAULT_PLID
        if stream.codec != "h264" or not covers(peer.profile_level_id, plid):
            raise PushError(f"camera {self.camera_id} now sends {stream.codec} {plid}; "
                            "pushing again")

    async def _teardown(self) -> None:
        """End the server's session (DELETE), the connection and our readers."""
        location, self.location = self.location, None
        if location is not None:
            await self.pushes.delete(location)
        switch, self.switch = self.switch, None
        if switch is not None:
            await switch.fanout.remove_sink(switch.sink)
        fanout, sink = self.fanout, self.sink
        self.fanout = self.sink = None
        if fanout is not None and sink is not None:
            await fanout.remove_sink(sink)
        elif fanout is not None and not fanout.sinks:
            await fanout.stop()
            self.pushes.streams.forget(fanout)
        peer, self.peer = self.peer, None
        if peer is not None:
            await peer.close()
        self.upgrade_due_since = None

    # -- following the link to the centre ----------------------------------------------------
    def follow(self, now: float) -> None:
        """Move to the stream the active link now gives this push (module docstring)."""
        peer, key = self.peer, self.key
        if self.state != "live" or peer is None or key is None or key.transcoded:
            return
        if self.switch is not None and self.switch.sink.closed:
            self._cancel_switch()
        streams = self.pushes.streams
        cam = self.pushes.state.camera(self.camera_id)
        if cam is None or not streams.switchable(cam):
            return
        try:
            want, why = streams.decide(cam, self.pushes.config.profile)
        except Refusal:
            return
        if want.transcoded or want == key:
            self.upgrade_due_since = None
            self._cancel_switch()
            self.profile_reason = why
            return
        if self.switch is not None and self.switch.key == want:
            return
        if want.profile == "main":
            # Up only once due for a while: a link that flaps must not flip the picture.
            if self.upgrade_due_since is None:
                self.upgrade_due_since = now
            if now - self.upgrade_due_since < self.pushes.uplink.upgrade_after_s:
                return
        self.upgrade_due_since = None
        stream = cam.streams.get(want.profile)
        if stream is None:
            return
        plid = stream.profile_level_id.lower() or DEFAULT_PLID
        if not covers(peer.profile_level_id, plid):
            self.profile_reason = (f"stays on {key.profile}: {want.profile}'s "
                                   f"profile-level-id {plid} is beyond the "
                                   f"{peer.profile_level_id} negotiated")
            return
        self._cancel_switch()
        fanout = streams.fanout(Choice(cam, want, stream, why))
        try:
            sink = fanout.add_sink()
        except Exception as e:  # stay, and try again at the next look
            log.warning("push %s: cannot move to %s: %s", self.camera_id, want.name, e)
            if not fanout.sinks:
                streams.forget(fanout)
            return
        self.switch = _Switch(want, fanout, sink, why)
        peer.track.switch_to(sink, self._switched)
        self.pushes.changed()

    def _switched(self, old: Sink, new: Sink) -> None:
        switch = self.switch
        if switch is None or switch.sink is not new:
            return
        was, old_fanout = self.key, self.fanout
        self.key, self.fanout, self.sink = switch.key, switch.fanout, new
        self.profile_reason = switch.why
        self.switch = None
        log.info("push %s: %s → %s (%s)", self.camera_id, was.name if was else "?",
                 switch.key.name, switch.why or "the link allows it")
        if old_fanout is not None:
            self.pushes.spawn(old_fanout.remove_sink(old))
        self.pushes.changed()

    def _cancel_switch(self) -> None:
        switch, self.switch = self.switch, None
        if switch is None:
            return
        if self.peer is not None and self.peer.track.switching is switch.sink:
            self.peer.track.cancel_switch()
        self.pushes.spawn(switch.fanout.remove_sink(switch.sink))

    # -- telling -----------------------------------------------------------------------------
    def to_message(self) -> PushFeed:
        peer = self.peer
        left = None if self.retry_at is None or self.state != "retrying" else round(
            max(0.0, self.retry_at - time.monotonic()), 1)
        return PushFeed(
            camera_id=self.camera_id, state=self.state, since_ns=self.since_ns,
            retries=self.retries, last_error=self.last_error,
            profile=self.key.profile if self.key is not None else "",
            profile_reason=self.profile_reason,
            kbps=round(peer.kbps, 1) if peer is not None and self.state == "live" else 0.0,
            frames_sent=peer.track.sent if peer is not None else 0, retry_in_s=left)


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Until `event` is set or `seconds` pass. asyncio.timeout, not wait_for: Python 3.11's
    wait_for swallows a cancel (a stop) that comes as the event is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


class PushManager:
    """Every pushed camera of the uplink: started from the config and by bus requests."""

    def __init__(self, config: PushConfig, uplink: UplinkConfig, state: UplinkState,
                 streams: Streams, budgets: LinkBudgets, *, token: str | None,
                 ice: list[RTCIceServer], ask_keyframe: AskKeyframe | None = None,
                 on_change: Callable[[], None] = lambda: None, vehicle: str = "") -> None:
        self.config = config
        self.vehicle = vehicle  # fills `{vehicle}` in the WHIP URL
        self.uplink = uplink
        self.state = state
        self.streams = streams
        self.budgets = budgets
        self.token = token
        self.ice = ice
        self.ask_keyframe: AskKeyframe = ask_keyframe or (lambda _k, _r: None)
        self.on_change = on_change
        self.pushers: dict[str, WhipPusher] = {}
        self._http: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http

    def changed(self) -> None:
        self.on_change()

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- control -----------------------------------------------------------------------------
    def start_configured(self) -> None:
        for camera_id in self.config.cameras:
            self.start(camera_id)

    def start(self, camera_id: str) -> WhipPusher:
        pusher = self.pushers.get(camera_id)
        if pusher is None:
            pusher = self.pushers[camera_id] = WhipPusher(camera_id, self)
        pusher.start()
        return pusher

    async def stop(self, camera_id: str) -> WhipPusher | None:
        pusher = self.pushers.get(camera_id)
        if pusher is not None:
            await pusher.stop()
        return pusher

    async def handle(self, command: PushCommand) -> Reply:
        """A `PushCommand` from the bus (the dashboard): start or stop one camera's push."""
        action = command.action.strip().lower()
        camera_id = command.camera_id.strip()
        if self._closing:
            return Reply(status="rejected", detail="the uplink is stopping")
        if action not in ("start", "stop"):
            return Reply(status="rejected", detail=f"unknown action {action[:20]!r}: "
                                                   "start or stop")
        if self.state.camera(camera_id) is None:
            known = ", ".join(self.state.cameras) or "none"
            return Reply(status="rejected", detail=f"no camera {camera_id[:64]!r} on this "
                                                   f"vehicle (cameras: {known})")
        if action == "start":
            pusher = self.pushers.get(camera_id)
            if pusher is not None and pusher.running:
                return Reply(status="accepted", detail=f"{camera_id} is pushed already "
                             f"({pusher.state})", data=pusher.to_message().to_body())
            pusher = self.start(camera_id)
            return Reply(status="accepted", detail=f"pushing {camera_id} to "
                         f"{shown_url(self.config.whip_url)}",
                         data=pusher.to_message().to_body())
        pusher = await self.stop(camera_id)
        if pusher is None:
            return Reply(status="accepted", detail=f"{camera_id} was not pushed")
        return Reply(status="accepted", detail=f"{camera_id} no longer pushed",
                     data=pusher.to_message().to_body())

    def follow_links(self) -> None:
        now = time.monotonic()
        for pusher in self.pushers.values():
            pusher.follow(now)

    async def delete(self, location: str) -> None:
        """End a session at the server (RFC 9725 section 4.3); a failure is only logged:
        the server ends a session whose peer is gone by itself."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            async with self.http.delete(
                    location, headers=headers,
                    timeout=aiohttp.ClientTimeout(total=DELETE_TIMEOUT_S)) as response:
                if response.status >= 300 and response.status != 404:
                    log.info("DELETE %s: %s", shown_url(location), response.status)
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            log.debug("DELETE %s: %s", shown_url(location), e)

    async def close_all(self) -> None:
        self._closing = True
        for pusher in list(self.pushers.values()):
            await pusher.stop()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._http is not None:
            await self._http.close()

    # -- telling -----------------------------------------------------------------------------
    @property
    def active(self) -> int:
        return sum(1 for p in self.pushers.values() if p.running)

    def message(self) -> UplinkPushStatus:
        return UplinkPushStatus(whip_url=shown_url(self.config.whip_url),
                                feeds=[p.to_message() for p in self.pushers.values()])

    def to_json(self) -> dict[str, Any]:
        return self.message().to_body()
