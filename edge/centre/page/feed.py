"""The centre's JetStream, read for the page: per vehicle, its state and its events.

Each vehicle's stream at the centre (``VEHICLE_<id>``, sourced over its leaf link; see
:mod:`edge.sync.streams`) is read by two ordered consumers (ephemeral, in memory,
nothing to clean up; nats-py recreates one from its last sequence when its heartbeats
stop, as after a centre restart):

- **state**: the last message of every subject (``LAST_PER_SUBJECT``), then live: the
  page knows every device at once, however long ago it last changed;
- **events**: alerts, marks and commands from ``timeline_hours`` ago, then live: the
  timeline starts full, in the order things happened.

A stream that is not there yet (the centre has not added the vehicle) is asked for
again every few seconds; the vehicle shows why meanwhile. Credentials for the centre's
NATS come in `nats_options` (nats-py's ``connect`` keywords, e.g. ``nkeys_seed_str``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Mapping
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from edge.centre.page.state import PageState
from edge.sync.streams import SUBJECT_ROOT, centre_stream_name

log = logging.getLogger(__name__)

RETRY_S = 3.0
CLOSE_WITHIN_S = 3.0
EVENT_LEAVES = ("alert.>", "event.>")


def one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


class Feed:
    """Reads every vehicle's centre stream into `state` until closed."""

    def __init__(self, nats_url: str, state: PageState, timeline_hours: float = 12.0,
                 nats_options: Mapping[str, Any] | None = None) -> None:
        self.nats_url = nats_url
        self.state = state
        self.timeline_hours = timeline_hours
        self.nats_options = dict(nats_options or {})
        self.connected = False
        self.last_error = ""
        self.nc: NatsClient | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._run(), name="centre-page-feed"))

    async def _on_error(self, e: Exception) -> None:
        self.last_error = f"centre NATS {self.nats_url}: {one_line(e)}"
        if not self.connected:
            for vehicle in self.state.vehicles:
                self.state.set_problem(vehicle, f"cannot read: {self.last_error}")

    async def _on_disconnected(self) -> None:
        self.connected = False

    async def _on_reconnected(self) -> None:
        self.connected, self.last_error = True, ""
        # The subscriptions outlive a reconnection (nats-py recreates their consumers);
        # a vehicle whose stream is still missing is told so again by its reader.
        for vehicle in self.state.vehicles:
            self.state.set_problem(vehicle, "")

    async def _connect(self) -> NatsClient:
        """Connected, however long it takes, yet stoppable. nats-py's own first connect
        retries inside itself, and a cancellation that meets a failed attempt is lost
        there (Python 3.11's wait_for); so one short round at a time, here, and a lost
        cancellation is noticed."""
        options: dict[str, Any] = {
            "name": "edge-centre-page", "allow_reconnect": False, "connect_timeout": 2,
            "max_reconnect_attempts": 1, "reconnect_time_wait": 1,
            "error_cb": self._on_error, "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected, **self.nats_options}
        task = asyncio.current_task()
        while True:
            try:
                nc = await nats.connect(self.nats_url, **options)
            except (nats.errors.Error, OSError, TimeoutError) as e:
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from None
                await self._on_error(e)
                await asyncio.sleep(RETRY_S)
                continue
            # Once connected, a lost connection is retried for ever, every second.
            nc.options.update(allow_reconnect=True, max_reconnect_attempts=-1,
                              reconnect_time_wait=1)
            return nc

    async def _run(self) -> None:
        self.nc = await self._connect()
        self.connected, self.last_error = True, ""
        for vehicle in self.state.vehicles:
            for events in (False, True):
                self._tasks.append(asyncio.create_task(
                    self._read(self.nc, vehicle, events),
                    name=f"centre-page-{vehicle}-{'events' if events else 'state'}"))

    def _consumer(self, vehicle: str, events: bool) -> tuple[str, ConsumerConfig]:
        root = f"{SUBJECT_ROOT}.{vehicle}."
        if not events:
            return root + ">", ConsumerConfig(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT)
        since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(
            hours=self.timeline_hours)
        subjects = [root + leaf for leaf in EVENT_LEAVES]
        return subjects[0], ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME,
                                           opt_start_time=since, filter_subjects=subjects)

    async def _read(self, nc: NatsClient, vehicle: str, events: bool) -> None:
        stream = centre_stream_name(vehicle)
        js = nc.jetstream(timeout=5)

        async def take(msg: Msg) -> None:
            try:
                seq = msg.metadata.sequence.stream
            except Exception:  # not a JetStream delivery: nothing to place it by
                seq = 0
            self.state.take(vehicle, seq, msg.data, msg.headers, devices=not events,
                            events=events)

        while True:
            subject, config = self._consumer(vehicle, events)
            try:
                sub = await js.subscribe(subject, stream=stream, cb=take, config=config,
                                         ordered_consumer=True, idle_heartbeat=2.0)
            except nats.js.errors.NotFoundError:
                self.state.set_problem(vehicle, f"the centre has no stream {stream} yet")
            except (nats.errors.Error, OSError, TimeoutError) as e:
                why = self.last_error or f"centre NATS {self.nats_url}: {one_line(e)}"
                self.state.set_problem(vehicle, f"cannot read {stream}: {why}")
            else:
                self.state.set_problem(vehicle, "")
                try:
                    await asyncio.Event().wait()  # until closed: the callback does the work
                finally:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
            await asyncio.sleep(RETRY_S)

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        if tasks:
            # Bounded: a library that swallows a cancellation must not hold up a stop.
            await asyncio.wait(tasks, timeout=CLOSE_WITHIN_S)
        nc, self.nc = self.nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()
