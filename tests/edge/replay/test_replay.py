"""Replay end to end: a session recorded for real (broker, simulated camera, camera service,
recorder, marks and alerts on the bus), then played on a replay vehicle with a broker of its
own: the bus byte for byte and in order, the video decodable from a keyframe, a seek with the
last-value state and a keyframe before the target, pause and speed, and a damaged copy of
the recordings (a segment missing, a bus log torn) replayed by `edge replay` around the gaps.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import av
import msgpack
import pytest
import zmq
import zmq.asyncio

from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import ReplayCommand, ReplayStatus, Reply
from edge.media.subscriber import MediaSubscriber
from edge.media.wire import MediaFrame
from edge.recorder.catalog import Catalog
from edge.replay.bus_player import MAX_RATE, rewrite_stream_endpoint
from edge.replay.service import ReplayVehicle, load_source
from tests.support import eventually, run_edge, running_broker, standing_still
from tests.support.drill import Drill, endpoints_in, logged, shared_drill
from tests.support.recorder import last_json
from tests.support.replay import copy_recordings, short_runtime_dir

# Functional bounds only (a loaded 2-core machine is slow, not wrong).
WITHIN_S = 30.0
GOP_NS = 1_000_000_000  # the simulated camera's: a keyframe a second
TICK_NS = 100_000 / 9  # one 1/90000 s tick
STATUS = topics.REPLAY_STATUS.encode()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drill]:
    yield shared_drill(tmp_path_factory)


class Tap:
    """Every message on a bus, raw frames as they arrived, from a SUB socket of its own."""

    def __init__(self, ctx: zmq.asyncio.Context, endpoints: Endpoints) -> None:
        self.sock = ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoints.sub)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.frames: list[list[bytes]] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.frames.append(await self.sock.recv_multipart())

    def statuses(self, since: int = 0) -> list[ReplayStatus]:
        return [ReplayStatus.from_body(msgpack.unpackb(f[2])) for f in self.frames[since:]
                if f[0] == STATUS]

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.sock.close(linger=0)


class Units:
    """Every unit a media-plane subscriber hands on (decodable, from a keyframe)."""

    def __init__(self, sub: MediaSubscriber) -> None:
        self.sub = sub
        self.units: list[MediaFrame] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for unit in self.sub:
            self.units.append(unit)

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.sub.close()


@asynccontextmanager
async def replaying(recorded: Drill, *, speed: float = 1.0, max_bus_rate: float = MAX_RATE
                    ) -> AsyncIterator[tuple[ReplayVehicle, BusClient, Tap, Units]]:
    """The recorded session on a replay vehicle (paused at its start) with a broker of its
    own, a client for requests, a tap on its bus and a subscriber on its camera."""
    runtime_dir = short_runtime_dir()
    endpoints = endpoints_in(runtime_dir)
    try:
        with running_broker(endpoints), Catalog(recorded.catalog) as cat:
            session = cat.session(recorded.session_id)
            source = load_source(cat, recorded.start_ns, recorded.end_ns, session)
            vehicle = ReplayVehicle(source, endpoints, speed=speed, paused=True,
                                    max_bus_rate=max_bus_rate)
            bus = BusClient(endpoints, source="test")
            tap = Tap(bus.ctx, endpoints)
            units = Units(MediaSubscriber(bus.sync_ctx, endpoints.media("gate", "main")))
            await vehicle.start()
            try:
                # The tap is subscribed once the status (published 4 times a second) comes.
                await eventually(tap.statuses, within=WITHIN_S, what="the replay's status")
                yield vehicle, bus, tap, units
            finally:
                await units.close()
                await tap.close()
                await vehicle.stop()
                await bus.close()
    finally:
        shutil.rmtree(runtime_dir, ignore_errors=True)


async def command(bus: BusClient, **fields: object) -> ReplayStatus:
    reply = (await bus.request(topics.REPLAY_SERVICE, ReplayCommand(**fields))).message  # type: ignore[arg-type]
    assert isinstance(reply, Reply) and reply.status == "accepted", reply
    return ReplayStatus.from_body(reply.data)


def as_replayed(frames: list[bytes], endpoints: Endpoints) -> list[bytes]:
    return rewrite_stream_endpoint(frames, endpoints.media)


def decodes(units: list[MediaFrame]) -> int:
    """Pictures FFmpeg decodes from the units (raises on a decoding error)."""
    ctx = av.CodecContext.create("h264", "r")
    return sum(len(ctx.decode(av.Packet(u.data))) for u in units)


def unit_ns(unit: MediaFrame) -> int:
    assert unit.pts is not None
    return round(unit.pts * TICK_NS)


@pytest.mark.timeout(180)
async def test_bus_byte_identical_in_order_and_video_decodable(recorded: Drill) -> None:
    log = logged(recorded.root)
    in_range = [f for t, f in log if recorded.start_ns <= t <= recorded.end_ns]
    topics_in = {f[0] for f in in_range}
    assert topics.EVENT_MARK.encode() in topics_in
    assert any(t.startswith(topics.ALERT.encode()) for t in topics_in)
    async with replaying(recorded, speed=2.0) as (vehicle, bus, tap, units):
        endpoints = vehicle.endpoints
        mark = len(tap.frames)
        await command(bus, action="play")
        await eventually(lambda: any(s.state == "ended" for s in tap.statuses(mark)),
                         within=WITHIN_S, what="the replay to reach its end")
        assert vehicle.clock.position_ns == recorded.end_ns
        # Where the marks and alerts are, listed for a timeline from the start.
        status = tap.statuses(mark)[-1]
        assert len(status.marks_ns) == recorded.marks
        assert len(status.alerts_ns) == recorded.alerts
        got = [f for f in tap.frames[mark:] if f[0] != STATUS]
        expected = [as_replayed(f, endpoints) for f in in_range]
        before = {b"\0".join(as_replayed(f, endpoints)) for t, f in log
                  if t < recorded.start_ns and topics.is_state(f[0])}
        # In order and byte for byte; the only others allowed are the broker's last-value
        # replays of state (answering a subscription: the tap's, or any client's, which
        # the tap, subscribed to everything, sees too): logged before the start, or a
        # copy of what was replayed already.
        i = 0
        for frames in got:
            if i < len(expected) and frames == expected[i]:
                i += 1
            else:
                joined = b"\0".join(frames)
                assert topics.is_state(frames[0]) and (
                    joined in before or frames in expected[:i]), frames[:2]
        assert i == len(expected), f"{i} of {len(expected)} recorded messages replayed"
        # A camera's stream announcement names the replay's media plane.
        streams = [f for f in got if f[0] == topics.cam_stream("gate", "main").encode()]
        for f in streams:
            assert msgpack.unpackb(f[2])["endpoint"] == endpoints.media("gate", "main")

        await eventually(lambda: units.units, within=WITHIN_S, what="video units")
        received = list(units.units)
        assert received[0].keyframe
        assert decodes(received) == len(received)
        times = [unit_ns(u) for u in received]
        assert times == sorted(times)
        assert recorded.start_ns - GOP_NS - 2 * TICK_NS <= times[0] <= recorded.start_ns
        assert times[-1] <= recorded.end_ns


@pytest.mark.timeout(180)
async def test_at_speed_the_bus_is_thinned_per_topic_never_reordered_events_all_kept(
        recorded: Drill) -> None:
    log = logged(recorded.root)
    in_range = [f for t, f in log if recorded.start_ns <= t <= recorded.end_ns]
    events = [f for f in in_range if f[0].startswith((topics.ALERT.encode(),
                                                      topics.EVENT.encode()))]
    assert events
    # 16x with a budget of 20 messages a second: far fewer than recorded can go.
    async with replaying(recorded, speed=16.0, max_bus_rate=20.0) as (vehicle, bus, tap, _):
        mark = len(tap.frames)
        await command(bus, action="play")
        await eventually(lambda: any(s.state == "ended" for s in tap.statuses(mark)),
                         within=WITHIN_S, what="the replay to reach its end")
        await eventually(lambda: vehicle.bus_player is not None
                         and vehicle.bus_player.sent + vehicle.bus_player.thinned
                         >= len(in_range), within=WITHIN_S, what="every message dealt with")
        assert vehicle.bus_player is not None and vehicle.bus_player.thinned > 0
        position = {b"\0".join(as_replayed(f, vehicle.endpoints)): i
                    for i, f in enumerate(in_range)}
        got: list[int] = []
        for f in tap.frames[mark:]:
            i = position.get(b"\0".join(f), -1)
            # A second copy of state is the broker's cache answering a subscription.
            if i >= 0 and not (i in got and topics.is_state(f[0])):
                got.append(i)
        assert got == sorted(got), "thinning reordered the bus"
        kept = {in_range[i][0] for i in got}
        assert all(e[0] in kept for e in events)
        assert sum(1 for i in got if in_range[i][0].startswith(
            (topics.ALERT.encode(), topics.EVENT.encode()))) == len(events), "an event was lost"
        # Per topic the latest value wins: each topic's last recorded message went out.
        last = {f[0]: i for i, f in enumerate(in_range)}
        assert set(last.values()) <= set(got)


@pytest.mark.timeout(180)
async def test_seek_sends_last_value_state_and_a_keyframe_before_the_target(
        recorded: Drill) -> None:
    target = (recorded.start_ns + recorded.end_ns) // 2
    latest: dict[bytes, list[bytes]] = {}
    for t, frames in logged(recorded.root):
        if t < target and topics.is_state(frames[0]):
            latest[frames[0]] = frames
    assert topics.cam_status("gate").encode() in latest
    async with replaying(recorded) as (vehicle, bus, tap, units):
        # Paused at the start: what it sent there (a keyframe and the units up to the
        # start) stops coming.
        await eventually(standing_still(lambda: len(units.units)), within=WITHIN_S,
                         every=0.3, what="the units at the start to stop coming")
        before_units = len(units.units)
        mark = len(tap.frames)
        status = await command(bus, action="seek", time_ns=target)
        assert status.position_ns == target and status.state == "paused"
        wanted = {k: as_replayed(v, vehicle.endpoints) for k, v in latest.items()}

        def state_republished() -> bool:
            seen = {b"\0".join(f) for f in tap.frames[mark:]}
            return all(b"\0".join(f) in seen for f in wanted.values())

        await eventually(state_republished, within=WITHIN_S,
                         what="every state topic's last value as of the target")
        await eventually(lambda: len(units.units) > before_units, within=WITHIN_S,
                         what="a unit after the seek")
        first = units.units[before_units]
        assert first.keyframe
        assert target - GOP_NS - 2 * TICK_NS <= unit_ns(first) <= target
        # Fast-forward: units up to the target come at once, though the clock is paused.
        await eventually(lambda: unit_ns(units.units[-1]) >= target - 2 * GOP_NS // 30,
                         within=WITHIN_S, what="the units up to the target")
        assert decodes(units.units[before_units:]) == len(units.units) - before_units


@pytest.mark.timeout(180)
async def test_pause_holds_the_clock_and_speed_scales_it(recorded: Drill) -> None:
    async with replaying(recorded, speed=2.0) as (vehicle, bus, _tap, _units):
        clock = vehicle.clock

        async def wall_seconds_for(recorded_ns: int) -> float:
            """Wall time the replay clock takes to advance `recorded_ns` (a measurement for
            a ratio, never asserted as a figure)."""
            start = clock.position_ns
            t0 = time.monotonic()
            await eventually(lambda: clock.position_ns >= start + recorded_ns,
                             within=WITHIN_S, every=0.01, what="the clock to advance")
            return time.monotonic() - t0

        await command(bus, action="play")
        at_2x = await wall_seconds_for(GOP_NS)
        status = await command(bus, action="pause")
        assert status.state == "paused"
        held = clock.position_ns
        await eventually(standing_still(lambda: clock.position_ns, looks=5), within=WITHIN_S,
                         every=0.1, what="the paused clock to stand still")
        assert clock.position_ns == held
        await command(bus, action="seek", time_ns=recorded.start_ns)
        await command(bus, action="speed", speed=4.0)
        status = await command(bus, action="play")
        assert status.speed == 4.0 and status.keyframes_only and status.state == "playing"
        at_4x = await wall_seconds_for(GOP_NS)
        # Loosely: 4x covers the same recorded span in about half the wall time of 2x.
        assert at_2x / at_4x > 1.5, (at_2x, at_4x)

        # Bad controls are refused with the reason, the replay carries on.
        reply = (await bus.request(topics.REPLAY_SERVICE,
                                   ReplayCommand(action="speed", speed=32.0))).message
        assert isinstance(reply, Reply) and reply.status == "rejected"
        assert "outside 0.25 to 16" in reply.detail
        reply = (await bus.request(topics.REPLAY_SERVICE,
                                   ReplayCommand(action="seek", time_ns=1))).message
        assert isinstance(reply, Reply) and reply.status == "rejected"

        # Marks: next goes forward to one, step moves one second and pauses.
        await command(bus, action="seek", time_ns=recorded.start_ns)
        status = await command(bus, action="next_mark")
        assert recorded.start_ns < status.position_ns <= recorded.end_ns
        status = await command(bus, action="step")
        assert status.state == "paused"


def one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.timeout(180)
async def test_edge_replay_around_a_missing_segment_and_a_torn_bus_log(
        recorded: Drill, tmp_path: Path) -> None:
    config, root = copy_recordings(recorded, tmp_path)
    with Catalog(root / "catalog.sqlite") as cat:
        segs = cat.segments("gate", "main", start_ns=recorded.start_ns,
                            end_ns=recorded.end_ns)
        logs = cat.bus_logs(start_ns=recorded.start_ns, end_ns=recorded.end_ns)
    assert len(segs) >= 3, "the session spans several segments"
    missing = segs[len(segs) // 2].path
    missing.unlink()
    torn = logs[len(logs) // 2].path
    data = torn.read_bytes()
    torn.write_bytes(data[: len(data) * 2 // 3])  # the summary and the last chunk gone

    code, out, err = await run_edge("replay", str(recorded.session_id), "--config",
                                    str(config), "--headless", "--speed", "8",
                                    "--seconds", "6", timeout=60)
    assert code == 0, err
    assert "Traceback" not in err
    summary = last_json(out)
    assert summary["reached_end"] is True, summary
    assert summary["session_id"] == recorded.session_id
    assert summary["bus"]["messages"] > 0
    assert summary["video"]["gate/main"]["units"] > 0
    gaps = {(g["path"], g["reason"].split(":")[0]) for g in summary["gaps"]}
    assert (str(missing), "is missing") in gaps
    assert (str(torn), "is torn") in gaps
    assert f"gap: gate/main: {missing.name} is missing" in err

    code, _, err = await run_edge("replay", "no such drill", "--config", str(config),
                                  "--headless", "--seconds", "1")
    assert code == 2 and one_line(err) == "edge: no session named 'no such drill' " \
                                          "(see edge record ls)"
    code, _, err = await run_edge("replay", str(recorded.session_id), "--config", str(config),
                                  "--headless", "--seconds", "1", "--from", "yesterday")
    assert code == 2 and "'yesterday' is not a time" in one_line(err)
    code, _, err = await run_edge("replay", str(recorded.session_id), "--config",
                                  str(tmp_path / "nowhere.toml"), "--headless")
    assert code != 0 and "Traceback" not in err
