"""Steering a camera from the dashboard: the key-hold logic on a fake clock, then the
camera's detail view driven by Textual's Pilot against the real camera service and
the simulated ONVIF camera (real SOAP, real RTSP), on a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import PtzCommand, PtzStatus, ReplayStatus, Reply
from edge.config import parse_config
from edge.services.camera import CameraService
from tests import support
from tests.support.onvif_client import CREDENTIALS, OnvifCamera, onvif_camera
from tests.support.ui import until
from tests.ui.feed import FakeVehicle, FeedRates
from ui.app import DashboardApp
from ui.dialogs import ConfirmDialog
from ui.keys import HELP
from ui.ptz import (
    MAX_WAITING,
    MOVE_SPEED,
    RELEASE_S,
    RESEND_S,
    ArrowHold,
    Outbox,
    control_text,
    describe,
    refusal,
)
from ui.requests import OpenCamera
from ui.screens.camera import CameraScreen
from ui.state import DashboardState
from ui.widgets.detail import FieldList

SIZE = (100, 30)


# -- holding an arrow, on a fake clock ------------------------------------------------------
def moves(*commands: PtzCommand | None) -> list[tuple[str, float, float]]:
    return [(c.action, c.pan, c.tilt) for c in commands if c is not None]


def test_a_press_moves_at_once_and_a_repeat_only_keeps_it_going() -> None:
    hold = ArrowHold()
    assert moves(hold.press("right", 10.0)) == [("move", MOVE_SPEED, 0.0)]
    assert hold.held
    # Auto-repeat every 30 ms: nothing new goes out until the move is due again.
    sent = [hold.press("right", 10.0 + 0.03 * i) for i in range(1, 8)]
    sent += [hold.tick(10.0 + 0.03 * i + 0.01) for i in range(1, 8)]
    assert moves(*sent) == []
    assert moves(hold.press("right", 10.0 + RESEND_S)) == [("move", MOVE_SPEED, 0.0)]
    # Held for a while (repeats and ticks interleaved): renewed every RESEND_S, no more.
    t, sent = 10.0 + RESEND_S, []
    for _ in range(40):
        t += 0.025
        sent += [hold.press("right", t) if round(t * 1000) % 50 == 0 else hold.tick(t)]
    renewals = moves(*sent)
    assert renewals == [("move", MOVE_SPEED, 0.0)] * len(renewals)
    assert len(renewals) == math.floor(40 * 0.025 / RESEND_S)


def test_no_repeat_for_the_release_time_stops() -> None:
    hold = ArrowHold()
    hold.press("up", 0.0)
    hold.press("up", 0.1)
    # Still held until then: renewed when due, then nothing.
    assert moves(hold.tick(RESEND_S)) == [("move", 0.0, MOVE_SPEED)]
    assert hold.tick(0.1 + RELEASE_S - 0.01) is None
    stopped = hold.tick(0.1 + RELEASE_S)
    assert stopped is not None and stopped.action == "stop"
    assert not hold.held
    assert hold.tick(5.0) is None  # stopped once, not again
    # A press after the stop is a new move at once.
    assert moves(hold.press("up", 5.0)) == [("move", 0.0, MOVE_SPEED)]


def test_a_different_arrow_turns_the_move_at_once() -> None:
    hold = ArrowHold()
    hold.press("left", 0.0)
    assert moves(hold.press("left", 0.05)) == []
    assert moves(hold.press("down", 0.1)) == [("move", 0.0, -MOVE_SPEED)]
    assert moves(hold.press("right", 0.12)) == [("move", MOVE_SPEED, 0.0)]
    # The turned move is renewed on its own schedule.
    assert hold.tick(0.12 + RESEND_S - 0.01) is None
    assert moves(hold.press("right", 0.12 + RESEND_S)) == [("move", MOVE_SPEED, 0.0)]


def test_letting_go_stops_only_a_held_move() -> None:
    hold = ArrowHold()
    assert hold.let_go() is None
    hold.press("right", 0.0)
    stopped = hold.let_go()
    assert stopped is not None and stopped.action == "stop"
    assert hold.let_go() is None and hold.tick(1.0) is None


def test_the_outbox_sends_one_at_a_time_in_order_and_keeps_the_latest_move() -> None:
    box = Outbox()
    first = PtzCommand(action="move", pan=0.5)
    assert box.put(first) is first
    # Behind it: moves and stops collapse into the latest; a preset waits its turn.
    assert box.put(PtzCommand(action="move", pan=-0.5)) is None
    assert box.put(PtzCommand(action="stop")) is None
    assert box.put(PtzCommand(action="preset", preset=2)) is None
    assert box.put(PtzCommand(action="move", tilt=0.5)) is None
    assert box.put(PtzCommand(action="stop")) is None
    order = []
    while (nxt := box.done()) is not None:
        order.append(nxt.action)
    assert order == ["stop", "preset", "stop"]
    assert box.in_flight is None
    # Free again: the next goes at once.
    home = PtzCommand(action="home")
    assert box.put(home) is home


def test_the_outbox_drops_extra_steps_but_never_a_stop() -> None:
    box = Outbox()
    box.put(PtzCommand(action="zoom", zoom=0.2))
    for _ in range(MAX_WAITING + 3):
        box.put(PtzCommand(action="zoom", zoom=0.2))
    assert len(box.waiting) == MAX_WAITING and box.dropped == 3
    box.put(PtzCommand(action="stop"))
    assert len(box.waiting) == MAX_WAITING and box.waiting[-1].action == "stop"
    box.clear()
    assert box.done() is None


def test_words_for_requests_refusals_and_who_steers() -> None:
    assert describe(PtzCommand(action="move", pan=-0.5, tilt=0.5)) == "pan left and tilt up"
    assert describe(PtzCommand(action="zoom", zoom=-0.2)) == "zoom out"
    assert describe(PtzCommand(action="set_preset", preset=3)) == "store preset 3"
    assert refusal(PtzCommand(action="home"), Reply(status="accepted")) is None
    text = refusal(PtzCommand(action="move", pan=0.5),
                   Reply(status="rejected", detail="cannot\x1b[2J be steered"))
    assert text == "pan right: rejected: cannot [2J be steered"  # no escape reaches the screen

    now = 1_790_000_000.0
    assert control_text(None, now) == "not heard yet"
    assert control_text(PtzStatus(kind="", reason="its source is rtsp"), now) == \
        "cannot be steered: its source is rtsp"
    held = PtzStatus(kind="onvif", holder="commander", holder_who="ops@dashboard",
                     held_until_ns=int((now + 20) * 1e9), moving=True)
    assert control_text(held, now, "ops@dashboard").startswith(
        "ONVIF, held by commander (you) until ")
    assert control_text(held, now).endswith(", moving; the centre may not steer")
    lapsed = PtzStatus(kind="gb28181", holder="centre", holder_who="centre page 10.8.0.2",
                       held_until_ns=int((now - 1) * 1e9), centre_allowed=True)
    assert control_text(lapsed, now) == "GB/T 28181, free, still; the centre may steer"


def test_the_model_keeps_each_cameras_control() -> None:
    state = DashboardState(parse_config({"cameras": [
        {"id": "gate", "name": "Gate", "main": "rtsp://127.0.0.1:1/g"}]}))
    rev = state.cameras["gate"].rev
    update = state.apply(topics.cam_control("gate"), PtzStatus(camera_id="gate", kind="onvif"))
    assert update is not None and (update.kind, update.key) == ("camera", "gate")
    assert state.cameras["gate"].rev == rev + 1
    control = state.control("gate")
    assert control is not None and control.kind == "onvif"
    # Heard before the camera's status (no view yet): kept all the same.
    assert state.apply(topics.cam_control("roof"), PtzStatus(camera_id="roof")) is None
    assert state.control("roof") is not None
    # No nameable camera, or one too many: counted, not kept.
    state.apply("cam//control", PtzStatus(camera_id=""))
    for i in range(100):
        state.apply(topics.cam_control(f"c{i}"), PtzStatus(camera_id=f"c{i}"))
    assert len(state.controls) == 64 and state.bus.odd == 1 + 100 - 62


def test_help_names_every_key_of_the_camera_view() -> None:
    section = dict(HELP)["In a camera's detail view (ONVIF and GB/T 28181 cameras)"]
    shown = " ".join(k for k, _ in section)
    names = {"left": "arrows", "right": "arrows", "up": "arrows", "down": "arrows",
             "plus": "+", "equals_sign": "=", "minus": "-", "exclamation_mark": "shift+1",
             "left_parenthesis": "9"}
    for binding in CameraScreen.BINDINGS:
        for key in binding.key.split(","):  # type: ignore[union-attr]
            if key in ("escape", "q"):
                continue  # every detail view's: "In a detail view"
            if key.isdigit() or key in ("at", "number_sign", "dollar_sign", "percent_sign",
                                        "circumflex_accent", "ampersand", "asterisk"):
                continue  # the rows "1 … 9" and "shift+1 … 9"
            assert names.get(key, key) in shown, f"{key} is not in the help"


async def test_a_replay_is_not_steered() -> None:
    cfg = parse_config({"cameras": [{"id": "gate", "name": "Gate",
                                     "main": "rtsp://127.0.0.1:1/g"}]})
    app = DashboardApp(cfg)
    app.state.take_replay(ReplayStatus(session_name="drill", start_ns=1, end_ns=10**12,
                                       position_ns=10**9, state="paused"))
    async with app.run_test(size=SIZE) as pilot:
        view = await open_camera(pilot, app, "gate")
        await pilot.press("right", "0")
        await until(pilot, lambda: "A replay: its cameras are only watched, not steered."
                    in notifications(app), "the replay's word")
        assert not view.hold.held and view.outbox.in_flight is None and view.refused is None


# -- the dashboard against the real camera service and a simulated ONVIF camera ----------
@pytest.fixture
async def heartbeat(bus: BusClient) -> AsyncIterator[None]:
    """The broker's heartbeat, as the bus service publishes it: the dashboard sends
    nothing while it believes the bus gone."""
    feed = FakeVehicle(bus, cameras=[], drones=[], rates=FeedRates(heartbeat_s=0.2))
    task = asyncio.create_task(feed.run(), name="heartbeat")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.fixture
async def cam() -> AsyncIterator[OnvifCamera]:
    async with onvif_camera(rtsp_auth=True) as c:
        yield c


def steering_config(address: str) -> dict[str, Any]:
    return {"vehicle": "test", "cameras": [
        {"id": "gate", "name": "Gate", "credentials": {"file": "gate.secret"},
         "main": {"onvif": address, "profile": "main"}},
        # A plain RTSP camera (nothing listens there): it cannot be steered.
        {"id": "yard", "name": "Yard", "main": "rtsp://127.0.0.1:1/yard"},
    ]}


def notifications(app: DashboardApp) -> list[str]:
    return [n.message for n in app._notifications]


async def open_camera(pilot: Any, app: DashboardApp, camera_id: str) -> CameraScreen:
    app.post_message(OpenCamera(camera_id))
    await until(pilot, lambda: isinstance(app.screen, CameraScreen)
                and app.screen.camera_id == camera_id, f"{camera_id}'s detail view")
    assert isinstance(app.screen, CameraScreen)
    return app.screen


async def hold_key(app: DashboardApp, key: str, done: Callable[[], bool], what: str,
                   timeout: float = 15.0, repeats: int | None = None) -> None:
    """Press `key` again and again as a terminal's auto-repeat does (every 30 ms), until
    `done()`, and then `repeats` times more. Not the pilot's press: it waits for the
    screen to settle after each key, longer than a held key's repeats are apart."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not done():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout} s holding {key} for {what}")
        app.simulate_key(key)
        await asyncio.sleep(0.03)
    for _ in range(repeats or 0):
        app.simulate_key(key)
        await asyncio.sleep(0.03)


@pytest.mark.timeout(120)
async def test_the_camera_view_steers_an_onvif_camera(
        endpoints: Endpoints, bus: BusClient, heartbeat: None, tmp_path: Path,
        cam: OnvifCamera) -> None:
    (tmp_path / "gate.secret").write_text(CREDENTIALS + "\n")
    cfg = parse_config(steering_config(cam.address))
    path = tmp_path / "vehicle.toml"
    async with support.hosted(CameraService, "camera@gate", cfg, path, endpoints) as gate, \
            support.hosted(CameraService, "camera@yard", cfg, path, endpoints):
        app = DashboardApp(cfg, endpoints=endpoints)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.state.bus.connected, "the bus heartbeat")
            await until(pilot, lambda: (c := app.state.control("gate")) is not None
                        and c.kind == "onvif", "gate's control state", timeout=10)
            view = await open_camera(pilot, app, "gate")
            assert "ONVIF, free, still" in control_line(view)

            # An arrow held: the simulated camera pans right for longer than the camera
            # service's dead-man time (1 s), so the held key's renewals reach it.
            start = cam.ptz.position().pan
            seen: set[tuple[str, object]] = set()

            def panned() -> bool:
                seen.add(("moving", cam.ptz.moving()[0]))
                seen.add(("shown", control_line(view)))
                return cam.ptz.position().pan > start + 0.4  # 1.6 s at 0.25/s

            await hold_key(app, "right", panned, "the camera to pan right")
            assert ("moving", True) in seen
            # Let go: the dashboard's stop, not the camera service's dead-man, stops it.
            await until(pilot, lambda: not cam.ptz.moving()[0], "the camera stopped",
                        timeout=10)
            assert gate.service.ptz is not None and gate.service.ptz.dead_man_stops == 0
            assert view.refused is None
            await until(pilot, lambda: "held by commander (you) until" in control_line(view)
                        and "still" in control_line(view), "the hold shown, stopped")
            assert any(what == "shown" and ", moving;" in str(text) for what, text in seen)

            # shift+1, confirmed: where it looks now is preset 1.
            here = cam.ptz.position()
            await pilot.press("exclamation_mark")
            await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirmation")
            assert "preset 1" in app.screen.title_text  # type: ignore[attr-defined]
            await pilot.press("y")
            await until(pilot, lambda: any(p.name == "1" for p in cam.ptz.presets.values()),
                        "preset 1 stored in the camera")
            stored = next(p for p in cam.ptz.presets.values() if p.name == "1")
            assert stored.position.pan == pytest.approx(here.pan, abs=1e-3)

            # 0: home (the simulator's home is where it started).
            await pilot.press("0")
            await until(pilot, lambda: cam.ptz.position().pan == pytest.approx(
                cam.ptz.home.pan, abs=1e-3), "the camera at home")
            # 1: back to preset 1.
            await pilot.press("1")
            await until(pilot, lambda: cam.ptz.position().pan == pytest.approx(
                stored.position.pan, abs=1e-3), "the camera at preset 1")
            # + and -: a zoom step in, and out again.
            await pilot.press("plus")
            await until(pilot, lambda: cam.ptz.position().zoom > 0.1, "the camera zoomed in")
            await pilot.press("minus")
            await until(pilot, lambda: cam.ptz.position().zoom < 0.01, "the camera zoomed out")
            # A preset the camera does not have: refused, with the camera service's reason.
            await pilot.press("7")
            await until(pilot, lambda: view.refused is not None, "the refusal")
            assert view.refused is not None
            assert view.refused[0] == "go to preset 7: rejected: camera gate has no preset 7"
            await until(pilot, lambda: any("has no preset 7" in m for m in notifications(app)),
                        "the refusal notified")

            # A camera that cannot be steered: the reason, once, however long the key is held.
            await pilot.press("escape")
            yard = await open_camera(pilot, app, "yard")
            await until(pilot, lambda: "cannot be steered" in control_line(yard),
                        "yard's control state")
            # Held on for a second after the first refusal: its renewals and its stop are
            # refused too.
            await hold_key(app, "left", lambda: yard.refused is not None, "the refusal",
                           repeats=30)
            reason = ("camera yard cannot be steered: its source is rtsp (steering needs "
                      "onvif or gb28181)")
            await until(pilot, lambda: f"pan left: rejected: {reason}" in notifications(app),
                        "the refusal notified")
            await until(pilot, lambda: not yard.hold.held, "the hold let go")
            await until(pilot, lambda: yard.refused is not None
                        and yard.refused[0] == f"stop: rejected: {reason}", "the stop refused")
            # ... and said once (the log has what was notified; notifications expire).
            assert [e.text for e in app.state.events if reason in e.text] == [
                f"pan left: rejected: {reason}"]


def control_line(view: CameraScreen) -> str:
    return view.control_fields(view.query_one(FieldList))[0][1].plain
