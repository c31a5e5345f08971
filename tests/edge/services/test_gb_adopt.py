"""`gb.adopt` to `edge run gb28181`: a registered device's channel becomes a camera in the
service's own config file, over the real bus, with G's simulated device registered over real
SIP; every refusal is one line and leaves the file as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import CameraStatus, CommandEvent, GbAdopt, GbDeviceStatus, Reply
from edge.config import load_config
from edge.config.cameras import Gb28181SourceConfig
from tests.support import Inbox
from tests.support.gb28181_service import (
    CHANNELS,
    DEVICE_ID,
    camera_service,
    gb_service,
    sim_device,
)
from tests.support.gb_adopt import CONFIG_TEXT, write_config

# The simulator encodes its picture loop with PyAV at start: seconds on a loaded machine.
pytestmark = pytest.mark.timeout(120)


def online(m: GbDeviceStatus) -> bool:
    return m.state == "online" and len(m.channels) == 2


async def adopt(bus: BusClient, **fields: str) -> Reply:
    # A generous timeout: the answer is a file written and flushed, on a possibly loaded disk.
    env = await bus.request(topics.GB28181_SERVICE, GbAdopt(**fields), timeout=10)
    assert isinstance(env.message, Reply), env.message
    return env.message


async def test_adopted_channel_is_appended_to_the_config_and_goes_live(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path) -> None:
    path = write_config(tmp_path)
    box = Inbox(bus.subscribe(topics.GB, topics.EVENT_COMMAND, topics.cam("gb-0001-2")))
    async with gb_service(endpoints, load_config(path), tmp_path) as gb, sim_device(gb):
        await box.expect(GbDeviceStatus, online, within=30)
        reply = await adopt(bus, device_id=DEVICE_ID, channel_id=CHANNELS[1],
                            camera_id="gb-0001-2")
        assert (reply.status, reply.detail) == ("accepted", (
            f"camera gb-0001-2 added to {path}; start it with "
            "`systemctl start edge-camera@gb-0001-2` (the demo starts it now)"))
        assert reply.data == {"camera_id": "gb-0001-2", "path": str(path),
                              "device_id": DEVICE_ID, "channel_id": CHANNELS[1]}
        # Everyone hears of it: the demo's supervisor starts the camera on this event.
        event = await box.expect(CommandEvent, lambda e: e.action == "adopt")
        assert (event.service, event.subject, event.status) == ("gb28181", "gb-0001-2",
                                                                "accepted")

        text = path.read_text()
        assert text.startswith(CONFIG_TEXT), "the operator's text was changed"
        added = text[len(CONFIG_TEXT):]
        assert added.startswith("\n# Adopted by ") and f"channel {CHANNELS[1]}." in added
        cfg = load_config(path)
        cam = cfg.cameras[-1]
        # No name asked for: the channel's own, as the device's catalog gave it.
        assert (cam.id, cam.name, [c.id for c in cfg.cameras]) == (
            "gb-0001-2", "布控球通道2", ["dome", "gb-0001-2"])
        assert isinstance(cam.main, Gb28181SourceConfig)
        assert (cam.main.device_id, cam.main.channel_id) == (DEVICE_ID, CHANNELS[1])

        # The file as written runs the camera: the channel's picture on the media plane.
        async with camera_service(endpoints, cfg, tmp_path, "gb-0001-2"):
            live = await box.expect(CameraStatus, lambda m: m.state == "live", within=30)
            assert live.codec == "h264"


async def test_every_refusal_is_one_line_and_leaves_the_file_alone(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path) -> None:
    path = write_config(tmp_path)
    box = Inbox(bus.subscribe(topics.GB, topics.EVENT_COMMAND))

    async def refused(**fields: str) -> str:
        before = path.read_bytes()
        reply = await adopt(bus, **fields)
        assert reply.status == "rejected", reply
        assert path.read_bytes() == before, f"{fields}: the file changed"
        assert "\n" not in reply.detail and "Traceback" not in reply.detail
        return reply.detail

    second = {"device_id": DEVICE_ID, "channel_id": CHANNELS[1]}
    async with gb_service(endpoints, load_config(path), tmp_path) as gb:
        # Configured, but not registered yet: no catalog to adopt from.
        assert await refused(**second, camera_id="cam2") == (
            f"device {DEVICE_ID} has no channel {CHANNELS[1]} (it has not sent its catalog "
            "yet)")
        event = await box.expect(CommandEvent, lambda e: e.action == "adopt")
        assert (event.subject, event.status) == ("cam2", "rejected")

        async with sim_device(gb):
            await box.expect(GbDeviceStatus, online, within=30)
            stranger = "34020000001329999999"
            assert await refused(device_id=stranger, channel_id=CHANNELS[1],
                                 camera_id="cam2") == (
                f"unknown device {stranger}: it is not configured and has not registered")
            assert await refused(device_id="1234", channel_id=CHANNELS[1],
                                 camera_id="cam2") == (
                'device_id must be 20 digits (GB/T 28181), like "34020000001320000001", '
                'got "1234"')
            other = CHANNELS[1][:-1] + "9"
            assert await refused(device_id=DEVICE_ID, channel_id=other, camera_id="cam2") == (
                f"device {DEVICE_ID} has no channel {other} (its catalog lists 2)")
            assert await refused(device_id=DEVICE_ID, channel_id=CHANNELS[0],
                                 camera_id="cam2") == (
                f"channel {CHANNELS[0]} of device {DEVICE_ID} is camera dome already "
                f"(in {path})")
            assert await refused(**second, camera_id="dome") == (
                f"camera id dome is taken in {path} (by 'Dome'); choose another")
            assert (await refused(**second, camera_id="Cam 2")).startswith(
                'camera id "Cam 2" is not an id')
            assert await refused(**second, camera_id="cam2", name="bell\x07") == (
                "name: control characters are not allowed in a camera's name")

            path.chmod(0o444)
            assert await refused(**second, camera_id="cam2") == (
                f"{path} is not writable (mode 0444); nothing written")
            path.chmod(0o644)

            path.write_text(CONFIG_TEXT + "\n[bus]\nbogus = 1\n")
            assert await refused(**second, camera_id="cam2") == (
                f"{path} does not load as it is ({len(CONFIG_TEXT.splitlines()) + 3}: "
                "bus.bogus: unknown key (check its spelling)); fix it first: nothing written")
            path.write_text(CONFIG_TEXT)

            # Put right, the same request is taken; asked again, it is a camera already.
            assert (await adopt(bus, **second, camera_id="cam2")).status == "accepted"
            assert await refused(**second, camera_id="cam3") == (
                f"channel {CHANNELS[1]} of device {DEVICE_ID} is camera cam2 already "
                f"(in {path})")
