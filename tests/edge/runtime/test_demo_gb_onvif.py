"""`edge demo` runs config/demo.toml's GB/T 28181 and ONVIF cameras on simulated devices:
the GB device registers to the demo's own gb28181 service with a digest, the ONVIF camera
asks for the camera's credentials, both go live on the bus, and a simulator the demo's
platform cannot take is one line before anything starts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from drivers.onvif.client import OnvifClient
from drivers.onvif.errors import OnvifError
from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.messages import CameraStatus, GbAdopt, GbDeviceStatus, Reply
from edge.config import CameraConfig, load_config
from edge.config.cameras import Gb28181SourceConfig, OnvifSourceConfig
from edge.runtime.supervisor import SIM_CAMERAS, plan
from tests.support import (
    DEMO_CONFIG,
    Inbox,
    demo_config_copy,
    demo_processes,
    run_edge,
    running_demo,
)

pytestmark = pytest.mark.timeout(150)

# Functional bound, not a timing check: the demo's cold start (interpreters, PyAV, the
# simulators' first encodes) on a shared 2-core machine, with time to spare.
LIVE_S = 90.0
ADOPTED = "gb-adopted"


def demo_camera(kind: type[Gb28181SourceConfig | OnvifSourceConfig]) -> CameraConfig:
    """config/demo.toml's first camera whose main stream is of this kind."""
    found = [c for c in load_config(DEMO_CONFIG).cameras if isinstance(c.streams["main"], kind)]
    assert found, f"config/demo.toml has no {kind.kind} camera"
    return found[0]


async def test_the_demo_brings_its_gb28181_and_onvif_cameras_live(tmp_path: Path) -> None:
    gb_camera, onvif_camera = demo_camera(Gb28181SourceConfig), demo_camera(OnvifSourceConfig)
    path = demo_config_copy(tmp_path / "config", cameras=[gb_camera.id, onvif_camera.id],
                            drones=[], links=[], uplink=False)
    config = load_config(path)
    gb_source = config.camera(gb_camera.id).streams["main"]
    onvif_source = config.camera(onvif_camera.id).streams["main"]
    assert isinstance(gb_source, Gb28181SourceConfig)
    assert isinstance(onvif_source, OnvifSourceConfig)
    [gb_sim] = config.demo.sim_gb28181
    [onvif_sim] = config.demo.sim_cameras
    assert onvif_sim.onvif_port is not None
    gb_password = gb_sim.password_ref(config.gb28181)
    credentials = config.camera(onvif_camera.id).credentials
    assert gb_password is not None and credentials is not None
    user, _, onvif_password = credentials.read_text(path.parent).partition(":")
    secrets = [gb_password.read_text(path.parent), onvif_password]
    async with running_demo(path, tmp_path / "run") as demo:
        bus = BusClient(demo.endpoints, source="test")
        try:
            cams = Inbox(bus.subscribe(topics.CAM))
            waiting = {gb_camera.id, onvif_camera.id}
            async with asyncio.timeout(LIVE_S):
                while waiting:
                    # Live with a measured frame rate: frames keep coming, not just one.
                    status = await cams.expect(
                        CameraStatus,
                        lambda m: m.state == "live" and m.fps > 0 and m.camera_id in waiting,
                        within=LIVE_S)
                    waiting.discard(status.camera_id)
            # The platform has a password for every device, so online is a good digest.
            gb = Inbox(bus.subscribe(topics.gb_status(gb_source.device_id)))
            # (its channels come with its answer to Catalog, a moment after it is online)
            device = await gb.expect(
                GbDeviceStatus,
                lambda m: m.state == "online" and len(m.channels) == gb_sim.channels,
                within=LIVE_S)
            assert gb_source.channel_id in [c.channel_id for c in device.channels], device
            # The simulated ONVIF camera asks for the credentials the camera has.
            with pytest.raises(OnvifError, match="GetDeviceInformation"):
                async with OnvifClient(onvif_source.onvif, f"{user}:not-{onvif_password}",
                                       timeout=10):
                    pass
            # Simulators read their secrets from files: none is on a command line.
            for pid, command in demo_processes(demo.runtime_dir).items():
                assert not any(secret in command for secret in secrets), (pid, command)

            # The device's other channel adopted as a camera (as the dashboard's `a` does):
            # written to the demo's copy of the config, and the demo starts it.
            [other] = [c.channel_id for c in device.channels
                       if c.channel_id != gb_source.channel_id]
            before = path.read_text()
            reply = (await bus.request(topics.GB28181_SERVICE, GbAdopt(
                device_id=gb_source.device_id, channel_id=other, camera_id=ADOPTED,
                name="Adopted dome"), timeout=20)).message
            assert isinstance(reply, Reply) and reply.status == "accepted", reply
            assert str(demo.runtime_dir) in reply.detail, reply.detail
            await cams.expect(CameraStatus, lambda m: m.camera_id == ADOPTED
                              and m.state == "live", within=LIVE_S)
            assert path.read_text() == before  # the operator's file is not the demo's copy
        finally:
            await bus.close()
    assert demo.summary is not None
    services = demo.summary["services"]
    # The ONVIF camera's simulator is the demo's one process for its simulated cameras.
    for name in (f"sim-gb28181@{gb_sim.id}", SIM_CAMERAS, "gb28181",
                 f"camera@{gb_camera.id}", f"camera@{onvif_camera.id}", f"camera@{ADOPTED}"):
        assert name in services, f"{name} is not in the summary: {sorted(services)}"
        assert services[name]["started"] and services[name]["restarts"] == 0, \
            (name, services[name])


GB_SECTION = """vehicle = "t"
[uplink]
enabled = false
[gb28181]
{gb}
[demo]
sim_gb28181 = [{{ id = "34020000001320000001" }}]
"""


@pytest.mark.parametrize(("gb", "says"), [
    ("enabled = false", "set [gb28181] enabled = true"),
    ('enabled = true\nlisten = "127.0.0.1:0"\npassword = { file = "gb.secret" }',
     "need a fixed port"),
    # a platform with passwords for its listed devices only: none for this one
    ('enabled = true\nlisten = "127.0.0.1:5060"\n[[gb28181.devices]]\n'
     'id = "34020000001320000009"\npassword = { file = "gb.secret" }',
     "gives device 34020000001320000001 no password"),
])
async def test_a_gb_simulator_the_demo_platform_cannot_take_is_one_line_and_exit_2(
        tmp_path: Path, gb: str, says: str) -> None:
    path = tmp_path / "demo.toml"
    text = GB_SECTION.format(gb=gb)
    path.write_text(text)
    line = text.splitlines().index(next(t for t in text.splitlines() if "sim_gb28181" in t)) + 1
    (tmp_path / "gb.secret").write_text("12345678\n")
    code, _, err = await run_edge("demo", "--headless", "--seconds", "1", "--config",
                                  str(path))
    assert code == 2, err
    [said] = err.strip().splitlines()
    assert said.startswith(f"{path}:{line}: demo.sim_gb28181[0]") and says in said, err


PLANNED = """vehicle = "t"
[uplink]
enabled = false
[[cameras]]
id = "dome"
name = "Dome"
main = { gb28181 = "34020000001320000001/34020000001310000001" }
[gb28181]
enabled = true
listen = "0.0.0.0:5062"
password = { file = "shared.secret" }
[[gb28181.devices]]
id = "34020000001320000001"
password = { file = "secrets/dome.secret" }
[demo]
sim_cameras = [{ name = "pier", port = 8559, onvif_port = 8580, credentials = { file = "c" } }]
sim_gb28181 = [{ id = "34020000001320000001", channels = 1, transport = "tcp" }]
"""


def flags(argv: list[str]) -> dict[str, str]:
    """Each `--flag value` of a command line (flags without a value are not used here)."""
    return {a: b for a, b in zip(argv, argv[1:], strict=False) if a.startswith("--")}


def test_the_plan_runs_the_cameras_in_one_process_a_gb_device_in_its_own_secrets_by_file(
        tmp_path: Path) -> None:
    path = tmp_path / "demo.toml"
    path.write_text(PLANNED)
    children = plan(load_config(path), path)
    names = [c.name for c in children]
    assert names[0] == "bus"
    simulators = [c.name for c in children if c.kind == "simulator"]
    assert simulators == [SIM_CAMERAS, "sim-gb28181@34020000001320000001"]
    assert names.index("gb28181") > names.index(simulators[-1])
    [camera] = [c.argv for c in children if c.name == SIM_CAMERAS]
    assert camera[camera.index("sim"):camera.index("sim") + 4] == ["sim", "cameras",
                                                                   "--name", "pier"]
    assert (flags(camera)["--onvif"], flags(camera)["--discovery-port"],
            flags(camera)["--onvif-credentials-file"]) == ("8580", "0", str(tmp_path / "c"))
    [device] = [c.argv for c in children if c.name.startswith("sim-gb28181@")]
    assert device[device.index("sim"):device.index("sim") + 2] == ["sim", "gb28181"]
    # the device's own password, not the shared one; a wildcard listen is reached on loopback
    assert flags(device) == {
        "--id": "34020000001320000001", "--platform": "tcp:127.0.0.1:5062",
        "--platform-id": "34020000002000000001",
        "--password-file": str(tmp_path / "secrets" / "dome.secret"), "--channels": "1",
        "--codec": "h264", "--keepalive-s": "60"}
