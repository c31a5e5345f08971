"""`edge bench sync`: a vehicle's bus reaching the centre through a leaf link cut for
``--outage`` seconds; with ``--vehicles N``, N vehicles' leaf nodes into one centre
(:mod:`edge.bench.sync_fleet`).

One vehicle, as it runs (processes, so each CPU figure is one process's own, from
``/proc/PID/stat``):

- the **centre**: a nats-server in JetStream domain ``centre`` with stream
  ``VEHICLE_<id>`` sourcing the vehicle's (:mod:`edge.sync.streams`), and a tap in this
  process: an ordered consumer on that stream, as a centre client reads it
  (:mod:`edge.bench.sync_tap`);
- the **vehicle**: its nats-server (a JetStream leaf node, domain = the vehicle id)
  linked to the centre through :class:`~edge.bench.leaf_relay.LeafRelay`, the relay
  the bench cuts (the centre advertises no leafnode URL of its own, else the vehicle
  reconnects around the cut within a second); ``edge run bus`` and ``edge run sync``
  (the real bridge, shipped ``[sync]`` defaults) as children; the demo's bus load
  played by this process on a real bus (:mod:`edge.bench.sync_load`);
- a **baseline subscriber**: a child that only receives every bus message (``raw``,
  as the bridge subscribes), the least any bridge must do; the bridge's CPU is given
  beside it as a ratio.

Phases: the load flows until the centre has its first message, then ``--seconds`` of
**steady** running (the bridge's CPU, the end-to-end delay: arrival at the centre's tap
minus the bus header's stamp); the link is **cut** for ``--outage`` s (the bridge keeps
storing into the vehicle's stream); the link is **restored**: catch-up is the time from
the relay listening again to the centre's tap holding the last message the vehicle had
stored at that moment (split into the leaf reconnecting and the first backlog message
arriving). Then the **baseline transfer**: a second centre stream sources exactly that
backlog with the link up, from a fresh consumer; its time is what moving those messages
over the same leaf link costs without an outage, so catch-up minus it is what the
outage itself adds (reconnect, the source's retry). Then the load stops, the bridge is
stopped, and the vehicle's stream (published) is compared with the centre's
(delivered: distinct ``Nats-Msg-Id``; duplicates; order by ``Edge-Seq`` per source).

The machine is shared: the ratios are the figures to compare, not absolute times.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.bench.leaf_relay import LeafRelay, free_port, relayed_centre
from edge.bench.record import check_alive, proc_cpu_s, start_process
from edge.bench.sync_tap import StreamTap, percentile

if TYPE_CHECKING:
    from edge.bench.record import Child

VEHICLE = "bench1"
DEFAULT_OUTAGE_S = 60.0
CATCHUP_GOAL_S = 10.0
BRIDGE_CPU_GOAL_PCT = 3.0
SETTLE_S = 2.0
QUICK_SECONDS = 5.0
START_TIMEOUT_S = 60.0
# Functional bounds, not goals: after a cut the leaf reconnects within a second or two,
# but a source has been seen to resume only after 1-2 minutes (docs: dependencies).
CATCHUP_WITHIN_S = 240.0
TRANSFER_WITHIN_S = 120.0
DRAIN_WITHIN_S = 60.0
BASELINE_STREAM = "BENCH_BASELINE"
MIB = 1024 * 1024


def bench_config(runtime: Path, vehicle: str, nats_url: str) -> Path:
    lines = [f'vehicle = "{vehicle}"', "[bus]", f"runtime_dir = {json.dumps(str(runtime))}",
             "[sync]", "enabled = true", f"nats_url = {json.dumps(nats_url)}"]
    path = runtime / "vehicle.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def until(what: str, cond: Callable[[], bool], within: float,
                children: Sequence[Child] = (), step: float = 0.05) -> float:
    """Wait for `cond`; the monotonic time it was seen true. RuntimeError after `within`."""
    deadline = time.monotonic() + within
    while not cond():
        check_alive(children)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {within:g} s")
        await asyncio.sleep(step)
    return time.monotonic()


async def sleep_watching(seconds: float, children: Sequence[Child]) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        check_alive(children)
        await asyncio.sleep(min(left, 0.5))


class LoadPlayer:
    """The demo's bus load (:func:`edge.bench.sync_load.tick`) on a real bus, each item from
    a client named after its service, on a 10 Hz schedule."""

    def __init__(self, endpoints: Any) -> None:
        self.endpoints = endpoints
        self.sent = 0
        self.late_max_s = 0.0
        self._clients: dict[str, Any] = {}

    async def run(self) -> None:
        from edge.bench.sync_load import TICK_HZ, tick
        from edge.bus.client import BusClient

        t0 = time.monotonic()
        k = 0
        while True:
            delay = t0 + k / TICK_HZ - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                self.late_max_s = max(self.late_max_s, -delay)
            for item in tick(k):
                client = self._clients.get(item.source)
                if client is None:
                    client = self._clients[item.source] = BusClient(self.endpoints,
                                                                    item.source)
                client.publish(item.topic, item.message, *item.blobs)
                self.sent += 1
            k += 1

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()


async def _stream_state(jsm: Any, stream: str) -> tuple[int, int]:
    """(messages, last sequence) of `stream`."""
    info = await jsm.stream_info(stream)
    return info.state.messages, info.state.last_seq


async def _msg_id(jsm: Any, stream: str, seq: int) -> str:
    msg = await jsm.get_msg(stream, seq)
    msg_id: str = (msg.headers or {})["Nats-Msg-Id"]
    return msg_id


async def _baseline_transfer(cjsm: Any, first_seq: int, count: int) -> float:
    """Seconds for a fresh centre stream to source `count` vehicle messages from `first_seq`
    over the link as it is (up), from creating the stream to holding them all."""
    from nats.js.api import ExternalStream, StorageType, StreamConfig, StreamSource

    from edge.sync.streams import VEHICLE_STREAM

    config = StreamConfig(
        name=BASELINE_STREAM, storage=StorageType.FILE,
        sources=[StreamSource(name=VEHICLE_STREAM, opt_start_seq=first_seq,
                              external=ExternalStream(api=f"$JS.{VEHICLE}.API"))])
    t0 = time.monotonic()
    await cjsm.add_stream(config)
    try:
        while True:
            held, _ = await _stream_state(cjsm, BASELINE_STREAM)
            if held >= count:
                return time.monotonic() - t0
            if time.monotonic() - t0 > TRANSFER_WITHIN_S:
                raise RuntimeError(f"the baseline transfer: {held} of {count} messages in "
                                   f"{TRANSFER_WITHIN_S:g} s")
            await asyncio.sleep(0.02)
    finally:
        with contextlib.suppress(Exception):
            await cjsm.delete_stream(BASELINE_STREAM)


async def run_one(outage_s: float, seconds: float, keep: bool) -> dict[str, Any]:
    import nats

    from edge.bench.record import bench_endpoints
    from edge.centre.sync import CentreSync
    from edge.config.centre_site import CentreNatsConfig
    from edge.config.sync import SyncConfig
    from edge.sync.nats_server import NatsServer, centre_spec, vehicle_spec
    from edge.sync.streams import (
        VEHICLE_STREAM,
        centre_stream_name,
        ensure_vehicle_stream,
        vehicle_subjects,
    )

    runtime = Path(tempfile.mkdtemp(prefix="edge-bsync-"))
    leaf_port = free_port()
    centre = NatsServer(relayed_centre(centre_spec(runtime / "centre-store", free_port(),
                                                   free_port(), leaf_port)),
                        runtime / "centre.conf")
    relay = LeafRelay(leaf_port)
    vehicle = NatsServer(vehicle_spec(VEHICLE, runtime / "vehicle-store", free_port(),
                                      free_port(), relay.url), runtime / "vehicle.conf")
    children: list[Child] = []
    tap = StreamTap(centre_stream_name(VEHICLE))
    load: LoadPlayer | None = None
    load_task: asyncio.Task[None] | None = None
    vnc = cnc = None
    watch: CentreSync | None = None
    watch_task: asyncio.Task[None] | None = None
    watch_lines: list[str] = []
    try:
        await centre.start()
        await relay.restore()
        await vehicle.start()
        cfg = SyncConfig(enabled=True, nats_url=vehicle.url)
        max_age_s, max_bytes = cfg.max_age_hours * 3600, cfg.max_mb * MIB
        vnc = await nats.connect(vehicle.url, connect_timeout=5)
        cnc = await nats.connect(centre.url, connect_timeout=5)
        vjsm, cjsm = vnc.jsm(), cnc.jsm()
        # Both streams before the bridge: a source whose stream is missing retries slowly.
        await ensure_vehicle_stream(vjsm, VEHICLE, max_age_s, max_bytes)
        # The centre's side as `edge centre` runs it: its sourcing stream, and the watch
        # that restarts a source left idle after the link returns.
        watch = CentreSync(CentreNatsConfig(port=centre.spec.port,
                                            monitor_port=centre.spec.monitor_port,
                                            leaf_port=leaf_port), [VEHICLE], runtime,
                           on_line=watch_lines.append)
        await watch.start()
        watch_task = asyncio.create_task(watch.run(), name="bench-sync-centre-watch")
        await tap.start(cnc.jetstream(), vehicle_subjects(VEHICLE))

        config = bench_config(runtime, VEHICLE, vehicle.url)
        children.append(await start_process(runtime, "bus", "edge", "run", "bus", "--config",
                                            str(config)))
        bridge = await start_process(runtime, "sync", "edge", "run", "sync", "--config",
                                     str(config))
        children.append(bridge)
        listener = await start_process(runtime, "listener", "edge.bench.sync", "_listen",
                                       "--runtime", str(runtime), piped=True)
        children.append(listener)
        await listener.line(START_TIMEOUT_S)
        load = LoadPlayer(bench_endpoints(runtime))
        load_task = asyncio.create_task(load.run(), name="bench-sync-load")
        await until("the first message at the centre", lambda: tap.delivered > 0,
                    START_TIMEOUT_S, children)
        await sleep_watching(SETTLE_S, children)

        # -- steady
        pids = {"bridge": bridge.proc.pid, "listener": listener.proc.pid,
                "vehicle_nats": _pid(vehicle), "centre_nats": _pid(centre)}
        cpu0 = {k: proc_cpu_s(p) for k, p in pids.items()}
        sent0, t0 = load.sent, time.monotonic()
        _, seq0 = await _stream_state(vjsm, VEHICLE_STREAM)
        await sleep_watching(seconds, children)
        t1 = time.monotonic()
        steady_s = t1 - t0
        cpu1 = {k: proc_cpu_s(p) for k, p in pids.items()}
        _, seq1 = await _stream_state(vjsm, VEHICLE_STREAM)
        steady_pct = {k: 100 * (cpu1[k] - cpu0[k]) / steady_s for k in pids}
        steady_delays = tap.delays_ms(t0, t1)
        bus_rate = (load.sent - sent0) / steady_s
        bridged_rate = (seq1 - seq0) / steady_s

        # -- outage
        c_cut = proc_cpu_s(pids["bridge"])
        await relay.cut()
        cut_at = time.monotonic()
        _, cut_seq = await _stream_state(vjsm, VEHICLE_STREAM)
        await sleep_watching(outage_s, children)
        _, restore_seq = await _stream_state(vjsm, VEHICLE_STREAM)
        # A message already on the wire at the cut may still land just after it.
        leaked = tap.arrived_between(cut_at + 1.0, time.monotonic())
        backlog = restore_seq - cut_seq
        if backlog < 1:
            raise RuntimeError(f"nothing was stored on the vehicle during the {outage_s:g} s "
                               f"outage: is the bridge publishing? (see {bridge.log})")
        first_id = await _msg_id(vjsm, VEHICLE_STREAM, cut_seq + 1)
        last_id = await _msg_id(vjsm, VEHICLE_STREAM, restore_seq)
        await relay.restore()
        up_at = time.monotonic()
        complete_at = await until("the centre catching up after the link returned",
                                  lambda: tap.has(last_id), CATCHUP_WITHIN_S, children,
                                  step=0.01)
        catchup_s = complete_at - up_at
        leaf_s = None if relay.last_connected is None else relay.last_connected - up_at
        first_s = tap.first_at[first_id] - up_at
        # The bridge never sees the link: over the outage and the catch-up it should cost
        # what it costs steady.
        outage_bridge_pct = 100 * (proc_cpu_s(pids["bridge"]) - c_cut) / (complete_at - cut_at)

        kicks = watch.vehicles[VEHICLE].kicks

        # -- baseline: the same backlog over the same link, no outage
        transfer_s = await _baseline_transfer(cjsm, cut_seq + 1, backlog)

        # -- the end: stop the load, then the bridge; compare both streams
        load_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await load_task
        load_task = None
        await asyncio.sleep(1.0)  # the bridge's outbox empties
        await bridge.stop()
        children.remove(bridge)
        if bridge.proc.returncode != 0:
            raise RuntimeError(f"the sync service exited {bridge.proc.returncode}:\n"
                               f"{bridge.tail()}")
        published, _ = await _stream_state(vjsm, VEHICLE_STREAM)
        with contextlib.suppress(RuntimeError):
            await until("the centre holding every message", lambda: tap.delivered >= published,
                        DRAIN_WITHIN_S, children, step=0.1)
        await asyncio.sleep(1.0)  # a duplicate would come after the last original
        centre_held, _ = await _stream_state(cjsm, centre_stream_name(VEHICLE))
        await listener.stop()
        children.remove(listener)
        listened = await listener.line(5.0)
    finally:
        for task in (load_task, watch_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if watch is not None:
            await watch.close()
        if load is not None:
            await load.close()
        with contextlib.suppress(Exception):
            await tap.stop()
        for nc in (vnc, cnc):
            if nc is not None:
                with contextlib.suppress(Exception):
                    await nc.close()
        for child in reversed(children):
            await child.stop()
        await relay.close()
        await vehicle.stop()
        await centre.stop()
        if keep:
            print(f"(files kept in {runtime})")
        else:
            shutil.rmtree(runtime, ignore_errors=True)

    bridge_pct = round(steady_pct["bridge"], 2)
    listener_pct = round(steady_pct["listener"], 2)
    return {
        "bench": "sync",
        "vehicles": 1,
        "outage_s": outage_s,
        "steady_s": round(steady_s, 1),
        "published": published,
        "delivered": tap.delivered,
        "duplicates": tap.duplicates,
        "missing": published - tap.delivered,
        "out_of_order": tap.out_of_order,
        "centre_stream_messages": centre_held,
        "arrived_during_outage": leaked,
        "backlog": backlog,
        "catchup_s": round(catchup_s, 2),
        "leaf_reconnected_s": None if leaf_s is None else round(leaf_s, 2),
        "first_backlog_s": round(first_s, 2),
        "centre_kicks": kicks,
        "baseline_transfer_s": round(transfer_s, 2),
        "catchup_over_transfer": round(catchup_s / transfer_s, 1) if transfer_s > 0 else None,
        "steady_delay_ms_p50": percentile(steady_delays, 50),
        "steady_delay_ms_p95": percentile(steady_delays, 95),
        "bridge_cpu_pct": bridge_pct,
        "bridge_cpu_pct_outage": round(outage_bridge_pct, 2),
        "subscriber_cpu_pct": listener_pct,
        "bridge_over_subscriber": round(bridge_pct / listener_pct, 2) if listener_pct else None,
        "vehicle_nats_cpu_pct": round(steady_pct["vehicle_nats"], 2),
        "centre_nats_cpu_pct": round(steady_pct["centre_nats"], 2),
        "bus_msgs_per_s": round(bus_rate, 1),
        "bridged_msgs_per_s": round(bridged_rate, 1),
        "subscriber_received": listened.get("received"),
        "load_late_max_ms": None if load is None else round(1000 * load.late_max_s, 1),
        "goals": {"catchup_s": CATCHUP_GOAL_S, "bridge_cpu_pct": BRIDGE_CPU_GOAL_PCT},
        "goals_met": {
            "delivered": published == tap.delivered and tap.duplicates == 0,
            "catchup_s": catchup_s <= CATCHUP_GOAL_S,
            "bridge_cpu_pct": bridge_pct <= BRIDGE_CPU_GOAL_PCT},
    }


def _pid(server: Any) -> int:
    if server.proc is None:
        raise RuntimeError(f"nats-server {server.spec.name} is not running")
    pid: int = server.proc.pid
    return pid


def figure_text(value: object) -> str:
    """A figure in a bench table: "n/a" for none, floats without trailing zeros."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def print_table(r: dict[str, Any]) -> None:
    met = r["goals_met"]

    def verdict(key: str) -> str:
        return "met" if met[key] else "MISSED"

    rows = [
        ("published (vehicle stream)", figure_text(r["published"]), ""),
        ("delivered (centre, distinct)", figure_text(r["delivered"]),
         f"missing {r['missing']}; goal = published: {verdict('delivered')}"),
        ("duplicates", figure_text(r["duplicates"]), f"out of order {r['out_of_order']}"),
        ("arrived during the outage", figure_text(r["arrived_during_outage"]), "should be 0"),
        ("backlog at link-up", figure_text(r["backlog"]), "messages"),
        ("leaf reconnected", figure_text(r["leaf_reconnected_s"]), "s after link-up"),
        ("first backlog message", figure_text(r["first_backlog_s"]), "s after link-up"),
        ("centre's watch restarted the source", figure_text(r["centre_kicks"]), "time(s)"),
        ("catch-up (centre complete)", figure_text(r["catchup_s"]),
         f"s; goal <= {CATCHUP_GOAL_S:g} s: {verdict('catchup_s')}"),
        ("baseline: same backlog, link up", figure_text(r["baseline_transfer_s"]),
         f"s (catch-up is {figure_text(r['catchup_over_transfer'])}x)"),
        ("steady delay p50 / p95", f"{figure_text(r['steady_delay_ms_p50'])} / "
         f"{figure_text(r['steady_delay_ms_p95'])}", "ms, bus stamp to centre consumer"),
        ("bridge CPU (edge run sync)", figure_text(r["bridge_cpu_pct"]),
         f"% of a core; goal <= {BRIDGE_CPU_GOAL_PCT:g}: {verdict('bridge_cpu_pct')}"),
        ("  outage and catch-up", figure_text(r["bridge_cpu_pct_outage"]), "% of a core"),
        ("baseline: bare bus subscriber", figure_text(r["subscriber_cpu_pct"]),
         f"% of a core (bridge is {figure_text(r['bridge_over_subscriber'])}x)"),
        ("vehicle / centre nats-server", f"{figure_text(r['vehicle_nats_cpu_pct'])} / "
         f"{figure_text(r['centre_nats_cpu_pct'])}", "% of a core, steady"),
    ]
    print(f"edge bench sync: one vehicle, the demo's bus load ({r['bus_msgs_per_s']:g} msg/s "
          f"on the bus, {r['bridged_msgs_per_s']:g} msg/s bridged), {r['steady_s']:g} s "
          f"steady, then the leaf link cut for {r['outage_s']:g} s")
    width = max(len(a) for a, _, _ in rows)
    vwidth = max(len(b) for _, b, _ in rows)
    for name, value, note in rows:
        print(f"  {name.ljust(width)}  {value.rjust(vwidth)}  {note}".rstrip())
    print("  (a shared 2-core machine: read the ratios; CPU is user+system from /proc)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sync", help="the bus to the centre over NATS through a cut leaf link; --vehicles N",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--outage", type=float, default=None, metavar="S",
                   help=f"how long the leaf link is cut, one vehicle only (default "
                        f"{DEFAULT_OUTAGE_S:g})")
    p.add_argument("--vehicles", type=int, default=1, metavar="N",
                   help="1: the outage bench; more: N simulated vehicles into one centre, "
                        "its CPU and delay (default 1)")
    p.add_argument("--seconds", type=float, default=None, metavar="S",
                   help="measured seconds of steady running (each step with --vehicles; "
                        "default 30, or 20 a step)")
    p.add_argument("--quick", action="store_true",
                   help=f"short steady phases ({QUICK_SECONDS:g} s, 3 s a step): a test")
    p.add_argument("--keep", action="store_true", help="keep the stores and logs")
    p.set_defaults(func=cmd_bench_sync)


def cmd_bench_sync(args: argparse.Namespace) -> int:
    from edge.cli import OperatorError
    from edge.sync.nats_server import NatsServerError

    if args.vehicles < 1:
        raise OperatorError(f"--vehicles must be at least 1, got {args.vehicles}")
    if args.vehicles > 200:
        raise OperatorError(f"--vehicles must be at most 200 (one nats-server each on this "
                            f"machine), got {args.vehicles}")
    if args.outage is not None and args.vehicles > 1:
        raise OperatorError("--outage is for one vehicle; --vehicles runs no outage")
    outage = DEFAULT_OUTAGE_S if args.outage is None else args.outage
    if not outage >= 1:
        raise OperatorError(f"--outage must be at least 1 s, got {outage:g}")
    if args.seconds is not None and not args.seconds > 0:
        raise OperatorError(f"--seconds must be more than 0, got {args.seconds:g}")
    try:
        if args.vehicles == 1:
            seconds = args.seconds or (QUICK_SECONDS if args.quick else 30.0)
            result = asyncio.run(run_one(outage, seconds, args.keep))
            print_table(result)
        else:
            from edge.bench import sync_fleet

            seconds = args.seconds or (sync_fleet.QUICK_STEP_S if args.quick
                                       else sync_fleet.STEP_S)
            result = asyncio.run(sync_fleet.run(args.vehicles, seconds, args.keep))
            sync_fleet.print_table(result)
    except NatsServerError as e:
        raise OperatorError(f"bench sync: {e}") from None
    except (RuntimeError, TimeoutError) as e:
        raise OperatorError(f"bench sync: {e or 'timed out'}") from None
    print(json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------- child entry point

def _listen(runtime: Path) -> dict[str, Any]:
    """Receive every bus message, raw, until SIGTERM: the least a bridge must do."""
    from edge.bench.record import bench_endpoints
    from edge.bus.client import BusClient

    async def main() -> dict[str, Any]:
        bus = BusClient(bench_endpoints(runtime), source="bench-sync-listener")
        sub = bus.subscribe("", raw=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        received = 0

        async def count() -> None:
            nonlocal received
            while True:
                await sub.recv()
                received += 1

        task = asyncio.create_task(count())
        print(json.dumps({"ready": True}), flush=True)
        await stop.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sub.close()
        await bus.close()
        return {"received": received}

    return asyncio.run(main())


def _main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m edge.bench.sync")
    p.add_argument("role", choices=("_listen",))
    p.add_argument("--runtime", type=Path, required=True)
    args = p.parse_args(argv)
    print(json.dumps(_listen(args.runtime)), flush=True)


if __name__ == "__main__":
    _main(sys.argv[1:])
