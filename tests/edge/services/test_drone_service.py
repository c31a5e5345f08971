"""The drone service end to end: simulator <-MAVLink-> service <-bus-> test client.

The simulated drones are real MAVLink peers on 127.0.0.1 sockets; the
service is hosted in-process by the real runner (``host()``), except in one
test that starts it as `edge run drone@alpha` in its own process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pymavlink import mavutil as pymavutil

from drivers.mavlink import CommandResult, CommandStatus
from drivers.mavlink.dialect import mavlink, mavutil
from drivers.sim.drone import SimDrone
from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import (
    Alert,
    DroneCommand,
    DroneStatus,
    DroneTelemetry,
    DroneVideo,
    Message,
    Ping,
    Reply,
    ServiceHealth,
)
from edge.config import ConfigError, VehicleConfig, parse_config
from edge.runtime.service import ServiceContext
from edge.services import SERVICES
from edge.services.drone import DroneService
from edge.services.drone_commands import BadCommand, to_command, to_reply
from tests import support
from tests.support import REPO, Inbox, expect_sending, free_port

pytestmark = pytest.mark.timeout(60)

HOME = (30.5935, 114.3060)
URL = "rtsp://127.0.0.1:8554/alpha-gimbal"
KEY = bytes(range(100, 132))
M = TypeVar("M", bound=Message)


class FastDroneService(DroneService):
    LOST_AFTER_S = 1.0  # so a dropout test takes seconds, not tens of seconds


def config_for(connection: str, **link: Any) -> VehicleConfig:
    return parse_config({"drones": [{"id": "alpha", "connection": connection, **link}]})


@asynccontextmanager
async def hosted(endpoints: Endpoints, config: VehicleConfig, config_dir: Path,
                 cls: type[DroneService] = FastDroneService) -> AsyncIterator[ServiceContext]:
    """`drone@alpha` run by the real service runner in this event loop."""
    async with support.hosted(cls, "drone@alpha", config, config_dir / "vehicle.toml",
                              endpoints, ready_within=5) as h:
        yield h.ctx


def inbox(bus: BusClient, *prefixes: str) -> Inbox:
    return Inbox(bus.subscribe(*prefixes))


async def command(bus: BusClient, **fields: Any) -> Reply:
    env = await bus.request(topics.drone_service("alpha"), DroneCommand(**fields), timeout=5)
    assert isinstance(env.message, Reply)
    return env.message


# --------------------------------------------------------------------------- pure rules

def test_command_rules_without_a_link() -> None:
    with pytest.raises(BadCommand, match="^unknown action 'arm'"):
        to_command(DroneCommand(sysid=1, action="arm"))
    with pytest.raises(BadCommand, match="^lat: 91.0 is out of range"):
        to_command(DroneCommand(sysid=1, action="goto", lat=91.0, lon=0.0, alt_m=10.0))
    with pytest.raises(BadCommand, match="^alt_m: required"):
        to_command(DroneCommand(sysid=1, action="goto", lat=1.0, lon=2.0))
    with pytest.raises(BadCommand, match="^pitch_deg: nan is out of range"):
        to_command(DroneCommand(sysid=1, action="gimbal", pitch_deg=float("nan")))
    with pytest.raises(BadCommand, match="^sysid"):
        to_command(DroneCommand(sysid=0, action="rtl"))
    timed_out = CommandResult(CommandStatus.TIMED_OUT, "hold", "MAV_CMD_DO_SET_MODE", None,
                              1500.0, 3, "no COMMAND_ACK")
    reply = to_reply(timed_out, "hold", "alpha-1", 1501.0)
    assert reply.status == "timeout" and "MAV_CMD_DO_SET_MODE after 3 attempts" in reply.detail
    assert reply.data["drone_id"] == "alpha-1" and reply.data["attempts"] == 3
    unknown_mode = CommandResult(CommandStatus.REJECTED, "set_mode", "", None, 0.0, 0,
                                 "no mode 'WARP' for copter")
    assert to_reply(unknown_mode, "set_mode", "alpha-1", 0.1).detail.startswith("mode: ")


def test_registered_with_one_instance_per_link() -> None:
    spec = SERVICES["drone"]
    cfg = parse_config({"drones": [{"id": "alpha", "connection": "tcp:127.0.0.1:5760"},
                                   {"id": "bravo", "connection": "udpin:0.0.0.0:14550"}]})
    assert spec.names(cfg) == ["drone@alpha", "drone@bravo"] and spec.load() is DroneService


# --------------------------------------------------------------------------- telemetry

async def test_telemetry_status_video_and_health_over_tcp(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path) -> None:
    async with SimDrone("tcp:127.0.0.1:0", home=HOME, camera_rtsp_url=URL, seed=1) as sim:
        assert sim.address is not None
        cfg = config_for(f"tcp:127.0.0.1:{sim.address[1]}", telemetry_hz=10)
        sub = inbox(bus, topics.drone("alpha-1"), topics.svc_health("drone@alpha"))
        async with hosted(endpoints, cfg, tmp_path):
            tel = await sub.expect(DroneTelemetry, lambda m: m.lat is not None)
            assert tel.drone_id == "alpha-1" and tel.sysid == 1
            assert abs(tel.lat - HOME[0]) < 0.01 and abs(tel.lon - HOME[1]) < 0.01  # type: ignore[operator]
            assert 40 < (tel.alt_rel_m or 0) < 60 and (tel.battery_pct or 0) > 90
            assert tel.gps_fix and tel.satellites

            st = await sub.expect(DroneStatus, lambda m: m.home_lat is not None
                              and m.msgs_per_s > 0)
            assert (st.state, st.mode, st.armed, st.link) == ("live", "GUIDED", True, "alpha")
            assert st.autopilot == "ARDUPILOTMEGA" and st.vehicle_type == "QUADROTOR"
            assert abs(st.home_lat - HOME[0]) < 1e-5  # type: ignore[operator]
            assert st.link_quality_pct and st.last_message_age_s is not None
            # An age in seconds, not a timestamp or milliseconds; how small is the machine's
            # business ("live" already says the vehicle is heard).
            assert 0 <= st.last_message_age_s < 10

            video = await sub.expect(DroneVideo, topic=topics.drone_video("alpha-1"))
            assert (video.uri, video.sysid, video.compid, video.stream_id) == (URL, 1, 100, 1)
            assert (video.width, video.height, video.fps) == (1920, 1080, 25.0)

            health = await sub.expect(ServiceHealth, lambda m: m.state == "running")
            assert "alpha-1 GUIDED armed" in health.detail

            # telemetry_hz = 10 over 2 s would be 20. Functional bounds, not a rate figure: at
            # least 3 (it keeps coming) and at most 40 (paced by telemetry_hz, not one message
            # per MAVLink frame: the vehicle sends about 30 a second).
            n = await sub.count(DroneTelemetry, 2.0)
            assert 3 <= n <= 40, n

        # a late subscriber sees the state topics at once (last-value cache)
        late = inbox(bus, topics.drone("alpha-1"))
        await late.expect(DroneStatus, within=2)
        await late.expect(DroneVideo, within=2)


async def test_two_vehicles_on_one_udp_link_and_their_commands(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path) -> None:
    port = free_port(socket.SOCK_DGRAM)
    rtl = mavlink.MAV_CMD_NAV_RETURN_TO_LAUNCH
    flying = SimDrone(f"udpout:127.0.0.1:{port}", sysid=1, home=HOME, ignore_commands={rtl})
    grounded = SimDrone(f"udpout:127.0.0.1:{port}", sysid=2, home=HOME, start_flying=False)
    cfg = config_for(f"udpin:127.0.0.1:{port}")
    sub = inbox(bus, topics.DRONE)
    async with hosted(endpoints, cfg, tmp_path), flying, grounded:
        for did in ("alpha-1", "alpha-2"):
            await sub.expect(DroneTelemetry, lambda m, d=did: m.drone_id == d)  # type: ignore[misc]
        await sub.expect(DroneStatus, lambda m: m.drone_id == "alpha-2" and m.armed is False)

        # accepted, and the mode change is on the bus at once
        reply = await command(bus, sysid=1, action="hold")
        assert (reply.status, reply.detail) == ("accepted", "MAV_RESULT_ACCEPTED"), reply
        assert reply.data["mav_cmd"] == "MAV_CMD_DO_SET_MODE" and reply.elapsed_ms > 0
        await sub.expect(DroneStatus, lambda m: m.drone_id == "alpha-1" and m.mode == "BRAKE")

        # rejected by the vehicle, with its MAV_RESULT
        reply = await command(bus, sysid=2, action="land")
        assert (reply.status, reply.detail) == ("rejected", "MAV_RESULT_DENIED"), reply

        # The vehicle ignores it: a timeout reply from the driver, after all its attempts
        # (not the service's own cut-off, which would name no MAV_CMD and no attempts).
        reply = await command(bus, sysid=1, action="rtl")
        assert reply.status == "timeout" and "MAV_CMD_NAV_RETURN_TO_LAUNCH" in reply.detail
        assert reply.data["attempts"] == 3

        # requests that never reach a vehicle, each naming what is wrong
        cases: list[tuple[dict[str, Any], str]] = [
            ({"sysid": 1, "action": "arm"}, "unknown action 'arm'"),
            ({"sysid": 1, "action": "takeoff", "alt_m": 10.0}, "unknown action 'takeoff'"),
            ({"sysid": 1, "action": "goto", "lat": 91.0, "lon": 0.0, "alt_m": 20.0}, "lat:"),
            ({"sysid": 1, "action": "goto", "lat": 30.0, "lon": 114.0}, "alt_m:"),
            ({"sysid": 1, "action": "gimbal", "pitch_deg": -120.0}, "pitch_deg:"),
            ({"sysid": 1, "action": "set_mode", "mode": "WARP_SPEED"}, "mode:"),
            ({"sysid": 7, "action": "hold"}, "sysid: no vehicle 7"),
        ]
        for fields, detail in cases:
            reply = await command(bus, **fields)
            assert reply.status == "error" and reply.detail.startswith(detail), (fields, reply)
            assert "Traceback" not in reply.detail
        env = await bus.request(topics.drone_service("alpha"), Ping(payload="x"), timeout=5)
        assert isinstance(env.message, Reply) and env.message.status == "error"

        # and a good go-to is flown (from BRAKE: the vehicle switches to GUIDED itself)
        before = sub.mark()
        reply = await command(bus, sysid=1, action="goto", lat=HOME[0] + 0.0003,
                              lon=HOME[1], alt_m=30.0)
        assert reply.status == "accepted", reply
        await sub.expect(DroneStatus, lambda m: m.drone_id == "alpha-1" and m.mode == "GUIDED",
                         since=before)
        assert flying.vehicle.target is not None and abs(flying.vehicle.target[2] - 30.0) < 0.1


# --------------------------------------------------------------------------- link events

async def test_statustext_lost_and_regained_become_alerts(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path) -> None:
    async with SimDrone("tcp:127.0.0.1:0", home=HOME) as sim:
        assert sim.address is not None
        cfg = config_for(f"tcp:127.0.0.1:{sim.address[1]}")
        alerts = inbox(bus, topics.alert("drone/alpha-1"))
        status = inbox(bus, topics.drone_status("alpha-1"))
        async with hosted(endpoints, cfg, tmp_path):
            await status.expect(DroneStatus, lambda m: m.state == "live")
            # Alerts are not cached: said again until the subscription has reached the broker.
            a = await expect_sending(
                alerts, Alert, lambda: sim.say(mavlink.MAV_SEVERITY_CRITICAL,
                                               "PreArm: EKF variance"),
                lambda m: "EKF" in m.text)
            assert a.severity == "critical" and a.source == "drone/alpha-1"
            assert a.text == "alpha-1: PreArm: EKF variance"

            sim.go_silent(2.0)
            lost = await alerts.expect(Alert, lambda m: "lost" in m.text)
            assert lost.severity == "critical" and lost.text.startswith("alpha-1 lost")
            await status.expect(DroneStatus, lambda m: m.state == "lost", within=2)
            silent_from = status.mark()
            back = await alerts.expect(Alert, lambda m: "regained" in m.text)
            assert back.severity == "warning"
            await status.expect(DroneStatus, lambda m: m.state == "live", within=2,
                                since=silent_from)


# --------------------------------------------------------------------------- router, signing

async def test_router_endpoint_from_config_serves_a_pymavlink_client(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path) -> None:
    port = free_port(socket.SOCK_DGRAM)
    gcs = mavutil().mavlink_connection(f"udpin:127.0.0.1:{port}", source_system=250)
    try:
        async with SimDrone("tcp:127.0.0.1:0", home=HOME) as sim:
            assert sim.address is not None
            cfg = config_for(f"tcp:127.0.0.1:{sim.address[1]}", endpoints=[
                {"name": "centre", "url": f"udpout:127.0.0.1:{port}", "mode": "ro"}])
            async with hosted(endpoints, cfg, tmp_path):
                hb = await asyncio.to_thread(
                    gcs.recv_match, type="HEARTBEAT", blocking=True, timeout=5,
                    condition=f"HEARTBEAT.autopilot=={mavlink.MAV_AUTOPILOT_ARDUPILOTMEGA}")
                assert hb is not None and hb.get_srcSystem() == 1
                pos = await asyncio.to_thread(gcs.recv_match, type="GLOBAL_POSITION_INT",
                                              blocking=True, timeout=5)
                assert pos is not None and abs(pos.lat * 1e-7 - HOME[0]) < 0.01
    finally:
        gcs.close()


async def test_signing_key_file_and_refused_unsigned_command(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path) -> None:
    (tmp_path / "drone.key").write_text(KEY.hex() + "\n")
    port = free_port(socket.SOCK_DGRAM)
    gcs = mavutil().mavlink_connection(f"udpin:127.0.0.1:{port}", source_system=250)
    try:
        async with SimDrone("tcp:127.0.0.1:0", home=HOME, signing_key=KEY) as sim:
            assert sim.address is not None
            cfg = config_for(f"tcp:127.0.0.1:{sim.address[1]}",
                             signing_key={"file": "drone.key"},  # beside the config file
                             endpoints=[{"name": "qgc", "url": f"udpout:127.0.0.1:{port}",
                                         "mode": "rw"}])
            link_alerts = inbox(bus, topics.alert("drone@alpha"))
            status = inbox(bus, topics.drone_status("alpha-1"))
            async with hosted(endpoints, cfg, tmp_path):
                await status.expect(DroneStatus, lambda m: m.mode == "GUIDED")
                # a vehicle that requires signing obeys the service (it signs)
                reply = await command(bus, sysid=1, action="hold")
                assert reply.status == "accepted", reply
                assert sim.stats.unsigned_refused == 0
                await status.expect(DroneStatus, lambda m: m.mode == "BRAKE")

                # an unsigned ground station behind the router is refused, loudly
                hb = await asyncio.to_thread(gcs.recv_match, type="HEARTBEAT", blocking=True,
                                             timeout=5)
                assert hb is not None
                gcs.mav.command_long_send(1, 1, mavlink.MAV_CMD_NAV_RETURN_TO_LAUNCH, 0,
                                          0, 0, 0, 0, 0, 0, 0)
                a = await link_alerts.expect(Alert, lambda m: "COMMAND_LONG" in m.text)
                assert a.severity == "warning" and "endpoint qgc" in a.text
                assert a.source == "drone@alpha"
                # A command after it, answered: the link is one ordered stream, so a forwarded
                # RTL would have reached the vehicle first (the gimbal leaves the mode alone).
                reply = await command(bus, sysid=1, action="gimbal", pitch_deg=-10.0)
                assert reply.status == "accepted", reply
                assert sim.vehicle.mode == "BRAKE"
    finally:
        gcs.close()


async def test_config_problems_are_one_line_each(endpoints: Endpoints, tmp_path: Path) -> None:
    (tmp_path / "short.key").write_bytes(b"too short")
    bad: list[tuple[dict[str, Any], str]] = [
        ({"signing_key": {"file": "short.key"}}, "drones[0].signing_key: "),
        ({"signing_key": {"file": "missing.key"}}, "cannot read secret"),
        ({"endpoints": [{"name": "x", "url": "udpout:10.0.0.1:14550", "deny": ["NOPE"]}]},
         "NOPE"),
    ]
    for extra, words in bad:
        cfg = config_for("tcp:127.0.0.1:5760", **extra)
        ctx = ServiceContext(name="drone@alpha", instance="alpha", config=cfg,
                             config_path=tmp_path / "vehicle.toml", endpoints=endpoints,
                             bus=None, log=logging.getLogger("t"))  # type: ignore[arg-type]
        with pytest.raises(ConfigError) as err:
            DroneService(ctx)
        assert words in str(err.value) and "\n" not in str(err.value), str(err.value)
    # An endpoint the router cannot serve is refused by the config itself.
    with pytest.raises(ConfigError, match=r"drones\[0\]\.endpoints\[0\]\.url: "):
        config_for("tcp:127.0.0.1:5760", endpoints=[{"name": "x", "url": "tcp:10.0.0.1:5760"}])


# --------------------------------------------------------------------------- as systemd runs it

async def test_edge_run_drone_in_its_own_process(
        bus: BusClient, runtime_dir: Path, tmp_path: Path) -> None:
    async with SimDrone("tcp:127.0.0.1:0", home=HOME) as sim:
        assert sim.address is not None
        config = tmp_path / "vehicle.toml"
        config.write_text(f'[[drones]]\nid = "alpha"\n'
                          f'connection = "tcp:127.0.0.1:{sim.address[1]}"\n')
        sub = inbox(bus, topics.drone("alpha-1"), topics.svc_health("drone@alpha"))
        env = {**os.environ, "EDGE_RUNTIME_DIR": str(runtime_dir)}
        env.pop("NOTIFY_SOCKET", None)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge", "run", "drone@alpha", "--config", str(config),
            cwd=REPO, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            await sub.expect(ServiceHealth, lambda m: m.state == "running", within=15)
            await sub.expect(DroneTelemetry, lambda m: m.lat is not None)
            reply = await command(bus, sysid=1, action="rtl")
            assert (reply.status, reply.detail) == ("accepted", "MAV_RESULT_ACCEPTED"), reply
            await sub.expect(DroneStatus, lambda m: m.mode == "RTL")
            proc.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(proc.communicate(), 8)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == 0, err.decode()
        assert b"Traceback" not in err, err.decode()


async def test_the_link_is_logged_both_ways_in_a_tlog_pymavlink_reads(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path) -> None:
    async with SimDrone("tcp:127.0.0.1:0", home=HOME, seed=1) as sim:
        assert sim.address is not None
        cfg = parse_config({
            "drones": [{"id": "alpha", "connection": f"tcp:127.0.0.1:{sim.address[1]}"}],
            "recorder": {"enabled": True, "path": "rec"}})
        sub = inbox(bus, topics.drone("alpha-1"))
        async with hosted(endpoints, cfg, tmp_path):
            await sub.expect(DroneStatus, lambda m: m.state == "live")
            assert (await command(bus, sysid=1, action="hold")).status == "accepted"
        # Stopping the service closed (and fsynced) the log.
        logs = sorted((tmp_path / "rec" / "mavlink" / "alpha").glob("*.tlog"))
        assert len(logs) == 1
        reader = pymavutil.mavlink_connection(str(logs[0]))
        heard: list[tuple[int, str]] = []
        stamps: list[float] = []
        while (msg := reader.recv_match()) is not None:
            heard.append((msg.get_srcSystem(), msg.get_type()))
            stamps.append(msg._timestamp)
        # The vehicle's telemetry, and what we sent: our heartbeats (sysid 255 by
        # default) and the command, with the times they crossed the link.
        assert (1, "GLOBAL_POSITION_INT") in heard and (1, "HEARTBEAT") in heard
        ours = {t for s, t in heard if s != 1}
        assert "HEARTBEAT" in ours and ({"COMMAND_LONG", "SET_MODE", "COMMAND_INT"} & ours)
        assert stamps == sorted(stamps) and abs(stamps[-1] - time.time()) < 60
