"""The GB/T 28181 pane and "adopt", driven with Textual's Pilot against a real broker, the real
gb28181 service and G's simulated device registered over real SIP: the device, its channels
and which is a camera on screen; `a` on a channel writes the camera to the service's config."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.widgets import Input, Label

from edge.bus.endpoints import Endpoints
from edge.config import VehicleConfig, load_config, parse_config
from edge.config.cameras import Gb28181SourceConfig
from tests.support.gb28181_service import CHANNELS, DEVICE_ID, gb_service, sim_device
from tests.support.gb_adopt import CONFIG_TEXT, write_config
from tests.support.ui import until
from tests.ui.feed import FakeVehicle
from ui.adopt import AdoptChoice, AdoptDialog, check_choice, proposed_id
from ui.app import DashboardApp
from ui.dialogs import ConfirmDialog, TextDialog
from ui.keys import HELP
from ui.widgets.gb_devices import GbDeviceTable

# The simulator encodes its picture loop at start; registration waits for it on a loaded box.
pytestmark = pytest.mark.timeout(90)

SIZE = (100, 36)
# Registration and the catalog over real SIP: seconds on a loaded machine, never a timing check.
DEVICE_WITHIN_S = 30.0


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path)


@pytest.fixture
def config(config_path: Path) -> VehicleConfig:
    return load_config(config_path)


@pytest.fixture
def fast_endpoints(endpoints: Endpoints) -> Endpoints:
    # The dashboard's requests wait this long: adopt writes and flushes a file, and a loaded
    # disk may take a while (the conftest's 0.6 s is for its timeout test).
    return dataclasses.replace(endpoints, request_timeout_s=10.0)


def gb_rows(app: DashboardApp) -> list[list[str]]:
    table = app.screen.query_one(GbDeviceTable)
    return [[cell.plain for cell in table._cells[key]] for key in table._keys]


def notifications(app: DashboardApp) -> list[str]:
    return [n.message for n in app._notifications]


def online_rows(address: str) -> list[list[str]]:
    return [["North dome", DEVICE_ID, "online", f"{address} UDP"],
            [" └ 布控球通道1", CHANNELS[0], "on", "camera dome"],
            [" └ 布控球通道2", CHANNELS[1], "on", "not a camera (a adopts)"]]


def device_address(app: DashboardApp) -> str:
    heard = app.state.gb_devices.get(DEVICE_ID)
    return heard.message.address if heard is not None else ""


async def test_pane_shows_the_device_its_channels_and_which_is_a_camera(
        make_app: Callable[..., DashboardApp], config: VehicleConfig,
        fast_endpoints: Endpoints, tmp_path: Path, vehicle: FakeVehicle) -> None:
    async with gb_service(fast_endpoints, config, tmp_path) as gb:
        app = make_app()
        async with app.run_test(size=SIZE) as pilot:
            # Configured, not registered yet: the service says so from the start.
            await until(pilot, lambda: gb_rows(app) == [
                ["North dome", DEVICE_ID, "offline", "not registered yet"]],
                "the configured device, offline")
            async with sim_device(gb):
                await until(pilot, lambda: device_address(app).startswith("127.0.0.1:")
                            and gb_rows(app) == online_rows(device_address(app)),
                            "the device online with its two channels", DEVICE_WITHIN_S)
                await pilot.press("6")
                assert app.focused is app.screen.query_one(GbDeviceTable)
                await pilot.press("enter")  # the device's every figure
                await until(pilot, lambda: isinstance(app.screen, TextDialog), "its detail")
                dialog = app.screen
                assert isinstance(dialog, TextDialog)
                assert dialog.title_text == "GB/T 28181 device North dome"
                assert f"North dome ({DEVICE_ID}): online" in dialog.body
                assert f"布控球通道1 ({CHANNELS[0]}), on: camera dome" in dialog.body
                assert f"布控球通道2 ({CHANNELS[1]}), on: not a camera" in dialog.body
                await pilot.press("escape")
            # Unregistered (the simulator stops): offline, and why.
            await until(pilot, lambda: gb_rows(app)[0][2:] == ["offline", "unregistered"],
                        "the device offline again", DEVICE_WITHIN_S)


async def test_adopt_from_the_dashboard_writes_the_config(
        make_app: Callable[..., DashboardApp], config: VehicleConfig, config_path: Path,
        fast_endpoints: Endpoints, tmp_path: Path, vehicle: FakeVehicle) -> None:
    async with gb_service(fast_endpoints, config, tmp_path) as gb, sim_device(gb):
        app = make_app()
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: gb_rows(app) == online_rows(device_address(app)),
                        "the device online with its two channels", DEVICE_WITHIN_S)
            await pilot.press("6")
            # On the device's own row, and on a channel that is a camera: said, nothing asked.
            await pilot.press("a")
            await until(pilot, lambda: any("Choose one of the device's channels" in m
                                           for m in notifications(app)), "the hint")
            await pilot.press("down", "a")
            await until(pilot, lambda: any("布控球通道1 is camera dome already." in m
                                           for m in notifications(app)), "the refusal")
            assert not isinstance(app.screen, AdoptDialog | ConfirmDialog)

            # A read-only config: the service's refusal reaches the commander as its line.
            # (The file operations here are a small local file: no reason for a thread.)
            config_path.chmod(0o444)  # noqa: ASYNC240
            await pilot.press("down", "a")
            await until(pilot, lambda: isinstance(app.screen, AdoptDialog), "the adopt dialog")
            dialog = app.screen
            assert isinstance(dialog, AdoptDialog)
            assert dialog.query_one("#camera-id", Input).value == "gb-0001-2"
            assert dialog.query_one("#camera-name", Input).value == "布控球通道2"
            await pilot.press("enter", "enter")
            await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirmation")
            await pilot.press("y")
            await until(pilot, lambda: any(
                f"{config_path} is not writable (mode 0444); nothing written" in e.text
                for e in app.state.events), "the refusal in the event log", 15)
            assert config_path.read_text() == CONFIG_TEXT  # noqa: ASYNC240
            assert gb_rows(app)[2][3] == "not a camera (a adopts)"

            # Writable again; the id edited (first to one that is taken, which the dialog
            # refuses itself), the name kept.
            config_path.chmod(0o644)  # noqa: ASYNC240
            await pilot.press("a")
            await until(pilot, lambda: isinstance(app.screen, AdoptDialog), "the adopt dialog")
            dialog = app.screen
            assert isinstance(dialog, AdoptDialog)
            await pilot.press("ctrl+u", *"dome", "enter", "enter")
            await until(pilot, lambda: "there is a camera dome already" in str(
                dialog.query_one("#dialog-error", Label).render()), "the dialog's refusal")
            dialog.query_one("#camera-id", Input).focus()
            await pilot.press("ctrl+u", *"north-2", "enter", "enter")
            await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirmation")
            confirm = app.screen
            assert isinstance(confirm, ConfirmDialog)
            assert confirm.title_text == "Add camera north-2 to the vehicle?"
            await pilot.press("y")
            await until(pilot, lambda: config_path.read_text() != CONFIG_TEXT,
                        "the config written", 15)

            text = config_path.read_text()  # noqa: ASYNC240
            assert text.startswith(CONFIG_TEXT), "the operator's text was changed"
            cam = load_config(config_path).cameras[-1]
            assert (cam.id, cam.name) == ("north-2", "布控球通道2")
            assert isinstance(cam.main, Gb28181SourceConfig)
            assert (cam.main.device_id, cam.main.channel_id) == (DEVICE_ID, CHANNELS[1])
            await until(pilot, lambda: gb_rows(app)[2][3] == "camera north-2",
                        "the channel shown as the camera")
            await until(pilot, lambda: any(f"added to {config_path}" in e.text
                                           for e in app.state.events), "the answer logged")
            await pilot.press("a")
            await until(pilot, lambda: any("布控球通道2 is camera north-2 already." in m
                                           for m in notifications(app)), "adopted already")


async def test_pane_is_hidden_without_gb28181(
        fast_endpoints: Endpoints, vehicle: FakeVehicle) -> None:
    plain = parse_config({"vehicle": "plain", "cameras": [
        {"id": "gate", "name": "Gate", "main": "rtsp://127.0.0.1:1/g"}]})
    app = DashboardApp(plain, endpoints=fast_endpoints)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.bus.connected, "the bus heartbeat")
        pane = app.screen.query_one(GbDeviceTable)
        await until(pilot, lambda: not pane.display, "the pane hidden")
        await pilot.press("6")
        await until(pilot, lambda: any("No GB/T 28181 devices" in m
                                       for m in notifications(app)), "the key's answer")


def test_proposed_ids_and_the_dialog_checks() -> None:
    assert proposed_id(DEVICE_ID, 2, frozenset()) == "gb-0001-2"
    assert proposed_id(DEVICE_ID, 2, frozenset({"gb-0001-2"})) == "gb-0001-2-2"
    assert proposed_id("x" * 16 + "AB/?", 1, frozenset()) == "gb-ab-1"
    taken = frozenset({"dome"})
    assert check_choice(" cam ", "  Yard   gate ", taken) == AdoptChoice("cam", "Yard gate")
    assert check_choice("dome", "x", taken) == "there is a camera dome already: choose another id"
    assert check_choice("Cam", "x", taken) == (
        "the camera id takes a-z, 0-9, - and _ (at most 32, not starting with - or _)")
    assert check_choice("cam", " ", taken) == "give the camera a name"
    assert check_choice("cam", "n" * 65, taken) == "the name is at most 64 printable characters"


def test_help_names_the_pane_keys() -> None:
    shown = " ".join(k for _, keys in HELP for k, _ in keys)
    for binding in GbDeviceTable.BINDINGS:
        assert binding.key in shown  # type: ignore[union-attr]
    assert "6" in shown
