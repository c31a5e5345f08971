"""The dashboard in a replay, driven with Textual's Pilot against a real broker and a fake
replay service (answering `replay` and publishing `replay/status`, as `edge replay` does)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import msgpack
import pytest
import zmq

from edge.bus import envelope, topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.envelope import Envelope
from edge.bus.messages import CameraStatus, EventMark, Message, ReplayCommand, ReplayStatus, Reply
from edge.bus.mirror import SILENT_S
from edge.config import load_config
from edge.recorder.catalog import Catalog
from edge.replay.replay_bus import ReplayBus
from edge.replay.service import ReplayVehicle, load_source
from tests.support.drill import Drill, Shown, endpoints_in, shared_drill, shown
from tests.support.replay import short_runtime_dir
from tests.support.ui import until
from tests.ui.feed import FakeVehicle
from tests.ui.test_app import SIZE, status_text, tile_text
from ui.app import DashboardApp
from ui.format import clock_text
from ui.widgets.cameras import CameraGrid
from ui.widgets.timeline import ALERT, MARK, Timeline

pytestmark = pytest.mark.timeout(30)

NS = 1_000_000_000
# The recording is hours old: against the wall clock everything in it would be silent.
T = (time.time_ns() // NS - 3 * 3600) * NS
START, END = T - 60 * NS, T + 600 * NS
SOURCE = "replay"
RECORDED = "camera@recorded"  # the source of the recorded camera statuses


def as_recorded(topic: str, message: Message, source: str, seq: int, ts_ns: int,
             epoch: int = 7) -> list[bytes]:
    """A message as the replay sends it: with the header it was recorded with."""
    header = msgpack.packb([message.TYPE, message.VERSION, source, seq, ts_ns, epoch])
    return [topic.encode(), header, msgpack.packb(message.to_body())]


class FakeReplay:
    """Answers `replay` like the replay vehicle (the status after each control in the
    reply) and publishes its status 10 times a second; everything it publishes goes out on
    one PUB socket of its own, so in the order sent."""

    def __init__(self, bus: BusClient, endpoints: Endpoints) -> None:
        self.commands: list[ReplayCommand] = []
        self.status = ReplayStatus(session_name="drill", start_ns=START, end_ns=END,
                                   position_ns=T, speed=1.0, state="playing")
        self.seq = 0
        self.pub: zmq.Socket[bytes] = bus.sync_ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.connect(endpoints.pub)
        bus.serve(topics.REPLAY_SERVICE, self.handle)

    def send(self, frames: list[bytes]) -> None:
        self.pub.send_multipart(frames)

    def publish_status(self) -> None:
        self.seq += 1
        self.send(envelope.encode(topics.REPLAY_STATUS, self.status, SOURCE, self.seq))

    async def run(self) -> None:
        while True:
            self.publish_status()
            await asyncio.sleep(0.1)

    async def handle(self, env: Envelope) -> Reply:
        req = env.message
        assert isinstance(req, ReplayCommand)
        self.commands.append(req)
        s = self.status
        if req.action in ("pause", "play"):
            s.state = "paused" if req.action == "pause" else "playing"
        elif req.action == "seek":
            s.position_ns, s.seeks = req.time_ns, s.seeks + 1
        elif req.action == "speed":
            s.speed = req.speed
        self.publish_status()
        return Reply(status="accepted", data=s.to_body())


@pytest.fixture
async def replay(publisher: BusClient, fast_endpoints: Endpoints) -> AsyncIterator[FakeReplay]:
    fake = FakeReplay(publisher, fast_endpoints)
    task = asyncio.create_task(fake.run(), name="fake-replay")
    yield fake
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    fake.pub.close(linger=0)


def camera(cam: str, fps: float = 25.0) -> CameraStatus:
    return CameraStatus(camera_id=cam, state="live", codec="h264", width=1280, height=720,
                        fps=fps, kbps=800.0, last_frame_age_s=0.04)


def timeline(app: DashboardApp) -> Timeline:
    return app.screen.query_one(Timeline)


async def test_replay_mode_shows_the_timeline_and_clock_and_keys_drive_the_replay(
        make_app: Callable[..., DashboardApp], vehicle: FakeVehicle,
        replay: FakeReplay) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.bus.connected, "the bus heartbeat")
        await until(pilot, lambda: timeline(app).display, "the timeline shown")
        # Playing at 1x from T: the clock shown is T's (the wall clock is hours later).
        await until(pilot, lambda: "REPLAY " in status_text(app), "the replay clock shown")
        shown = status_text(app)
        assert "REPLAY " in shown and "×1" in shown
        assert any(f"REPLAY {clock_text(T / NS + s)} ×1" in shown for s in range(0, 10)), shown
        # Both ends' labels once the bar has its width (a loaded machine lays it out late).
        await until(pilot, lambda: clock_text(START / NS) in str(timeline(app).render())
                    and clock_text(END / NS) in str(timeline(app).render()),
                    "the timeline's start and end")
        line = str(timeline(app).render())
        assert MARK not in line and ALERT not in line
        # The replay lists its marks and alerts: they are on the bar before they are passed.
        replay.status.marks_ns = [END - 5 * NS]
        replay.status.alerts_ns = [END - 30 * NS]
        await until(pilot, lambda: MARK in str(timeline(app).render())
                    and ALERT in str(timeline(app).render()), "the listed mark and alert")
        replay.status.marks_ns, replay.status.alerts_ns = [], []

        await pilot.press("space")
        await until(pilot, lambda: replay.commands, "the pause at the replay")
        assert replay.commands[-1].action == "pause"
        await until(pilot, lambda: "paused" in status_text(app), "paused shown")
        at = app.state.replay.status
        assert at is not None and at.state == "paused"

        # Paused, the position is exact: the seek goes 10 s from it.
        await pilot.press("right")
        await until(pilot, lambda: len(replay.commands) == 2, "the seek")
        seek = replay.commands[-1]
        assert (seek.action, seek.time_ns) == ("seek", at.position_ns + 10 * NS)
        await pilot.press("left")
        await until(pilot, lambda: len(replay.commands) == 3, "the seek back")
        assert replay.commands[-1].time_ns == at.position_ns
        # Arrows seek in a replay even where the focused pane (cameras) uses them.
        assert app.focused is app.screen.query_one(CameraGrid)

        await pilot.press("right_square_bracket")
        await until(pilot, lambda: len(replay.commands) == 4, "the speed")
        assert (replay.commands[-1].action, replay.commands[-1].speed) == ("speed", 2.0)
        await until(pilot, lambda: "×2 paused" in status_text(app), "the new speed shown")
        await pilot.press("left_square_bracket")
        await until(pilot, lambda: len(replay.commands) == 5, "slower")
        assert replay.commands[-1].speed == 1.0

        await pilot.press("n")
        await until(pilot, lambda: len(replay.commands) == 6, "next mark")
        assert replay.commands[-1].action == "next_mark"
        await pilot.press("p", "full_stop")
        await until(pilot, lambda: len(replay.commands) == 8, "previous mark and a step")
        assert [c.action for c in replay.commands[-2:]] == ["prev_mark", "step"]
        assert replay.commands[-1].seconds == 1.0

        # Marks on the timeline: as the replay passes them.
        replay.send(as_recorded(topics.EVENT_MARK, EventMark(note="water on", author="cdr"),
                             "dashboard", 1, START + 10 * NS))
        await until(pilot, lambda: MARK in str(timeline(app).render()), "the mark drawn")


async def test_ages_run_on_the_replay_clock(make_app: Callable[..., DashboardApp],
                                           vehicle: FakeVehicle, replay: FakeReplay) -> None:
    replay.status.state = "paused"  # the replay clock holds at T
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.replay.active, "the replay's status")
        await until(pilot, lambda: app.state.bus.connected, "the bus heartbeat")
        # Live at T, as recorded: live now. A minute older than T: silent, as it was then.
        replay.send(as_recorded(topics.cam_status("north-gate"), camera("north-gate"),
                             RECORDED, 1, T))
        replay.send(as_recorded(topics.cam_status("east-yard"), camera("east-yard"),
                             RECORDED, 1, T - 60 * NS))
        await until(pilot, lambda: "25fps" in tile_text(app, "north-gate"), "north-gate")
        assert "LIVE" in tile_text(app, "north-gate")
        await until(pilot, lambda: "SILENT" in tile_text(app, "east-yard"), "east-yard")
        # The status line redraws on a timer of its own: wait for it, not for the tiles.
        await until(pilot, lambda: "cams 1/2 live" in status_text(app), "the count")
        # The bus itself is judged on the wall clock: still connected.
        assert app.state.bus.connected


async def test_a_seek_makes_older_messages_count_again(make_app: Callable[..., DashboardApp],
                                                      vehicle: FakeVehicle,
                                                      replay: FakeReplay) -> None:
    replay.status.state = "paused"
    topic = topics.cam_status("north-gate")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.replay.active, "the replay's status")
        replay.send(as_recorded(topic, camera("north-gate", 25.0), RECORDED, 10, T))
        await until(pilot, lambda: "25fps" in tile_text(app, "north-gate"), "the later status")
        # Without a seek an older one is a replay of what was taken: dropped. (The marker
        # after it on the same socket shows it has been through.)
        replay.send(as_recorded(topic, camera("north-gate", 7.5), RECORDED, 5, T - 30 * NS))
        replay.send(as_recorded(topics.cam_status("east-yard"), camera("east-yard"), RECORDED, 1,
                             T))
        await until(pilot, lambda: "LIVE" in tile_text(app, "east-yard"), "the marker")
        assert "25fps" in tile_text(app, "north-gate")

        # A seek back to it: the replay says so (seeks counted), and republishes.
        replay.status.position_ns, replay.status.seeks = T - 30 * NS, 1
        replay.publish_status()
        await until(pilot, lambda: app.state.replay.status is not None
                    and app.state.replay.status.seeks == 1, "the seek heard")
        replay.send(as_recorded(topic, camera("north-gate", 7.5), RECORDED, 5, T - 30 * NS))
        await until(pilot, lambda: "7.5fps" in tile_text(app, "north-gate"),
                    "the older status taken after the seek")


async def test_a_seek_back_does_not_log_a_replayed_event_twice(
        make_app: Callable[..., DashboardApp], vehicle: FakeVehicle, replay: FakeReplay) -> None:
    replay.status.state = "paused"
    mark = as_recorded(topics.EVENT_MARK, EventMark(note="water on", author="cdr"),
                       RECORDED, 3, T - 10 * NS)
    app = make_app()

    def logged() -> int:
        return sum(e.text == "water on" for e in app.state.events)

    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.replay.active, "the replay's status")
        replay.send(mark)
        await until(pilot, lambda: logged() == 1, "the mark logged")
        # Back before the mark: the replay passes it again and sends it again.
        replay.status.position_ns, replay.status.seeks = T - 20 * NS, 1
        replay.publish_status()
        await until(pilot, lambda: logged() == 0, "the events after the target forgotten")
        replay.send(mark)
        await until(pilot, lambda: logged() == 1, "the mark logged again, once")


async def test_replay_keys_outside_a_replay_do_nothing_harmful(
        make_app: Callable[..., DashboardApp], vehicle: FakeVehicle) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.bus.connected, "the bus heartbeat")
        await pilot.press("space")
        await until(pilot, lambda: any("Not a replay" in n.message
                                       for n in app._notifications), "said so")
        assert not timeline(app).display
        # The arrows are the panes' own: they move between tiles.
        await pilot.press("1", "right")
        assert app.screen.query_one(CameraGrid).selected_id == "east-yard"
        await pilot.press("n", "p", "left_square_bracket", "full_stop")
        assert app.is_running and "REPLAY" not in status_text(app)


# -- end to end: a recorded session on the real replay vehicle --------------------------
@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drill]:
    yield shared_drill(tmp_path_factory)


# Functional bounds: a loaded 2-core machine is slow, not wrong.
E2E_S = 20.0


@pytest.mark.timeout(120)
async def test_the_dashboard_drives_a_real_replay(recorded: Drill) -> None:
    runtime_dir = short_runtime_dir()
    endpoints = endpoints_in(runtime_dir)
    try:
        # The replay's own bus, as `edge replay` runs it: its heartbeat is what the
        # dashboard judges the bus by.
        with Catalog(recorded.catalog) as cat:
            source = load_source(cat, recorded.start_ns, recorded.end_ns,
                                 cat.session(recorded.session_id))
            async with ReplayBus(endpoints):
                replay = ReplayVehicle(source, endpoints, paused=True)
                await replay.start()
                try:
                    await _drive(DashboardApp(load_config(recorded.config),
                                              endpoints=endpoints), replay, recorded)
                finally:
                    await replay.stop()
    finally:
        shutil.rmtree(runtime_dir, ignore_errors=True)


async def _drive(app: DashboardApp, replay: ReplayVehicle, recorded: Drill) -> None:
    start, end = recorded.start_ns / NS, recorded.end_ns / NS

    def status() -> ReplayStatus:
        s = app.state.replay.status
        assert s is not None
        return s

    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.replay.active and app.state.bus.connected,
                    "the replay's status and the bus", E2E_S)
        # Paused at the start, seconds ago on the wall clock: the camera, live then, is live.
        assert time.time() - start > SILENT_S
        await until(pilot, lambda: "LIVE" in tile_text(app, "gate"), "the camera live", E2E_S)
        # The tile can turn LIVE before the status bar's next refresh: the timeline bar
        # appearing resizes it, and a resized tile redraws at once.
        await until(pilot, lambda: f"REPLAY {clock_text(start)} ×1 paused" in status_text(app),
                    "the replay clock in the status bar", E2E_S)

        # n: the first mark or alert; the replay goes there and the dashboard hears it.
        await pilot.press("n")
        await until(pilot, lambda: status().seeks == 1, "the seek to a mark", E2E_S)
        assert status().position_ns == replay.events[0]

        # Play at 2x: the marks and alerts come as the replay passes them, and go on the
        # timeline. Then pause.
        await pilot.press("right_square_bracket", "space")
        await until(pilot, lambda: status().state == "playing" and status().speed == 2.0,
                    "playing at 2x", E2E_S)
        await until(pilot, lambda: MARK in str(timeline(app).render())
                    or ALERT in str(timeline(app).render()), "a mark or alert drawn", E2E_S)
        await pilot.press("space")
        await until(pilot, lambda: status().state == "paused", "paused", E2E_S)

        # To the end, then back to the start: the camera's status as of the start is
        # taken again, although its sequence number is below what was taken at the end.
        await pilot.press("right")
        await until(pilot, lambda: status().position_ns == recorded.end_ns, "at the end", E2E_S)
        await until(pilot, lambda: (app.state.cameras["gate"].status_ts or 0) > start + 2,
                    "the camera's status near the end", E2E_S)
        await pilot.press("left")
        await until(pilot, lambda: status().position_ns == recorded.start_ns, "at the start",
                    E2E_S)
        await until(pilot, lambda: (app.state.cameras["gate"].status_ts or end) <= start,
                    "the camera's status as of the start taken again", E2E_S)
        assert "LIVE" in tile_text(app, "gate")


@pytest.mark.timeout(150)
async def test_the_replayed_drill_shows_what_the_live_dashboard_showed(
        recorded: Drill) -> None:
    """The drill's live dashboard noted what it showed at moments of the session (after a
    mark, after the drone command's outcome, after another mark). A dashboard on the
    replay, sought to each moment, shows the same cameras and drones in the same places;
    played through, it logs the same alerts, marks and command outcomes at the same times."""
    assert len(recorded.live) == 3
    runtime_dir = short_runtime_dir()
    endpoints = endpoints_in(runtime_dir)
    try:
        with Catalog(recorded.catalog) as cat:
            source = load_source(cat, recorded.start_ns, recorded.end_ns,
                                 cat.session(recorded.session_id))
            async with ReplayBus(endpoints):
                replay = ReplayVehicle(source, endpoints, paused=True)
                await replay.start()
                control = BusClient(endpoints, source="debrief")
                try:
                    app = DashboardApp(load_config(recorded.config), endpoints=endpoints)
                    async with app.run_test(size=SIZE) as pilot:
                        await _compare(app, pilot, control, recorded)
                finally:
                    await control.close()
                    await replay.stop()
    finally:
        shutil.rmtree(runtime_dir, ignore_errors=True)


def _near(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    # A telemetry sample (10 Hz) may reach the recorder a moment before or after the live
    # dashboard: the same place within about 10 m.
    return a is b or (a is not None and b is not None
                      and abs(a[0] - b[0]) < 1e-4 and abs(a[1] - b[1]) < 1e-4)


async def _compare(app: DashboardApp, pilot: Any, control: BusClient, drill: Drill) -> None:
    state = app.state

    async def ask(**fields: Any) -> ReplayStatus:
        reply = (await control.request(topics.REPLAY_SERVICE, ReplayCommand(**fields))).message
        assert isinstance(reply, Reply) and reply.status == "accepted", reply
        return ReplayStatus.from_body(reply.data)

    def replay_at(at_ns: int, seeks: int) -> bool:
        s = state.replay.status
        return s is not None and s.seeks >= seeks and s.position_ns == at_ns

    for live in drill.live:
        seeks = (await ask(action="seek", time_ns=live.at_ns)).seeks
        await until(pilot, lambda at=live.at_ns, n=seeks: replay_at(at, n),  # type: ignore[misc]
                    "the dashboard at the sought moment", E2E_S)

        def same(live: Shown = live) -> bool:
            now = shown(state, live.at_ns)
            return (now.cameras == live.cameras and now.drones.keys() == live.drones.keys()
                    and all(_near(now.drones[d], p) for d, p in live.drones.items()))

        try:
            await until(pilot, same, "the cameras and drones the live dashboard showed", E2E_S)
        except AssertionError:
            raise AssertionError(f"live: {live}\nreplay: {shown(state, live.at_ns)}") from None

    # Played through from the start: the same log, at the same times.
    await ask(action="seek", time_ns=drill.start_ns)
    await ask(action="speed", speed=4.0)
    await ask(action="play")
    await until(pilot, lambda: state.replay.status is not None
                and state.replay.status.state == "ended", "the replay at its end", E2E_S)
    last = drill.live[-1]

    def in_session(events: list[tuple[float, str, str, str]]) -> list[tuple[float, str, str, str]]:
        return [e for e in events if drill.start_ns / NS <= e[0] <= last.at_ns / NS]

    expected = in_session(last.events)
    assert {kind for _, kind, _, _ in expected} >= {"alert", "mark", "command"}, expected
    got = in_session(shown(state, last.at_ns).events)
    assert [e[1:] for e in got] == [e[1:] for e in expected]
    # An event is placed at its sender's time, or at the dashboard's clock if that is
    # earlier (a sender's clock ahead): in a replay that clock is the replay's, as the
    # dashboard reckons it between statuses, a bus hop (times the speed) behind.
    assert [e[0] for e in got] == pytest.approx([e[0] for e in expected], abs=0.25)
