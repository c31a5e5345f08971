"""`edge bench sync --vehicles N`: N simulated vehicles' leaf nodes into one centre; the
centre nats-server's CPU and the end-to-end delay, at a few fleet sizes, fitted to a
cost per added vehicle and read off for 500.

- **centre**: one nats-server (JetStream domain ``centre``, a leafnode port) with one
  stream ``VEHICLE_<id>`` a vehicle sourcing it (:mod:`edge.sync.streams`), and a tap per
  stream in this process, as the centre's page reads them (:mod:`edge.bench.sync_tap`).
  Its CPU is its process's user+system time from ``/proc``, and includes serving those
  consumers.
- **vehicles**: each its own nats-server, a JetStream leaf node in domain = its id, with
  its file stream ``VEHICLE``. Not 20 full bridges and buses (40 more Python processes
  would measure this machine, not the centre): a light publisher per vehicle in this
  process passes the demo's bus load (:func:`edge.bench.sync_load.tick`) through the
  bridge's own thinner and encoding (:mod:`edge.sync.bridge`, shipped ``[sync]``
  defaults) and publishes to its leaf node's JetStream with the bridge's headers,
  awaiting each ack as the bridge does. ``Edge-Ts`` is stamped when the item is made,
  as the bus stamps it.

Steps: the centre alone, then 1, N/4, N/2 and N vehicles (vehicles are added, never
restarted); each step settles, then ``--seconds`` measured. Delay = arrival at the tap
(wall clock) minus ``Edge-Ts``, over the messages arriving in the step. The fit is least
squares of the centre's CPU over the steps; the cluster size for 500 is how many centre
servers at the goal's half a core each would carry them (their JetStream replication,
R3 in a real cluster, is not measured here and would add to it). At the end the
publishers stop and every vehicle's stream is compared with its centre stream.

The machine is shared: the per-vehicle slope is the figure to compare, not absolute CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.bench.leaf_relay import free_port
from edge.bench.record import proc_cpu_s
from edge.bench.sync import figure_text as _text
from edge.bench.sync import until
from edge.bench.sync_tap import StreamTap, percentile
from edge.runtime.tasks import cancel_and_wait

STEP_S = 20.0
QUICK_STEP_S = 3.0
SETTLE_S = 3.0
START_BATCH = 5  # nats-servers started at once: a 2-core machine, other work beside
DELAY_GOAL_MS = 1000.0
CENTRE_CORES_GOAL = 0.5
FLEET = 500
# Functional bounds: a vehicle's first message reaches the centre once its leaf link and
# the centre's source are up, seconds on a loaded machine.
FIRST_WITHIN_S = 90.0
DRAIN_WITHIN_S = 60.0
MIB = 1024 * 1024


def fleet_steps(n: int) -> list[int]:
    return sorted({0, 1, n // 4, n // 2, n})


def vehicle_id(i: int) -> str:
    return f"veh{i + 1:03d}"


@dataclass
class SimVehicle:
    """One vehicle: its leaf nats-server and a light publisher of its thinned bus."""

    vid: str
    server: Any  # NatsServer
    tap: StreamTap
    sent: int = 0
    late_max_s: float = 0.0
    nc: Any = None
    task: asyncio.Task[None] | None = None
    _seq: dict[tuple[str, str], int] = field(default_factory=dict)
    epoch: int = field(default_factory=lambda: secrets.randbits(32))

    async def publish_forever(self) -> None:
        from edge.bench.sync_load import TICK_HZ, tick
        from edge.config.sync import SyncConfig
        from edge.sync.bridge import PUBLISH_TIMEOUT_S, Thinner, classify, encode_body, subject_for

        defaults = SyncConfig()
        thinner = Thinner(defaults.telemetry_hz, defaults.health_every_s)
        js = self.nc.jetstream(timeout=PUBLISH_TIMEOUT_S)
        t0 = time.monotonic()
        k = 0
        while True:
            delay = t0 + k / TICK_HZ - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                self.late_max_s = max(self.late_max_s, -delay)
            stamp = time.time_ns()
            for item in tick(k):
                key = (item.source, item.topic)
                seq = self._seq[key] = self._seq.get(key, 0) + 1
                kind = classify(item.topic)
                body = item.message.to_body()
                if kind is None or not thinner.admit(item.topic, kind, body):
                    continue
                headers = {
                    "Nats-Msg-Id": f"{item.source}:{self.epoch}:{item.topic}:{seq}",
                    "Edge-Topic": item.topic, "Edge-Type": item.message.TYPE,
                    "Edge-Source": item.source, "Edge-Seq": str(seq),
                    "Edge-Epoch": str(self.epoch), "Edge-Ts": str(stamp)}
                await js.publish(subject_for(self.vid, item.topic), encode_body(body),
                                 headers=headers)
                self.sent += 1
            k += 1


@dataclass
class Step:
    vehicles: int
    seconds: float
    centre_cpu_pct: float
    leaf_cpu_pct: float | None  # a vehicle's nats-server, the mean
    delay_ms_p50: float | None
    delay_ms_p95: float | None
    msgs_per_s: float


def fit(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least squares y = a + b x: (a, b)."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return my, 0.0
    b = sum((x - mx) * (y - my) for x, y in points) / sxx
    return my - b * mx, b


def cluster_for(fleet: int, a_cores: float, b_cores: float) -> tuple[int | None, int | None]:
    """(vehicles one centre server carries within the goal, servers for `fleet`)."""
    if b_cores <= 0 or a_cores >= CENTRE_CORES_GOAL:
        return None, None
    per_server = math.floor((CENTRE_CORES_GOAL - a_cores) / b_cores)
    if per_server < 1:
        return 0, None
    return per_server, math.ceil(fleet / per_server)


async def run(n: int, seconds: float, keep: bool) -> dict[str, Any]:
    import nats

    from edge.config.sync import SyncConfig
    from edge.sync.nats_server import NatsServer, centre_spec, vehicle_spec
    from edge.sync.streams import (
        VEHICLE_STREAM,
        centre_stream_name,
        ensure_centre_stream,
        ensure_vehicle_stream,
        vehicle_subjects,
    )

    runtime = Path(tempfile.mkdtemp(prefix="edge-bsyncf-"))
    leaf_port = free_port()
    centre = NatsServer(centre_spec(runtime / "centre-store", free_port(), free_port(),
                                    leaf_port), runtime / "centre.conf")
    defaults = SyncConfig()
    max_age_s, max_bytes = defaults.max_age_hours * 3600, defaults.max_mb * MIB
    fleet: list[SimVehicle] = []
    steps: list[Step] = []
    cnc = None

    async def add(i: int) -> SimVehicle:
        vid = vehicle_id(i)
        server = NatsServer(vehicle_spec(vid, runtime / vid, free_port(), free_port(),
                                         f"nats-leaf://127.0.0.1:{leaf_port}"),
                            runtime / f"{vid}.conf")
        v = SimVehicle(vid, server, StreamTap(centre_stream_name(vid)))
        fleet.append(v)
        await server.start()
        v.nc = await nats.connect(server.url, connect_timeout=5)
        # The vehicle's stream before the centre's source: a missing one retries slowly.
        await ensure_vehicle_stream(v.nc.jsm(), vid, max_age_s, max_bytes)
        assert cnc is not None
        await ensure_centre_stream(cnc.jsm(), vid, max_age_s, max_bytes)
        await v.tap.start(cnc.jetstream(), vehicle_subjects(vid))
        v.task = asyncio.create_task(v.publish_forever(), name=f"bench-sync-{vid}")
        return v

    def check_publishers() -> None:
        for v in fleet:
            if v.task is not None and v.task.done() and not v.task.cancelled():
                err = v.task.exception()
                raise RuntimeError(f"{v.vid}'s publisher stopped: {err}")

    try:
        await centre.start()
        cnc = await nats.connect(centre.url, connect_timeout=5)
        assert centre.proc is not None
        centre_pid = centre.proc.pid
        for target in fleet_steps(n):
            while len(fleet) < target:
                batch = range(len(fleet), min(target, len(fleet) + START_BATCH))
                await asyncio.gather(*(add(i) for i in batch))
            deadline = time.monotonic() + FIRST_WITHIN_S
            while not all(v.tap.delivered for v in fleet):
                check_publishers()
                if time.monotonic() > deadline:
                    silent = [v.vid for v in fleet if not v.tap.delivered]
                    raise RuntimeError(f"nothing from {', '.join(silent)} at the centre "
                                       f"within {FIRST_WITHIN_S:g} s")
                await asyncio.sleep(0.1)
            await asyncio.sleep(SETTLE_S)
            leaf_pids = [v.server.proc.pid for v in fleet if v.server.proc is not None]
            c0, l0, t0 = proc_cpu_s(centre_pid), [proc_cpu_s(p) for p in leaf_pids], \
                time.monotonic()
            await asyncio.sleep(seconds)
            check_publishers()
            t1 = time.monotonic()
            c1, l1 = proc_cpu_s(centre_pid), [proc_cpu_s(p) for p in leaf_pids]
            span = t1 - t0
            delays = [d for v in fleet for d in v.tap.delays_ms(t0, t1)]
            arrived = sum(v.tap.arrived_between(t0, t1) for v in fleet)
            leaf = (100 * sum(b - a for a, b in zip(l0, l1, strict=True)) / len(leaf_pids)
                    / span) if leaf_pids else None
            steps.append(Step(target, round(span, 1), round(100 * (c1 - c0) / span, 2),
                              None if leaf is None else round(leaf, 2),
                              percentile(delays, 50), percentile(delays, 95),
                              round(arrived / span, 1)))

        # -- the end: stop publishing; every vehicle's stream against its centre stream
        for v in fleet:
            if v.task is not None:
                await cancel_and_wait([v.task])
        published: dict[str, int] = {}
        for v in fleet:
            published[v.vid] = (await v.nc.jsm().stream_info(VEHICLE_STREAM)).state.messages
        with contextlib.suppress(RuntimeError):  # what is missing is counted, not fatal
            await until("every vehicle's stream at the centre",
                        lambda: all(v.tap.delivered >= published[v.vid] for v in fleet),
                        DRAIN_WITHIN_S, step=0.2)
        await asyncio.sleep(1.0)  # a duplicate would come after the last original
        late_max_ms = round(1000 * max((v.late_max_s for v in fleet), default=0.0), 1)
    finally:
        for v in fleet:
            if v.task is not None:
                await cancel_and_wait([v.task])
            with contextlib.suppress(Exception):
                await v.tap.stop()
            if v.nc is not None:
                with contextlib.suppress(Exception):
                    await v.nc.close()
        if cnc is not None:
            with contextlib.suppress(Exception):
                await cnc.close()
        await asyncio.gather(*(v.server.stop() for v in fleet), return_exceptions=True)
        await centre.stop()
        if keep:
            print(f"(files kept in {runtime})")
        else:
            shutil.rmtree(runtime, ignore_errors=True)

    a, b = fit([(s.vehicles, s.centre_cpu_pct / 100) for s in steps])
    per_server, servers = cluster_for(FLEET, a, b)
    last = steps[-1]
    total_published = sum(published.values())
    delivered = sum(v.tap.delivered for v in fleet)
    duplicates = sum(v.tap.duplicates for v in fleet)
    return {
        "bench": "sync",
        "vehicles": n,
        "published": total_published,
        "delivered": delivered,
        "duplicates": duplicates,
        "missing": total_published - delivered,
        "out_of_order": sum(v.tap.out_of_order for v in fleet),
        "catchup_s": None,  # no outage in the fleet run: the one-vehicle bench times it
        "missing_by_vehicle": {v.vid: published[v.vid] - v.tap.delivered for v in fleet
                               if published[v.vid] != v.tap.delivered},
        "centre_cpu_pct": last.centre_cpu_pct,
        "delay_ms_p50": last.delay_ms_p50,
        "delay_ms_p95": last.delay_ms_p95,
        "centre_cpu_pct_idle": round(100 * a, 2),
        "centre_cpu_pct_per_vehicle": round(100 * b, 3),
        "centre_cores_for_500": round(a + b * FLEET, 2),
        "vehicles_per_centre_server": per_server,
        "centre_servers_for_500": servers,
        "msgs_per_s_per_vehicle": round(last.msgs_per_s / n, 1),
        "publisher_late_max_ms": late_max_ms,
        "steps": [vars(s) for s in steps],
        "goals": {"delay_ms_p95": DELAY_GOAL_MS, "centre_cpu_pct": 100 * CENTRE_CORES_GOAL},
        "goals_met": {
            "delivered": delivered == total_published and duplicates == 0,
            "delay_ms_p95": last.delay_ms_p95 is not None
            and last.delay_ms_p95 <= DELAY_GOAL_MS,
            "centre_cpu_pct": last.centre_cpu_pct <= 100 * CENTRE_CORES_GOAL},
    }


def print_table(r: dict[str, Any]) -> None:
    met = r["goals_met"]

    def verdict(key: str) -> str:
        return "met" if met[key] else "MISSED"

    print(f"edge bench sync --vehicles {r['vehicles']}: leaf nodes into one centre, each a "
          f"light publisher of the demo's thinned bus ({r['msgs_per_s_per_vehicle']:g} msg/s "
          f"a vehicle), not a full bridge")
    head = ("vehicles", "seconds", "centre CPU %", "leaf CPU %", "delay p50 ms",
            "delay p95 ms", "msg/s in")
    rows = [head] + [(str(s["vehicles"]), _text(s["seconds"]), _text(s["centre_cpu_pct"]),
                      _text(s["leaf_cpu_pct"]), _text(s["delay_ms_p50"]),
                      _text(s["delay_ms_p95"]), _text(s["msgs_per_s"])) for s in r["steps"]]
    widths = [max(len(row[c]) for row in rows) for c in range(len(head))]
    for row in rows:
        print("  " + "  ".join(cell.rjust(widths[c]) for c, cell in enumerate(row)))
    print(f"  at {r['vehicles']}: delay p95 {_text(r['delay_ms_p95'])} ms (goal <= "
          f"{DELAY_GOAL_MS:g}: {verdict('delay_ms_p95')}); centre {_text(r['centre_cpu_pct'])} "
          f"% of a core (goal < {100 * CENTRE_CORES_GOAL:g}: {verdict('centre_cpu_pct')})")
    print(f"  fit: centre {_text(r['centre_cpu_pct_idle'])} % + "
          f"{_text(r['centre_cpu_pct_per_vehicle'])} % a vehicle -> {FLEET} vehicles "
          f"{_text(r['centre_cores_for_500'])} cores; at {CENTRE_CORES_GOAL:g} core a server: "
          f"{_text(r['vehicles_per_centre_server'])} vehicles each, "
          f"{_text(r['centre_servers_for_500'])} servers (JetStream replication not included)")
    print(f"  published {r['published']}, delivered {r['delivered']}, duplicates "
          f"{r['duplicates']}, out of order {r['out_of_order']} (goal: all, once: "
          f"{verdict('delivered')})")
    print("  (a shared 2-core machine: read the slope; CPU is user+system from /proc)")
