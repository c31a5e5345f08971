"""`edge bench bus`: our broker and client library against bare pyzmq PUB/SUB.

Both runs move the same messages (a topic and a msgpack body with a counter,
a send timestamp and padding) over ipc between separate processes:

- baseline: a PUB socket straight into a SUB socket, msgpack on both ends;
- bus: BusClient.publish → broker (XSUB/XPUB, last-value cache, its own
  process) → Subscription, which decodes header and typed body. The topic is
  an event, so after its first messages of each second it passes the broker's
  cache thread by, as any busy event topic does (a state topic would not).

Throughput: a burst of `--messages` as fast as the publisher can send,
counted at the subscriber. Latency: `--rate` messages/s for `--seconds`, the
subscriber measuring now minus the send stamp. Machines here are shared, so
the figure that matters is the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import zmq

from edge.bus.broker import Broker
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import BenchSample

TOPIC = "bench/sample"
PAD = b"x" * 64
IDLE_END_S = 1.0
PUSH_S = 0.1  # so the end comes after 0.9 to 1 s without a message
SETTLE_S = 0.5  # PUB/SUB "slow joiner": let subscriptions reach the publisher


def _endpoints(d: Path) -> Endpoints:
    return Endpoints(pub=f"ipc://{d}/pub.sock", sub=f"ipc://{d}/sub.sock",
                     router=f"ipc://{d}/router.sock", runtime_dir=d)


def _pace(i: int, t0: float, rate: float) -> None:
    if rate:
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


def _raw_publisher(endpoint: str, n: int, rate: float) -> None:
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.connect(endpoint)
    time.sleep(SETTLE_S)
    topic = TOPIC.encode()
    t0 = time.perf_counter()
    for i in range(n):
        _pace(i, t0, rate)
        pub.send_multipart([topic, msgpack.packb({"n": i, "sent_ns": time.time_ns(),
                                                  "pad": PAD})])
    time.sleep(0.2)
    pub.close(linger=1000)
    ctx.term()


def _bus_publisher(d: str, n: int, rate: float) -> None:
    async def main() -> None:
        bus = BusClient(_endpoints(Path(d)), source="bench")
        bus._pub.setsockopt(zmq.SNDHWM, 0)
        await asyncio.sleep(SETTLE_S)
        t0 = time.perf_counter()
        for i in range(n):
            _pace(i, t0, rate)
            bus.publish(TOPIC, BenchSample(n=i, sent_ns=time.time_ns(), pad=PAD))
        await asyncio.sleep(0.2)
        await bus.close()

    asyncio.run(main())


def _broker(d: str) -> None:
    broker = Broker(_endpoints(Path(d)), hwm=0)
    broker.run()


@dataclass
class Result:
    received: int
    sent: int
    elapsed_s: float
    latencies_ms: list[float]

    @property
    def msgs_per_s(self) -> float:
        return self.received / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def pct(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        xs = sorted(self.latencies_ms)
        return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def _raw_run(d: Path, n: int, rate: float) -> Result:
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"bench/")
    endpoint = f"ipc://{d}/raw.sock"
    sub.bind(endpoint)
    proc = mp.get_context("spawn").Process(target=_raw_publisher, args=(endpoint, n, rate))
    proc.start()
    got, lat, first, last = 0, [], 0.0, 0.0
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    while poller.poll(int(IDLE_END_S * 1000) if got else 10_000):
        _, body = sub.recv_multipart()
        m = msgpack.unpackb(body)
        now = time.time_ns()
        last = time.perf_counter()
        if not got:
            first = last
        got += 1
        if rate:
            lat.append((now - m["sent_ns"]) / 1e6)
        if m["n"] == n - 1:
            break
    proc.join(10)
    sub.close(linger=0)
    ctx.term()
    return Result(got, n, last - first, lat)


def _bus_run(d: Path, n: int, rate: float) -> Result:
    spawn = mp.get_context("spawn")
    broker = spawn.Process(target=_broker, args=(str(d),), daemon=True)
    broker.start()
    time.sleep(0.3)

    async def consume() -> Result:
        client = BusClient(_endpoints(d), source="bench-sub")
        sub = client.subscribe("bench/")
        sub.socket.setsockopt(zmq.RCVHWM, 0)
        await asyncio.sleep(0.2)
        proc = spawn.Process(target=_bus_publisher, args=(str(d), n, rate))
        proc.start()
        got, lat, first, last = 0, [], 0.0, 0.0
        loop = asyncio.get_running_loop()
        push_at = 0.0
        try:
            # One deadline, pushed forward at most every PUSH_S: pushing it per message
            # (a timer handle each) cost the subscriber more than the baseline's poll.
            async with asyncio.timeout(10.0) as deadline:
                while True:
                    env = await sub.recv()
                    now = time.time_ns()
                    last = time.perf_counter()
                    if not got:
                        first = last
                    got += 1
                    if last >= push_at:
                        push_at = last + PUSH_S
                        deadline.reschedule(loop.time() + IDLE_END_S)
                    m = env.message
                    assert isinstance(m, BenchSample)
                    if rate:
                        lat.append((now - m.sent_ns) / 1e6)
                    if m.n == n - 1:
                        break
        except TimeoutError:
            pass
        await asyncio.to_thread(proc.join, 10)
        await client.close()
        return Result(got, n, last - first, lat)

    try:
        return asyncio.run(consume())
    finally:
        broker.terminate()
        broker.join(5)


def run(messages: int, rate: float, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        d = Path(tmp)
        lat_n = int(rate * seconds)
        raw_tp = _raw_run(d, messages, 0)
        bus_tp = _bus_run(d, messages, 0)
        raw_lat = _raw_run(d, lat_n, rate)
        bus_lat = _bus_run(d, lat_n, rate)
    rows = [
        ("throughput msgs/s", raw_tp.msgs_per_s, bus_tp.msgs_per_s),
        ("burst received", raw_tp.received, bus_tp.received),
        (f"p50 ms @ {rate:g}/s", raw_lat.pct(50), bus_lat.pct(50)),
        (f"p99 ms @ {rate:g}/s", raw_lat.pct(99), bus_lat.pct(99)),
        (f"max ms @ {rate:g}/s", max(raw_lat.latencies_ms, default=0),
         max(bus_lat.latencies_ms, default=0)),
        ("paced received", raw_lat.received, bus_lat.received),
    ]
    print(f"{'measure':24} {'baseline (pyzmq)':>18} {'edge bus':>14}")
    for name, a, b in rows:
        print(f"{name:24} {a:>18,.2f} {b:>14,.2f}")
    ratio = bus_tp.msgs_per_s / raw_tp.msgs_per_s if raw_tp.msgs_per_s else 0.0
    return {
        "bench": "bus",
        "messages": messages,
        "baseline_msgs_per_s": round(raw_tp.msgs_per_s),
        "bus_msgs_per_s": round(bus_tp.msgs_per_s),
        "ratio": round(ratio, 3),
        "rate": rate,
        "baseline_p99_ms": round(raw_lat.pct(99), 3),
        "p50_ms": round(bus_lat.pct(50), 3),
        "p99_ms": round(bus_lat.pct(99), 3),
        "lost": (lat_n - bus_lat.received) + (messages - bus_tp.received),
        "median_of": 1,
    }


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bus", help="bus throughput and latency against bare pyzmq")
    p.add_argument("--messages", type=int, default=200_000, help="burst size (throughput)")
    p.add_argument("--rate", type=float, default=5000, help="paced rate for latency, msgs/s")
    p.add_argument("--seconds", type=float, default=3.0, help="paced run length")
    p.add_argument("--repeat", type=int, default=1, help="runs; the median ratio is reported")
    p.set_defaults(func=cmd_bench_bus)


def cmd_bench_bus(args: argparse.Namespace) -> int:
    from edge.cli import OperatorError

    for name in ("messages", "repeat"):
        if getattr(args, name) < 1:
            raise OperatorError(f"--{name} must be at least 1, got {getattr(args, name)}")
    for name in ("rate", "seconds"):
        if not 0 < getattr(args, name) < math.inf:
            raise OperatorError(f"--{name} must be a number more than 0, "
                                f"got {getattr(args, name):g}")
    if args.rate * args.seconds < 1:
        raise OperatorError(f"--rate {args.rate:g} for --seconds {args.seconds:g} sends no "
                            "message: raise either")
    results = [run(args.messages, args.rate, args.seconds) for _ in range(args.repeat)]
    best = sorted(results, key=lambda r: r["ratio"])[len(results) // 2]
    best["median_of"] = len(results)
    if len(results) > 1:
        best["ratios"] = [r["ratio"] for r in results]
        best["ratio_stdev"] = round(statistics.pstdev(best["ratios"]), 3)
    print(json.dumps(best))
    return 0
