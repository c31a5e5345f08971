"""The dashboard's look at fixed sizes (pytest-textual-snapshot).

Deterministic: a fixed clock (so every age and the time shown are fixed), UTC,
a fixed scene from :mod:`tests.ui.scenario`, generated thumbnails and no bus.
After a deliberate change of the look: ``pytest tests/ui/test_snapshots.py
--snapshot-update``, then look at the SVGs in ``tests/ui/__snapshots__``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from textual.pilot import Pilot

from tests.ui.scenario import T0, FixedClock, demo_config, scene
from ui.app import DashboardApp

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def app() -> DashboardApp:
    clock = FixedClock()
    return DashboardApp(demo_config(), state=scene(clock=clock), clock=clock)


def test_main_80x24(snap_compare: Callable[..., bool]) -> None:
    assert snap_compare(app(), terminal_size=(80, 24))


def test_main_wide_160x45(snap_compare: Callable[..., bool]) -> None:
    assert snap_compare(app(), terminal_size=(160, 45))


def test_confirm_rtl_80x24(snap_compare: Callable[..., bool]) -> None:
    async def ask(pilot: Pilot[None]) -> None:
        pilot.app.drone_command("alpha-1", "rtl")  # type: ignore[attr-defined]
        await pilot.pause(0.2)

    assert snap_compare(app(), terminal_size=(80, 24), run_before=ask)


def test_camera_detail_100x30(snap_compare: Callable[..., bool]) -> None:
    assert snap_compare(app(), terminal_size=(100, 30), press=["enter"])


def test_bus_gone_80x24(snap_compare: Callable[..., bool]) -> None:
    a = app()
    a.state.bus.heartbeat_at = T0 - 7
    a.state.set_bus_connected(False, "bus gone: no heartbeat from the bus for 7 s")
    assert snap_compare(a, terminal_size=(80, 24))
