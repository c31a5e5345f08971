"""Commands against the simulator: accepted, rejected, timed out, busy, in progress."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

import drivers.mavlink as api
from drivers.mavlink import commands
from drivers.mavlink.commands import (
    CommandStatus,
    GoTo,
    Hold,
    Land,
    PointGimbal,
    ReturnToLaunch,
    SetMode,
)
from drivers.mavlink.dialect import mavlink
from drivers.mavlink.framing import Frame
from tests.support import eventually

pytestmark = pytest.mark.timeout(20)


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    dn = (lat2 - lat1) * 111_319.5
    de = (lon2 - lon1) * 111_319.5 * math.cos(math.radians(lat1))
    return math.hypot(dn, de)


async def test_every_command_is_accepted_and_acts(mav: Any) -> None:
    sim, link = await mav.pair(config=mav.QUICK, time_scale=20.0)
    t = link.vehicles[1].telemetry

    result = await link.command(1, Hold())
    assert result.status is CommandStatus.ACCEPTED, result
    assert result.result == "MAV_RESULT_ACCEPTED" and result.mav_cmd == "MAV_CMD_DO_SET_MODE"
    assert result.elapsed_ms >= 0 and result.attempts == 1
    await mav.wait_until(lambda: t.mode == "BRAKE")
    assert sim.vehicle.groundspeed == 0.0

    assert (await link.command(1, SetMode("LOITER"))).ok
    await mav.wait_until(lambda: t.mode == "LOITER")

    target = (mav.HOME[0] + 0.0004, mav.HOME[1] - 0.0004)
    result = await link.command(1, GoTo(target[0], target[1], 20.0))
    assert result.ok and result.mav_cmd == "MAV_CMD_DO_REPOSITION", result
    await mav.wait_until(lambda: t.mode == "GUIDED")
    await mav.wait_until(
        lambda: distance_m(t.lat, t.lon, *target) < 3 and abs(t.alt_rel_m - 20) < 1, within_s=8
    )

    result = await link.command(1, PointGimbal(pitch_deg=-45.0, yaw_deg=30.0))
    assert result.ok and result.mav_cmd == "MAV_CMD_DO_GIMBAL_MANAGER_PITCHYAW", result
    await mav.wait_until(
        lambda: t.gimbal_pitch_deg is not None and abs(t.gimbal_pitch_deg + 45) < 1
    )
    assert abs(t.gimbal_yaw_deg - 30) < 1

    result = await link.command(1, ReturnToLaunch())
    assert result.ok and result.mav_cmd == "MAV_CMD_NAV_RETURN_TO_LAUNCH"
    await mav.wait_until(lambda: t.mode == "RTL")
    # flies home, lands, disarms
    await mav.wait_until(lambda: t.armed is False, within_s=10)
    assert distance_m(t.lat, t.lon, *mav.HOME) < 2 and t.alt_rel_m < 0.5


async def test_land_descends_then_disarms(mav: Any) -> None:
    sim, link = await mav.pair(config=mav.QUICK, time_scale=20.0)
    t = link.vehicles[1].telemetry
    result = await link.command(1, Land())
    assert result.ok and result.mav_cmd == "MAV_CMD_NAV_LAND"
    await mav.wait_until(lambda: t.mode == "LAND")
    await mav.wait_until(lambda: t.armed is False, within_s=10)


async def test_land_while_disarmed_is_rejected(mav: Any) -> None:
    sim = await mav.sim(start_flying=False)
    link = await mav.link(mav.tcp_of(sim))
    await mav.wait_until(lambda: 1 in link.vehicles and link.vehicles[1].telemetry.armed is False)
    result = await link.command(1, Land())
    assert result.status is CommandStatus.REJECTED
    assert result.result == "MAV_RESULT_DENIED"
    assert result.attempts == 1


async def test_mode_the_autopilot_refuses_is_rejected(mav: Any) -> None:
    sim, link = await mav.pair()
    result = await link.command(1, SetMode("AUTO"))  # no mission loaded
    assert result.status is CommandStatus.REJECTED and result.result == "MAV_RESULT_FAILED"


async def test_unknown_mode_name_is_rejected_without_sending(mav: Any) -> None:
    sim, link = await mav.pair()
    set_modes: list[Frame] = []

    def spy(frame: Frame, peer: object) -> None:
        if frame.msg_id == mavlink.MAVLINK_MSG_ID_COMMAND_LONG and frame.msg.command == 176:
            set_modes.append(frame)

    sim.conn.add_listener(spy)
    result = await link.command(1, SetMode("WARP_SPEED"))
    assert result.status is CommandStatus.REJECTED and result.result is None
    assert "WARP_SPEED" in result.detail and result.attempts == 0
    # A command after it, answered: one stream, in order, so a SET_MODE sent before it
    # would have reached the vehicle first.
    assert (await link.command(1, PointGimbal(-10.0, 0.0))).ok
    assert set_modes == []


async def test_ignored_command_times_out_after_retries(mav: Any) -> None:
    sim, link = await mav.pair(ignore_commands={mavlink.MAV_CMD_NAV_RETURN_TO_LAUNCH})
    confirmations: list[int] = []

    def spy(frame: Frame, peer: object) -> None:
        if frame.msg_id == mavlink.MAVLINK_MSG_ID_COMMAND_LONG and frame.msg.command == 20:
            confirmations.append(frame.msg.confirmation)

    sim.conn.add_listener(spy)
    result = await link.command(1, ReturnToLaunch(), timeout_s=0.2, retries=2)
    assert result.status is CommandStatus.TIMED_OUT
    assert result.attempts == 3 and result.result is None
    # A lower bound only (a busy machine makes it longer, never shorter): it waited out
    # each of its three 0.2 s attempts instead of giving up early.
    assert result.elapsed_ms >= 550
    assert confirmations == [0, 1, 2]
    assert sim.stats.ignored == 3


async def test_second_command_of_a_kind_is_busy(mav: Any) -> None:
    sim, link = await mav.pair(ignore_commands={mavlink.MAV_CMD_NAV_RETURN_TO_LAUNCH})
    # The first one waits long, so that it is surely still pending when the second comes.
    first = asyncio.create_task(link.command(1, ReturnToLaunch(), timeout_s=3.0, retries=0))
    await eventually(lambda: sim.stats.ignored >= 1, what="the first RTL at the vehicle")
    second = await link.command(1, ReturnToLaunch())
    # Refused at once: the first is still waiting for its answer, the second did not.
    assert second.status is CommandStatus.BUSY and not first.done()
    # a different kind is not blocked by it
    assert (await link.command(1, Land())).ok
    assert (await first).status is CommandStatus.TIMED_OUT
    # and once the first is done the kind is free again
    assert (
        await link.command(1, ReturnToLaunch(), timeout_s=0.1, retries=0)
    ).status is CommandStatus.TIMED_OUT


async def test_in_progress_extends_the_wait(mav: Any) -> None:
    sim, link = await mav.pair(in_progress_commands={mavlink.MAV_CMD_NAV_LAND: 0.6})
    result = await link.command(1, Land(), timeout_s=0.2, retries=2)
    assert result.status is CommandStatus.ACCEPTED, result
    assert result.attempts == 1  # no retry once the vehicle said IN_PROGRESS
    assert result.progress == 0
    # A lower bound only: the vehicle answers after 0.6 s, so the link waited past its
    # own 0.2 s timeout for the final answer.
    assert result.elapsed_ms >= 500


async def test_gimbal_falls_back_to_mount_control(mav: Any) -> None:
    sim, link = await mav.pair()
    # a vehicle without a gimbal manager: ArduPilot answers UNSUPPORTED
    original = sim.autopilot.handle_command

    def no_gimbal_manager(cmd: Any, is_int: bool) -> Any:
        if cmd.command == mavlink.MAV_CMD_DO_GIMBAL_MANAGER_PITCHYAW:
            return mavlink.MAV_RESULT_UNSUPPORTED, []
        return original(cmd, is_int)

    sim.autopilot.handle_command = no_gimbal_manager
    result = await link.command(1, PointGimbal(-20.0, 0.0))
    assert result.ok and result.mav_cmd == "MAV_CMD_DO_MOUNT_CONTROL" and result.attempts == 2
    await mav.wait_until(lambda: abs((link.vehicles[1].telemetry.gimbal_pitch_deg or 0) + 20) < 1)


async def test_unknown_vehicle_and_bad_arguments(mav: Any) -> None:
    sim, link = await mav.pair()
    result = await link.command(42, Hold())
    assert result.status is CommandStatus.REJECTED and "HEARTBEAT" in result.detail
    with pytest.raises(ValueError):
        GoTo(91.0, 0.0, 10.0)
    with pytest.raises(ValueError):
        PointGimbal(-120.0, 0.0)


def test_no_arm_disarm_or_takeoff_is_exposed() -> None:
    assert not {"Arm", "Disarm", "Takeoff", "ArmDisarm"} & (set(dir(commands)) | set(dir(api)))
    vehicle = commands.VehicleInfo(
        1, mavlink.MAV_AUTOPILOT_ARDUPILOTMEGA, mavlink.MAV_TYPE_QUADROTOR
    )
    samples = [
        ReturnToLaunch(),
        Hold(),
        Land(),
        SetMode("LOITER"),
        GoTo(1.0, 2.0, 3.0),
        PointGimbal(0.0, 0.0),
        commands.RequestMessage(0),
        commands.SetMessageInterval(0, 1.0),
    ]
    exposed = {
        c.__name__ for c in commands.Command.__subclasses__() if c.__module__ == commands.__name__
    }
    assert {type(c).__name__ for c in samples} == exposed
    forbidden = {mavlink.MAV_CMD_COMPONENT_ARM_DISARM, mavlink.MAV_CMD_NAV_TAKEOFF}
    for cmd in samples:
        spec = cmd.build(vehicle)
        assert spec.command not in forbidden
        assert spec.fallback is None or spec.fallback.command not in forbidden


async def test_unknown_command_is_unsupported(mav: Any) -> None:
    sim, link = await mav.pair()

    @dataclass(frozen=True)
    class SetServo(commands.Command):  # not something the driver offers
        name: ClassVar[str] = "set_servo"

        def build(self, vehicle: commands.VehicleInfo) -> commands.CommandSpec:
            return commands.CommandSpec(mavlink.MAV_CMD_DO_SET_SERVO, (9, 1500, 0, 0, 0, 0, 0))

    result = await link.command(1, SetServo())
    assert result.status is CommandStatus.REJECTED and result.result == "MAV_RESULT_UNSUPPORTED"
