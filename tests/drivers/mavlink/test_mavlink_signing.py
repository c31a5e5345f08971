"""MAVLink 2 signing between the link and a vehicle that requires it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from drivers.mavlink.commands import CommandStatus, Hold
from drivers.mavlink.signing import KEY_LEN, load_key

pytestmark = pytest.mark.timeout(15)

KEY = bytes(range(100, 132))


async def test_vehicle_requiring_signing_refuses_unsigned_commands(mav: Any) -> None:
    sim = await mav.sim(signing_key=KEY)
    link = await mav.link(mav.tcp_of(sim), request_rates=None)
    # telemetry still reads (we hold no key, so cannot judge the signatures)
    await mav.wait_until(lambda: 1 in link.vehicles and link.vehicles[1].telemetry.mode)
    result = await link.command(1, Hold(), timeout_s=0.2, retries=1)
    assert result.status is CommandStatus.TIMED_OUT
    assert sim.stats.unsigned_refused >= 2
    assert sim.vehicle.mode == "GUIDED"


async def test_signed_link_commands_are_accepted(mav: Any) -> None:
    sim = await mav.sim(signing_key=KEY)
    link = await mav.link(mav.tcp_of(sim), signing_key=KEY)
    await mav.wait_until(lambda: 1 in link.vehicles and link.vehicles[1].telemetry.mode)
    result = await link.command(1, Hold())
    assert result.ok, result
    assert link.stats.signed_ok > 0 and link.stats.signed_bad == 0


async def test_wrong_key_is_refused_both_ways(mav: Any) -> None:
    sim = await mav.sim(signing_key=KEY)
    link = await mav.link(mav.tcp_of(sim), signing_key=bytes(32))
    await mav.wait_until(lambda: link.stats.signed_bad > 5)
    assert 1 not in link.vehicles  # badly signed frames are not believed
    result = await link.command(1, Hold(), timeout_s=0.2, retries=0)
    assert result.status is CommandStatus.REJECTED  # unknown vehicle: nothing sent


def test_load_key_forms(tmp_path: Path) -> None:
    raw = bytes(range(KEY_LEN))
    assert load_key(raw) == raw
    (tmp_path / "raw.key").write_bytes(raw)
    (tmp_path / "hex.key").write_text(raw.hex() + "\n")
    assert load_key(tmp_path / "raw.key") == raw
    assert load_key(str(tmp_path / "hex.key")) == raw
    (tmp_path / "bad.key").write_text("too short")
    with pytest.raises(ValueError, match="bad.key"):
        load_key(tmp_path / "bad.key")
