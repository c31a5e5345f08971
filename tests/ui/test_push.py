"""Pushing a camera up to the centre from the dashboard: `u` on the cameras pane, confirmed,
asks `uplink`; the push's state shows on the camera's tile and in the uplink pane."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.envelope import Envelope
from edge.bus.messages import PushCommand, PushFeed, Reply, UplinkPushStatus
from tests.support.ui import until
from tests.ui.feed import FakeVehicle
from tests.ui.test_app import SIZE, tile_text
from ui.app import DashboardApp
from ui.dialogs import ConfirmDialog
from ui.widgets.uplink import UplinkTable

pytestmark = pytest.mark.timeout(30)

WHIP_URL = "https://centre.example:8443/whip/test"


class FakeUplink:
    """Answers `uplink` as the uplink service does for pushes, and says so on
    `uplink/push/status`."""

    def __init__(self, bus: BusClient) -> None:
        self.bus = bus
        self.commands: list[PushCommand] = []
        self.feeds: dict[str, PushFeed] = {}
        bus.serve(topics.UPLINK_SERVICE, self.handle)

    def publish(self) -> None:
        self.bus.publish(topics.UPLINK_PUSH_STATUS, UplinkPushStatus(
            whip_url=WHIP_URL, feeds=list(self.feeds.values())))

    def set(self, camera_id: str, **fields: object) -> None:
        feed = self.feeds.setdefault(camera_id, PushFeed(camera_id=camera_id))
        for k, v in fields.items():
            setattr(feed, k, v)
        self.publish()

    async def handle(self, env: Envelope) -> Reply:
        assert isinstance(env.message, PushCommand)
        self.commands.append(env.message)
        if env.message.action == "start":
            self.set(env.message.camera_id, state="live", profile="sub", kbps=850.0)
        else:
            self.set(env.message.camera_id, state="idle", kbps=0.0)
        return Reply(status="accepted")


def push_rows(app: DashboardApp) -> list[str]:
    table = app.screen.query_one(UplinkTable)
    return [" ".join(str(cell) for cell in cells)
            for _, cells in table._push_rows(app.state, app.state.now())]


async def test_u_pushes_the_selected_camera_with_confirmation_and_shows_its_state(
        make_app: Callable[..., DashboardApp], vehicle: FakeVehicle,
        publisher: BusClient) -> None:
    uplink = FakeUplink(publisher)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.bus.connected, "the bus heartbeat")
        await pilot.press("1")  # the cameras pane; its first tile is North gate

        # An uplink that has not said it pushes: refused here, nothing asked.
        await pilot.press("u")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ConfirmDialog) and not uplink.commands

        uplink.publish()
        await until(pilot, lambda: app.state.push is not None, "the push status")
        await pilot.press("u")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirmation")
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog)
        assert "North gate" in dialog.title_text and WHIP_URL in dialog.body
        await pilot.press("n")  # cancelled: nothing goes out
        await until(pilot, lambda: not isinstance(app.screen, ConfirmDialog), "the dialog gone")
        assert not uplink.commands

        await pilot.press("u")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: uplink.commands, "the request at the uplink")
        assert (uplink.commands[0].action, uplink.commands[0].camera_id) == \
            ("start", "north-gate")
        await until(pilot, lambda: "North gate ↑" in tile_text(app, "north-gate"),
                    "the push mark on the tile")
        await until(pilot, lambda: push_rows(app) == ["↑ centre North gate/sub 850k"],
                    "the pushed feed in the uplink pane")

        # The centre goes away: the pane says the push retries, and why.
        uplink.set("north-gate", state="retrying", retries=2, kbps=0.0,
                   last_error="cannot reach the WHIP server: Connection refused")
        await until(pilot, lambda: push_rows(app) == [
            "↑ centre North gate/sub retry 2: cannot reach the WHIP server: "
            "Connection refused"], "the retry in the uplink pane")

        # `u` on a pushed camera stops it, again confirmed.
        await pilot.press("u")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirmation")
        dialog = app.screen
        assert isinstance(dialog, ConfirmDialog) and dialog.title_text.startswith("Stop pushing")
        await pilot.press("y")
        await until(pilot, lambda: len(uplink.commands) == 2, "the stop at the uplink")
        assert uplink.commands[1].action == "stop"
        await until(pilot, lambda: push_rows(app) == [], "the stopped push gone from the pane")
        await until(pilot, lambda: "↑" not in tile_text(app, "north-gate"),
                    "the push mark gone from the tile")
