"""Real faults injected into a running demo: processes killed (`kill -9`) or stalled
(SIGSTOP), and what the commander and the centre see afterwards.

Each test runs `edge demo --headless` on a copy of config/demo.toml with private ports
and fewer devices, finds the process to hurt by its environment and command line, and
watches the outcome through real clients: the dashboard's model (``BusBridge`` folding
the real bus into ``DashboardState``, no Textual) or an aiortc WHEP viewer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge.bench.whep_viewer import WhepRefused, WhepViewer
from edge.bus import topics
from edge.bus.client import BusClient, Subscription
from edge.uplink.auth import load_token
from tests.support import (
    DemoRun,
    demo_config_copy,
    eventually,
    kill9,
    running_demo,
    wait_for_pid,
)
from ui.bridge import BusBridge
from ui.state import DashboardState

# Generous: a demo start, 25 s of running, the fault and the recovery, a clean stop.
pytestmark = pytest.mark.timeout(180)

CAMERA = "north-gate"
DRONE_LINK = "alpha"
DRONE = "alpha-1"  # <link>-<sysid> of the simulated drone on that link
# Starting a demo from cold on a shared 2-core machine: simulators, broker and services.
START_S = 60.0
# The dead process must have published more than its successor can within RECOVER_S:
# the defect these tests catch makes a subscriber take the successor's messages for
# cache replays (its sequence numbers restart from 1) until they overtake the dead
# process's count, so the dashboard stays "silent" about as long as that process had run.
# A restarted camera service was seen to publish 17 statuses within 15 s (1 Hz, plus one
# on each state change): 25 keeps the defect visible with a margin.
RUN_BEFORE_KILL_S = 25
# Back on the dashboard within this of a kill -9: the supervisor restarts after 0.5 s, a
# service starts in 1-3 s on this machine (more under load), a camera is live again
# within ~2.5 s of its RTSP session, and statuses and telemetry come at least once a
# second. 15 s covers all of it with room, and stays under RUN_BEFORE_KILL_S.
RECOVER_S = 15.0
# A restarted uplink must take viewers within this of starting: whatever brings the lost
# stream announcements back must do so on a time scale a viewer honouring the 409's
# Retry-After (2 s) can wait for. The defect answers 409 forever.
WHEP_AFTER_RESTART_S = 20.0
# Longer than the window in which a camera's bus status counts (SILENT_S, 5 s, in
# edge/bus/mirror.py): past it, the uplink cannot be relying on a recent status.
BUS_STALL_S = 8.0


@dataclass
class Heard:
    seq: int
    ts_ns: int  # when the publisher sent it (its header), wall clock
    at: float  # when we received it, monotonic


class BusLog:
    """The raw headers of everything under some prefixes, replays included: what was really
    published, as opposed to what a subscriber chose to take."""

    def __init__(self, client: BusClient, *prefixes: str) -> None:
        self.heard: dict[str, list[Heard]] = {}
        self._sub: Subscription = client.subscribe(*prefixes)
        self._task = asyncio.create_task(self._read(), name="bus-log")

    async def _read(self) -> None:
        async for env in self._sub:
            self.heard.setdefault(env.topic, []).append(
                Heard(env.header.seq, env.header.ts_ns, time.monotonic()))

    def max_seq(self, topic: str) -> int:
        return max((h.seq for h in self.heard.get(topic, [])), default=0)

    def since(self, topic: str, ts_ns: int) -> list[Heard]:
        """Messages on `topic` published after `ts_ns` (wall clock)."""
        return [h for h in self.heard.get(topic, []) if h.ts_ns > ts_ns]

    def last_received(self, topic: str) -> float | None:
        h = self.heard.get(topic)
        return h[-1].at if h else None

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._sub.close()


@asynccontextmanager
async def bus_log(demo: DemoRun, *prefixes: str) -> AsyncIterator[BusLog]:
    client = BusClient(demo.endpoints, source="test-faults")
    log = BusLog(client, *prefixes)
    try:
        yield log
    finally:
        await log.close()
        await client.close()


@asynccontextmanager
async def dashboard(demo: DemoRun) -> AsyncIterator[DashboardState]:
    """The dashboard's model fed by its real bus bridge, as `edge dashboard` runs it."""
    state = DashboardState(demo.config)
    bridge = BusBridge(demo.endpoints, state, source="test-dashboard")
    task = asyncio.create_task(bridge.run(), name="dashboard-bridge")
    try:
        yield state
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def summary_of(demo: DemoRun, child: str) -> dict[str, Any]:
    assert demo.summary is not None
    found: dict[str, Any] = demo.summary["services"][child]
    return found


# -- 1. a service killed: the dashboard must show it again ----------------------------------

async def test_killed_camera_and_drone_services_are_live_again_on_the_dashboard(
        tmp_path: Path) -> None:
    # One demo for both (a demo's start is most of each): the camera's and the drone
    # link's services are killed together, and each must come back on its own.
    config = demo_config_copy(tmp_path / "config", cameras=[CAMERA], drones=[DRONE_LINK],
                              uplink=False)
    status, telemetry = topics.cam_status(CAMERA), topics.drone_telemetry(DRONE)
    async with running_demo(config, tmp_path / "run") as demo, \
            bus_log(demo, status, telemetry) as log, dashboard(demo) as state:
        await asyncio.gather(camera_recovers(demo, log, state),
                             drone_recovers(demo, log, state))
    assert summary_of(demo, f"camera@{CAMERA}")["restarts"] == 1, demo.summary
    assert summary_of(demo, f"drone@{DRONE_LINK}")["restarts"] == 1, demo.summary


async def camera_recovers(demo: DemoRun, log: BusLog, state: DashboardState) -> None:
    status = topics.cam_status(CAMERA)
    view = state.cameras[CAMERA]
    await eventually(lambda: view.condition(state.now())[0] == "live",
                     within=START_S, what=f"{CAMERA} live on the dashboard")
    await eventually(lambda: log.max_seq(status) >= RUN_BEFORE_KILL_S,
                     within=RUN_BEFORE_KILL_S + 15,
                     what=f"{RUN_BEFORE_KILL_S} statuses from camera@{CAMERA}")
    old = demo.pid_of("run", f"camera@{CAMERA}")
    assert old is not None, "no camera process found by its environment"
    await kill9(old)
    killed_ns, deadline = time.time_ns(), time.monotonic() + RECOVER_S
    await wait_for_pid(demo, "run", f"camera@{CAMERA}", other_than=old,
                       timeout=RECOVER_S)

    def live_again() -> bool:
        now = state.now()
        return (view.status_ts is not None and view.status_ts > killed_ns / 1e9
                and view.condition(now)[0] == "live")

    try:
        await eventually(live_again, within=max(0.0, deadline - time.monotonic()), what="")
    except AssertionError:
        shown = view.condition(state.now())
        fresh = log.since(status, killed_ns)
        raise AssertionError(
            f"{CAMERA} not live again on the dashboard within {RECOVER_S:g} s of kill -9 "
            f"of its service: it shows {shown[0]} ({shown[1]}), although the restarted "
            f"service published {len(fresh)} statuses since (seq "
            f"{[h.seq for h in fresh][:20]}) after the dead one's "
            f"{log.max_seq(status)}") from None


async def drone_recovers(demo: DemoRun, log: BusLog, state: DashboardState) -> None:
    telemetry = topics.drone_telemetry(DRONE)
    hz = next(d.telemetry_hz for d in demo.config.drones if d.id == DRONE_LINK)

    def telemetry_since(ts: float) -> bool:
        view = state.drones.get(DRONE)
        return (view is not None and view.telemetry_ts is not None
                and view.telemetry_ts > ts and view.condition(state.now()) == "live")

    await eventually(lambda: telemetry_since(0),
                     within=START_S, what=f"{DRONE}'s telemetry on the dashboard")
    await eventually(lambda: log.max_seq(telemetry) >= RUN_BEFORE_KILL_S * hz,
                     within=RUN_BEFORE_KILL_S + 15,
                     what=f"{RUN_BEFORE_KILL_S} s of telemetry from drone@{DRONE_LINK}")
    old = demo.pid_of("run", f"drone@{DRONE_LINK}")
    assert old is not None, "no drone process found by its environment"
    await kill9(old)
    killed_ns, deadline = time.time_ns(), time.monotonic() + RECOVER_S
    await wait_for_pid(demo, "run", f"drone@{DRONE_LINK}", other_than=old,
                       timeout=RECOVER_S)
    try:
        await eventually(lambda: telemetry_since(killed_ns / 1e9),
                         within=max(0.0, deadline - time.monotonic()), what="")
    except AssertionError:
        view = state.drones.get(DRONE)
        age = view.telemetry_age(state.now()) if view else None
        fresh = log.since(telemetry, killed_ns)
        raise AssertionError(
            f"{DRONE}'s telemetry not fresh again on the dashboard within {RECOVER_S:g} s "
            f"of kill -9 of drone@{DRONE_LINK}: the dashboard's is {age} s old and the "
            f"drone shows {view.condition(state.now()) if view else None}, although the "
            f"restarted service published {len(fresh)} samples since (seq "
            f"{[h.seq for h in fresh][:10]}...) after the dead one's "
            f"{log.max_seq(telemetry)}") from None


# -- 2 and 3. the centre's viewers through broker and uplink faults --------------------------

@dataclass
class Centre:
    """The city centre's side: the uplink's base URL, its token, an HTTP client."""

    url: str
    token: str
    http: aiohttp.ClientSession

    async def state(self) -> dict[str, Any] | None:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with self.http.get(f"{self.url}/api/state",
                                     headers={"Authorization": f"Bearer {self.token}"},
                                     timeout=aiohttp.ClientTimeout(total=5)) as r:
                if r.status == 200:
                    found: dict[str, Any] = await r.json()
                    return found
        return None

    async def wait_live(self, camera: str, timeout: float) -> None:
        """Until the uplink reports the camera live with its streams announced."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            state = await self.state()
            cams = {c["id"]: c for c in state["cameras"]} if state else {}
            last = cams.get(camera)
            if last and last["state"] == "live" and last["streams"]:
                return
            await asyncio.sleep(0.25)
        raise AssertionError(f"{camera} not live at the uplink within {timeout:g} s: {last}")

    async def view(self, camera: str, within: float) -> WhepViewer:
        """A WHEP session (201) for `camera`, retrying while the uplink refuses with 409/503
        (as a player honouring Retry-After does) or is not listening yet."""
        deadline = time.monotonic() + within
        last = "no answer (the uplink was not listening)"
        while True:
            viewer = WhepViewer(f"{self.url}/whep/{camera}", self.token, http=self.http)
            try:
                await viewer.start()
                return viewer
            except WhepRefused as e:
                await viewer.close(delete=False)
                if e.status not in (409, 503):
                    raise AssertionError(f"WHEP POST for {camera}: {e}") from None
                last = str(e)
            except (aiohttp.ClientConnectionError, TimeoutError):
                await viewer.close(delete=False)
            if time.monotonic() > deadline:
                raise AssertionError(f"no WHEP session for {camera} within {within:g} s; the "
                                     f"uplink's last answer: {last}")
            await asyncio.sleep(0.5)


@asynccontextmanager
async def centre(demo: DemoRun) -> AsyncIterator[Centre]:
    token = load_token(demo.config.uplink, demo.config_path.parent).decode()
    async with aiohttp.ClientSession() as http:
        yield Centre(f"http://{demo.config.uplink.listen}", token, http)


async def watch_briefly(c: Centre, camera: str, within: float) -> None:
    """A session that is created and plays: frames decoded, then closed."""
    viewer = await c.view(camera, within)
    try:
        # Frames come straight from the camera's media plane: 15 s for the first GOP to
        # reach a fresh session on a loaded machine.
        await viewer.wait_frames(10, timeout=15)
    finally:
        await viewer.close()


async def test_a_stalled_then_killed_broker_and_a_killed_uplink_still_serve_viewers(
        tmp_path: Path) -> None:
    # One demo for the broker's two faults, in turn: first stalled (SIGSTOP), which must
    # not stop viewers of a flowing camera nor be taken for a death; then killed, and
    # the uplink killed after it.
    config = demo_config_copy(tmp_path / "config", cameras=[CAMERA], drones=[])
    status = topics.cam_status(CAMERA)
    async with running_demo(config, tmp_path / "run") as demo, centre(demo) as c, \
            bus_log(demo, status, topics.svc_health("bus")) as log:
        await c.wait_live(CAMERA, START_S)
        await watch_briefly(c, CAMERA, 15)  # before any fault, a viewer gets in

        bus = demo.pid_of("run", "bus")
        assert bus is not None, "no broker process found by its environment"
        assert log.last_received(status) is not None
        os.kill(bus, signal.SIGSTOP)
        try:
            # The stall is real once our own subscriber has heard nothing for BUS_STALL_S.
            await eventually(lambda: time.monotonic() - (log.last_received(status) or 0)
                             >= BUS_STALL_S, within=BUS_STALL_S + 10,
                             what=f"{BUS_STALL_S:g} s without a camera status")
            assert demo.pid_of("run", f"camera@{CAMERA}") is not None
            # Video never passes through the broker: the camera still flows, so a viewer
            # must still get in. 10 s: several retries, all while the bus stays stalled.
            await watch_briefly(c, CAMERA, 10)
        finally:
            os.kill(bus, signal.SIGCONT)
        resumed_ns = time.time_ns()
        await eventually(lambda: log.since(status, resumed_ns), within=15,
                         what="the camera's status through the resumed broker")
        assert demo.pid_of("run", "bus") == bus, "a stalled broker is not a dead one"

        await kill9(bus)
        killed_ns = time.time_ns()
        await wait_for_pid(demo, "run", "bus", other_than=bus, timeout=15)
        # The new broker is up and the camera's status flows through it again.
        await eventually(lambda: log.since(topics.svc_health("bus"), killed_ns)
                         and log.since(status, killed_ns), within=15,
                         what="the camera's status through the restarted broker")

        uplink = demo.pid_of("run", "uplink")
        assert uplink is not None, "no uplink process found by its environment"
        await kill9(uplink)
        await wait_for_pid(demo, "run", "uplink", other_than=uplink, timeout=15)
        await watch_briefly(c, CAMERA, WHEP_AFTER_RESTART_S)
    assert demo.summary is not None
    restarted = {n: s["restarts"] for n, s in demo.summary["services"].items() if s["restarts"]}
    assert (restarted.get("bus"), restarted.get("uplink")) == (1, 1), \
        f"the killed broker and uplink restart, once each: {restarted}"
