"""The dashboard's one connection to the bus.

:class:`BusBridge` owns a :class:`~edge.bus.client.BusClient`, runs as a
Textual worker in the app's own event loop, writes every message into the
:class:`~ui.state.DashboardState` model and posts Textual messages for what
the app must react to at once (the bus going or coming back, a new device, a
serious alert). Widgets never see bus traffic directly: they redraw from the
model on their own timer, so a burst of messages costs a burst of cheap model
updates, not a burst of redraws.

Liveness: the broker's own health (``svc/bus/health``, 1 Hz) is the heartbeat,
on a replay's bus too (:mod:`edge.replay.replay_bus`).
Without one for ``heartbeat_timeout`` seconds the bus is "gone"; the bridge
then recreates its client every ``reconnect_every`` seconds (ZeroMQ also
reconnects by itself; a fresh client additionally resubscribes, which makes
the new broker replay every device's last state).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import os
import time
from typing import Any

from textual.message import Message
from textual.message_pump import MessagePump

from edge.bus import messages, topics
from edge.bus.client import BusClient, RequestError, RequestTimeout, Subscription
from edge.bus.endpoints import Endpoints
from edge.bus.envelope import Envelope
from edge.bus.messages import EventMark, Reply, Severity
from ui import thumbnail
from ui.severity import at_least
from ui.state import DashboardState, Event

log = logging.getLogger("ui.bridge")

HEARTBEAT_TIMEOUT_S = 3.0
RECONNECT_EVERY_S = 2.0
CHECK_EVERY_S = 0.25
FLUSH_DELAY_S = 0.5
STALL_S = 1.0  # a check round this late means our loop, not the bus, was stuck
# Alerts this severe or worse also pop up as a notification, not only in the log.
POPUP_SEVERITY: Severity = "error"
PREFIXES = (topics.SVC, topics.CAM, topics.DRONE, topics.LINK, topics.UPLINK, topics.ALERT,
            topics.EVENT, topics.RECORDER, topics.REPLAY, topics.GB)
_BUS_HEALTH = topics.svc_health(topics.BUS_SERVICE)


class BusBridge:
    class Connected(Message):
        """The bus answers again (or for the first time)."""

    class Lost(Message):
        def __init__(self, detail: str) -> None:
            super().__init__()
            self.detail = detail

    class DeviceAppeared(Message):
        def __init__(self, kind: str, key: str) -> None:
            super().__init__()
            self.kind = kind
            self.key = key

    class AlertReceived(Message):
        def __init__(self, event: Event) -> None:
            super().__init__()
            self.event = event

    class ThumbnailReady(Message):
        def __init__(self, camera_id: str) -> None:
            super().__init__()
            self.camera_id = camera_id

    def __init__(self, endpoints: Endpoints, state: DashboardState, *,
                 source: str | None = None,
                 heartbeat_timeout: float = HEARTBEAT_TIMEOUT_S,
                 reconnect_every: float = RECONNECT_EVERY_S) -> None:
        self.endpoints = endpoints
        self.state = state
        self.source = source or f"dashboard[{os.getpid()}]"
        self.state.own_source = self.source
        self.heartbeat_timeout = heartbeat_timeout
        self.reconnect_every = reconnect_every
        self.client: BusClient | None = None
        self.target: MessagePump | None = None
        self.author = _author()
        self._decoders: dict[str, asyncio.Task[None]] = {}
        self._pending_thumbs: dict[str, tuple[bytes, int]] = {}
        self._unsent_marks: list[EventMark] = []
        self._last_heartbeat: tuple[str, int] | None = None
        self._flush_later: asyncio.TimerHandle | None = None
        self._logged_failure = False

    def attach(self, target: MessagePump) -> None:
        """Where Textual messages go (the app)."""
        self.target = target

    def _post(self, message: Message) -> None:
        if self.target is not None:
            self.target.post_message(message)

    # -- the worker ---------------------------------------------------------------
    async def run(self) -> None:
        """Stay connected until cancelled."""
        try:
            while True:
                try:
                    await self._session()
                except asyncio.CancelledError:
                    raise
                except Exception:  # a bug here must not end the dashboard's view of the bus
                    log.exception("bus bridge failed; reconnecting")
                    await asyncio.sleep(self.reconnect_every)
                self.state.bus.reconnects += 1
        finally:
            if self._flush_later is not None:
                self._flush_later.cancel()
            for task in list(self._decoders.values()):
                task.cancel()
            for task in list(self._decoders.values()):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _session(self) -> None:
        """One client's life: until the bus has been gone for `reconnect_every`."""
        client = BusClient(self.endpoints, self.source)
        self.client = client
        # Bus liveness is judged on the wall clock, also in a replay (ui/replay.py).
        started = self.state.wall_now()
        pump = asyncio.create_task(self._pump(client), name="dashboard-bus-pump")
        last_check = time.monotonic()
        try:
            while True:
                await asyncio.wait({pump}, timeout=CHECK_EVERY_S)
                if pump.done():
                    pump.result()  # raises what ended it; run() logs and reconnects
                    return
                stalled = time.monotonic() - last_check > STALL_S
                last_check = time.monotonic()
                if stalled:
                    # Our own loop was held up: heartbeats may be waiting in the socket.
                    # Judge the bus only after the pump had its turn to read them.
                    continue
                now = self.state.wall_now()
                age = self.state.bus_age(now)
                if age is not None and age <= self.heartbeat_timeout:
                    if self.state.set_bus_connected(True, "bus back: heartbeat received"):
                        # A fresh client's publisher may not be wired to the broker the
                        # moment its subscriber hears the heartbeat; marks wait a little.
                        self._flush_later = asyncio.get_running_loop().call_later(
                            FLUSH_DELAY_S, self._flush_marks)
                        self._post(self.Connected())
                    continue
                if age is None and now - started <= self.heartbeat_timeout:
                    continue  # just started: give the broker its first heartbeat
                detail = ("no heartbeat from the bus since the dashboard started" if age is None
                          else f"no heartbeat from the bus for {age:.0f} s")
                if self.state.set_bus_connected(False, f"bus gone: {detail}"):
                    self._post(self.Lost(detail))
                if now - started >= self.reconnect_every:
                    return
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
            self.client = None
            await client.close()

    async def _pump(self, client: BusClient) -> None:
        while True:
            sub = client.subscribe(*PREFIXES)
            try:
                await self._read(sub)
            finally:
                sub.close()

    async def _read(self, sub: Subscription) -> None:
        """Until a replay seeked: its messages keep their recorded headers, so after a seek
        backwards this subscription's sequence memory would take them all for replays of
        the broker's cache. A fresh subscription has none, and the broker's cache gives it
        the latest of every state topic (what the replay republished for the target, even
        if it overtook the status that told of the seek)."""
        replay = self.state.replay
        replay.forget = False
        async for env in sub:
            try:
                self._take(env)
            except Exception:  # odd data must never end the pump
                self.state.bus.odd += 1
                if not self._logged_failure:
                    self._logged_failure = True
                    log.exception("could not take a message on %s; further failures are only "
                                  "counted", env.topic[:80])
            if replay.forget:
                return

    def _take(self, env: Envelope) -> None:
        update = self.state.take(env)  # a replay of the broker's cache changes nothing
        if update is None:
            return
        if update.kind == "heartbeat" and env.topic == _BUS_HEALTH:
            # Only a new (source, seq) is a new sign of life, and only one produced within
            # the timeout (a new client has no earlier one to compare with, and the
            # broker's cache may hold the last beat of a heartbeat long dead).
            key = (env.header.source, env.header.seq)
            produced_age = self.state.wall_now() - env.header.ts_ns / 1e9
            if key != self._last_heartbeat and produced_age < self.heartbeat_timeout:
                self._last_heartbeat = key
                self.state.bus.heartbeat_at = self.state.wall_now()
        if update.new:
            self._post(self.DeviceAppeared(update.kind, update.key))
        if update.kind == "thumbnail":
            record = self.state.mirror.cameras[update.key]
            heard = record.thumbnail
            captured = heard.message.captured_ns if heard is not None else 0
            self._queue_thumbnail(update.key, record.jpeg,
                                  captured if isinstance(captured, int) else 0)
        elif update.kind == "event" and self.state.events:
            event = self.state.events[0]
            if at_least(event.severity, POPUP_SEVERITY):
                self._post(self.AlertReceived(event))

    # -- thumbnails ---------------------------------------------------------------
    def _queue_thumbnail(self, cam_id: str, jpeg: bytes, captured_ns: int) -> None:
        # Latest wins: a camera never has more than one decode running and one waiting.
        self._pending_thumbs[cam_id] = (jpeg, captured_ns)
        if cam_id not in self._decoders:
            self._decoders[cam_id] = asyncio.create_task(
                self._decode(cam_id), name=f"dashboard-thumb-{cam_id}")

    async def _decode(self, cam_id: str) -> None:
        try:
            while (item := self._pending_thumbs.pop(cam_id, None)) is not None:
                jpeg, captured = item
                try:
                    pixels = await asyncio.to_thread(thumbnail.decode, jpeg)
                except thumbnail.ThumbnailError as e:
                    self.state.thumbnail_failed(cam_id, str(e))
                    continue
                except Exception as e:  # cv2 can raise its own error on garbage
                    self.state.thumbnail_failed(cam_id, f"cannot decode: {type(e).__name__}")
                    continue
                self.state.set_thumbnail(cam_id, pixels, captured)
                self._post(self.ThumbnailReady(cam_id))
        finally:
            self._decoders.pop(cam_id, None)

    # -- talking back -------------------------------------------------------------
    async def request(self, service: str, message: messages.Message,
                      timeout: float | None = None) -> Reply:
        """Ask `service`; always a Reply (timeouts and errors become one)."""
        client = self.client
        if client is None or self.state.bus.connected is False:
            return Reply(status="error", detail="not sent: the bus is gone")
        t0 = time.monotonic()
        try:
            env = await client.request(service, message, timeout)
        except RequestTimeout as e:
            return Reply(status="timeout", detail=str(e),
                         elapsed_ms=(time.monotonic() - t0) * 1000)
        except RequestError as e:
            return Reply(status="error", detail=str(e), elapsed_ms=(time.monotonic() - t0) * 1000)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the client was swapped mid-request, a socket error, ...
            return Reply(status="error", detail=f"{type(e).__name__}: {e}",
                         elapsed_ms=(time.monotonic() - t0) * 1000)
        reply = env.message
        if not isinstance(reply, Reply):
            return Reply(status="error", detail=f"unexpected answer of type {env.header.type}")
        return reply

    def mark(self, note: str) -> bool:
        """Publish an event mark; False if the bus is gone (it goes out when it is back)."""
        mark = EventMark(note=note, author=self.author)
        if self.client is None or self.state.bus.connected is not True:
            self._unsent_marks.append(mark)
            return False
        self.client.publish(topics.EVENT_MARK, mark)
        return True

    def _flush_marks(self) -> None:
        if self.client is None:
            return
        while self._unsent_marks:
            self.client.publish(topics.EVENT_MARK, self._unsent_marks.pop(0))

    @property
    def unsent_marks(self) -> int:
        return len(self._unsent_marks)


def _author() -> str:
    try:
        user: Any = getpass.getuser()
    except Exception:  # no user name in some containers
        user = "commander"
    return f"{user}@dashboard"
