"""The centre's side of sync: a sourcing stream per vehicle, and a watch on each source.

:class:`CentreSync` connects to the centre's NATS (``[nats]``, run by `edge centre nats`)
as a client, makes sure ``VEHICLE_<id>`` sources each ``[[vehicles]]`` entry's stream
(:mod:`edge.sync.streams`), then reads every few seconds, per vehicle: the stream's
state, its source's ``lag`` and ``active`` (JetStream's stream info), whether the
vehicle's leaf connection is up (the server's ``/leafz``), and the newest message (its
arrival time, the vehicle's own ``Edge-Ts``; a message that is not the bridge's JSON is
counted as malformed and otherwise ignored). :meth:`CentreSync.figures` is what a page
or a status line needs (:class:`VehicleSync`, one per vehicle).

**Stalls.** A source is *stalled* while its vehicle's leaf is connected but the source
has not moved for ``stall_after_s``: ``active`` is -1 (no source consumer) or older than
that, or ``lag`` is above zero and not falling. After a centre restart nats-server 2.15
was seen to leave a source so for 1-2 minutes. Applying the stream's config again
unchanged does not end it (tried: no effect); removing the source and adding it back
does, at once, and the server resumes it after the last message it already holds (no
duplicates, no gap). That is the kick, at most once per ``stall_after_s`` per vehicle.

**After an outage.** The same idleness follows every return of a vehicle's leaf link:
the source's consumer request, sent while the link was dead, times out only after 30 s
and nats-server then backs off, so the backlog would reach the centre 30-45 s after the
link came back (`edge bench sync`). A source not seen moving within
:data:`RESUME_GRACE_S` of its leaf link coming up is kicked at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js.api import StreamConfig, StreamInfo

from edge.config.centre_site import CentreNatsConfig
from edge.sync.credentials import read_seed
from edge.sync.nats_server import NatsServerError, monitor_json
from edge.sync.streams import centre_stream_config, ensure_stream

__all__ = ["CentreSync", "CentreSyncError", "POLL_S", "VehicleSync", "centre_replicas"]

log = logging.getLogger(__name__)

#: how often the sources are read
POLL_S = 2.0
#: a source not moving this long after its vehicle's leaf link came back is kicked at
#: once, rather than after ``stall_after_s``: nats-server leaves it idle for 30-45 s
#: (its consumer request sent into the dead link times out first), and the backlog of
#: the outage is exactly what the centre is waiting for
RESUME_GRACE_S = 2.0
_NATS_ERRORS = (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError)


def centre_replicas(config: CentreNatsConfig) -> int:
    """Copies of each vehicle's stream: one per cluster node, at most three (JetStream's
    usual R3); one on a single server."""
    return 1 if config.cluster is None else min(3, len(config.cluster.routes))


class CentreSyncError(RuntimeError):
    """The centre's NATS cannot be used (one line for an operator)."""


@dataclass(slots=True)
class VehicleSync:
    """One vehicle's sync as the centre sees it (the figures a page shows)."""

    id: str
    stream: str
    messages: int = 0
    last_seq: int = 0
    # When the newest message reached the centre, and when the vehicle's bus had it
    # (its Edge-Ts), both Unix time; None: none yet / not a bridge message.
    last_message_at: float | None = None
    last_vehicle_ts: float | None = None
    lag: int | None = None  # messages the source knows it is behind
    active_s: float | None = None  # since the source last moved; None: never (-1)
    leaf_connected: bool = False
    stalled: bool = False
    stalled_for_s: float = 0.0
    kicks: int = 0
    malformed: int = 0  # newest messages that were not the bridge's JSON
    error: str = ""  # why the figures are not fresh ("" when they are)

    def as_dict(self) -> dict[str, Any]:
        return {"stream": self.stream, "messages": self.messages, "last_seq": self.last_seq,
                "last_message_at": self.last_message_at,
                "last_vehicle_ts": self.last_vehicle_ts, "lag": self.lag,
                "active_s": self.active_s, "leaf_connected": self.leaf_connected,
                "stalled": self.stalled, "stalled_for_s": round(self.stalled_for_s, 1),
                "kicks": self.kicks, "malformed": self.malformed, "error": self.error}


@dataclass(slots=True)
class _Watch:
    """What the stall rule remembers between reads."""

    since: float | None = None  # when the source was first seen not moving
    lag: int | None = None
    kicked_at: float | None = None
    # When the vehicle's leaf link was last seen coming up, until its source is seen
    # moving again (or has been kicked for not doing so).
    leaf_up_at: float | None = None


class CentreSync:
    """Sourcing streams for `vehicles` on the centre's NATS, and their figures.

    `on_line` is told, in one line each, when a source stalls, is kicked and recovers,
    and when a vehicle's leaf comes or goes."""

    def __init__(self, config: CentreNatsConfig, vehicles: list[str], config_dir: Path, *,
                 on_line: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.vehicle_ids = list(vehicles)
        self.config_dir = config_dir
        self.on_line = on_line or (lambda line: log.info("%s", line))
        self.clock = clock
        self.nc: NatsClient | None = None
        self.vehicles = {v: VehicleSync(v, self._config_of(v).name or "") for v in vehicles}
        self._watch = {v: _Watch() for v in vehicles}

    def _config_of(self, vehicle: str) -> StreamConfig:
        return centre_stream_config(vehicle, self.config.max_age_hours * 3600,
                                    self.config.max_mb_per_vehicle * 1024 * 1024,
                                    replicas=centre_replicas(self.config))

    # -- starting ------------------------------------------------------------------------
    async def start(self, within_s: float = 10.0) -> None:
        """Connect and ensure every vehicle's stream. ConfigError for an unreadable seed;
        CentreSyncError when the centre's NATS does not answer or refuses us."""
        seed = (None if self.config.client_seed is None else
                read_seed(self.config.client_seed, self.config_dir, "nats.client_seed"))
        errors: list[str] = []

        async def on_error(e: Exception) -> None:
            errors.append(" ".join(str(e).split()) or type(e).__name__)

        try:
            # With reconnecting allowed nats-py tries the first connection without end:
            # bounded here, so that a centre NATS that is not there is one line, not a hang.
            # asyncio.timeout, not wait_for: see edge.runtime.tasks.
            async with asyncio.timeout(within_s):
                self.nc = await nats.connect(
                    self.config.url, name="edge-centre", nkeys_seed_str=seed,
                    connect_timeout=2, reconnect_time_wait=1, max_reconnect_attempts=-1,
                    allow_reconnect=True, error_cb=on_error)
        except (*_NATS_ERRORS, TimeoutError) as e:
            why = errors[-1] if errors else (" ".join(str(e).split()) or "no answer")
            raise CentreSyncError(f"the centre's NATS {self.config.url} (after "
                                  f"{within_s:g} s): {why}") from None
        deadline = self.clock() + within_s
        for vehicle in self.vehicle_ids:
            while True:
                try:
                    await ensure_stream(self.nc.jsm(), self._config_of(vehicle))
                    break
                except _NATS_ERRORS as e:
                    if self.clock() >= deadline:
                        raise CentreSyncError(
                            f"the centre's NATS {self.config.url}: stream for vehicle "
                            f"{vehicle}: {' '.join(str(e).split()) or type(e).__name__}"
                        ) from None
                    await asyncio.sleep(0.5)  # JetStream may still be starting up

    # -- watching ------------------------------------------------------------------------
    async def run(self, every_s: float = POLL_S) -> None:
        """Read and judge every source until cancelled."""
        while True:
            await self.refresh()
            await asyncio.sleep(every_s)

    async def refresh(self) -> None:
        """Read every vehicle's figures once; kick a stalled source."""
        leafs = await self._leafs()
        for vehicle in self.vehicle_ids:
            figures = self.vehicles[vehicle]
            was_connected = figures.leaf_connected
            figures.leaf_connected = leafs is not None and vehicle in leafs
            if figures.leaf_connected != was_connected:
                self.on_line(f"vehicle {vehicle}: leaf link "
                             f"{'up' if figures.leaf_connected else 'down'}")
                self._watch[vehicle].leaf_up_at = (self.clock() if figures.leaf_connected
                                                   else None)
            try:
                await self._read(figures)
            except _NATS_ERRORS as e:
                figures.error = f"stream {figures.stream}: {' '.join(str(e).split())}"
                continue
            figures.error = "" if leafs is not None else figures.error
            await self._judge(figures)

    async def _leafs(self) -> set[str] | None:
        """The server names of the leaf nodes connected now (None: the monitor is away)."""
        try:
            answer = await monitor_json("127.0.0.1", self.config.monitor_port, "/leafz")
        except NatsServerError as e:
            for figures in self.vehicles.values():
                figures.error = str(e)
            return None
        found = answer.get("leafs") or []
        return {leaf.get("name", "") for leaf in found if isinstance(leaf, dict)}

    async def _read(self, figures: VehicleSync) -> None:
        assert self.nc is not None
        jsm = self.nc.jsm()
        info: StreamInfo = await jsm.stream_info(figures.stream)
        figures.messages = info.state.messages
        source = info.sources[0] if info.sources else None
        figures.lag = None if source is None else source.lag
        active = None if source is None else source.active
        figures.active_s = None if active is None or active < 0 else active / 1e9
        if info.state.last_seq and info.state.last_seq != figures.last_seq:
            figures.last_seq = info.state.last_seq
            with contextlib.suppress(nats.js.errors.NotFoundError):
                self._newest(figures, await jsm.get_msg(figures.stream, info.state.last_seq))

    def _newest(self, figures: VehicleSync, msg: Any) -> None:
        """The newest message's times; anything not the bridge's is counted, not fatal."""
        figures.last_message_at = msg.time.timestamp() if msg.time is not None else None
        headers = msg.headers or {}
        try:
            figures.last_vehicle_ts = int(headers["Edge-Ts"]) / 1e9
            if not isinstance(json.loads(msg.data or b""), dict):
                raise ValueError("not a JSON object")
        except (KeyError, ValueError, TypeError):
            figures.malformed += 1
            if figures.malformed == 1:
                self.on_line(f"vehicle {figures.id}: a message on {msg.subject} is not the "
                             "bridge's (no Edge-Ts or not JSON); such are counted and "
                             "otherwise left alone")

    async def _judge(self, figures: VehicleSync) -> None:
        watch = self._watch[figures.id]
        now = self.clock()
        if await self._resumed(figures, watch, now):
            return
        limit = self.config.stall_after_s
        idle = figures.active_s is None or figures.active_s > limit
        lag_stuck = (figures.lag is not None and figures.lag > 0 and watch.lag is not None
                     and figures.lag >= watch.lag)
        watch.lag = figures.lag
        if not figures.leaf_connected or not (idle or lag_stuck):
            if figures.stalled:
                self.on_line(f"vehicle {figures.id}: source moving again")
            figures.stalled, figures.stalled_for_s, watch.since = False, 0.0, None
            return
        if watch.since is None:
            watch.since = now
        figures.stalled_for_s = now - watch.since
        if figures.stalled_for_s < limit:
            return
        if not figures.stalled:
            figures.stalled = True
            why = ("no source activity" if figures.active_s is None else
                   f"no source activity for {figures.active_s:.0f} s") if idle else \
                f"lag {figures.lag} not falling"
            self.on_line(f"vehicle {figures.id}: source stalled ({why}, leaf connected)")
        if watch.kicked_at is None or now - watch.kicked_at >= limit:
            watch.kicked_at = now
            await self.kick(figures.id)

    async def _resumed(self, figures: VehicleSync, watch: _Watch, now: float) -> bool:
        """After the leaf link came back: has the source moved since? If not within
        :data:`RESUME_GRACE_S`, kick it now. True when it was kicked here."""
        if watch.leaf_up_at is None or not figures.leaf_connected:
            return False
        since_up = now - watch.leaf_up_at
        if figures.active_s is not None and figures.active_s < since_up:
            watch.leaf_up_at = None  # it moved after the link came back
            return False
        if since_up < RESUME_GRACE_S:
            return False
        watch.leaf_up_at = None
        watch.kicked_at = now
        self.on_line(f"vehicle {figures.id}: source idle {since_up:.0f} s after the leaf "
                     "link came back")
        await self.kick(figures.id)
        return True

    async def kick(self, vehicle: str) -> None:
        """Remove the vehicle's source and add it back (see the module's description)."""
        assert self.nc is not None
        config = self._config_of(vehicle)
        jsm = self.nc.jsm()
        try:
            await jsm.update_stream(config.evolve(sources=[]))
            await jsm.update_stream(config)
        except _NATS_ERRORS as e:
            self.on_line(f"vehicle {vehicle}: could not kick its source: "
                         f"{' '.join(str(e).split())}")
            return
        self.vehicles[vehicle].kicks += 1
        self.on_line(f"vehicle {vehicle}: source re-added to restart it")

    # -- reading -------------------------------------------------------------------------
    def figures(self) -> dict[str, VehicleSync]:
        """Every configured vehicle's figures as last read (the objects themselves)."""
        return self.vehicles

    def status(self) -> dict[str, Any]:
        return {"url": self.config.url,
                "vehicles": {v.id: v.as_dict() for v in self.vehicles.values()}}

    async def close(self) -> None:
        nc, self.nc = self.nc, None
        if nc is not None:
            # A server that went away mid-close must not hold up the centre's exit.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5.0):
                    await nc.close()
