"""`edge run gb28181` and gb28181 cameras end to end, over real SIP, RTP and the real bus.

The device is G's simulator (digest registration, keepalives, Catalog, PS over RTP on
INVITE) or, to misbehave, the scripted device; the services are hosted by the real
runner in this event loop, with a real broker.
"""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import sys
from pathlib import Path

import pytest

from drivers.gb28181.gb_sdp import answer_to, parse_offer
from drivers.gb28181.sip_message import SipRequest, SipResponse, response_to
from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import (
    Alert,
    CameraStatus,
    CameraStream,
    CommandEvent,
    GbDeviceStatus,
    GbPlatformInfo,
    GbPtzCommand,
    Reply,
    ServiceHealth,
)
from edge.media.subscriber import MediaSubscriber
from tests.support import REPO, Inbox, eventually, run_edge
from tests.support.gb28181 import scripted_device
from tests.support.gb28181_service import (
    CHANNELS,
    DEVICE_ID,
    camera_service,
    gb_service,
    sim_device,
    sip_address,
    vehicle_config,
)

# The simulator encodes its picture loop with PyAV at start: seconds on a loaded machine.
pytestmark = pytest.mark.timeout(120)

CAMERA = {"id": "dome", "name": "Dome", "main": {"gb28181": f"{DEVICE_ID}/{CHANNELS[0]}"}}


def online(m: GbDeviceStatus) -> bool:
    return m.state == "online"


async def test_registered_device_is_online_with_its_channels(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path) -> None:
    box = Inbox(bus.subscribe(topics.GB, topics.alert(topics.gb_alert_source(DEVICE_ID))))
    async with gb_service(endpoints, vehicle_config(tmp_path), tmp_path) as gb:
        # A configured device shows before it ever registers.
        first = await box.expect(GbDeviceStatus)
        assert (first.device_id, first.name, first.state) == (DEVICE_ID, "North dome",
                                                              "offline")
        assert first.reason == "not registered yet"
        async with sim_device(gb):
            st = await box.expect(GbDeviceStatus, lambda m: online(m) and len(m.channels) == 2
                                  and m.manufacturer != "", within=30)
            assert [c.channel_id for c in st.channels] == CHANNELS
            # GB2312 on the wire, names intact on the bus.
            assert [c.name for c in st.channels] == ["布控球通道1", "布控球通道2"]
            assert (st.manufacturer, st.transport) == ("edge", "udp")
            assert st.address.startswith("127.0.0.1:") and st.registered_ns > 0
            await box.expect(GbDeviceStatus, lambda m: online(m) and m.keepalives >= 2
                             and m.last_keepalive_ns > 0)
            alert = await box.expect(Alert)
            assert alert.severity == "info" and "registered" in alert.text
    # A state topic: cached for whoever subscribes late.
    late = Inbox(bus.subscribe(topics.gb_status(DEVICE_ID)))
    await late.expect(GbDeviceStatus, within=5)


async def test_gb_camera_goes_live_on_the_media_plane_and_is_released_on_stop(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path) -> None:
    cfg = vehicle_config(tmp_path, cameras=[CAMERA])
    box = Inbox(bus.subscribe(topics.cam("dome"), topics.GB))
    async with gb_service(endpoints, cfg, tmp_path) as gb, sim_device(gb) as (device, _):
        await box.expect(GbDeviceStatus, online, within=30)
        async with camera_service(endpoints, cfg, tmp_path):
            st = await box.expect(CameraStatus, lambda m: m.state == "live", within=30)
            assert (st.codec, st.reason) == ("h264", "")
            stream = await box.expect(CameraStream, within=10)
            assert stream.endpoint == endpoints.media("dome", "main") and stream.codec == "h264"
            assert stream.width > 0 and stream.parameter_sets.startswith(b"\x00\x00\x00\x01")

            media = MediaSubscriber(bus.sync_ctx, stream.endpoint)
            try:
                async with asyncio.timeout(10):
                    first = await media.recv()
                    rest = [await media.recv() for _ in range(10)]
            finally:
                media.close()
            assert first.keyframe and first.codec == "h264"
            assert [f.seq for f in rest] == list(range(first.seq + 1, first.seq + 11))
            assert device.counters.invites == 1 and len(device.sessions) == 1
            sessions = await box.expect(GbDeviceStatus, lambda m: m.sessions == 1)
            assert sessions.state == "online"
        # The camera process stopped: its BYE ended the device's stream.
        await eventually(lambda: not device.sessions, within=10, what="the device's session "
                         "to end")
        assert gb.platform is not None and not gb.platform.sessions


async def test_ptz_request_reaches_the_device(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path) -> None:
    box = Inbox(bus.subscribe(topics.GB, topics.EVENT_COMMAND))
    async with gb_service(endpoints, vehicle_config(tmp_path), tmp_path) as gb, \
            sim_device(gb) as (device, _):
        await box.expect(GbDeviceStatus, online, within=30)
        env = await bus.request(topics.GB28181_SERVICE, GbPtzCommand(
            device_id=DEVICE_ID, channel_id=CHANNELS[0], action="move", pan=-1), timeout=10)
        assert isinstance(env.message, Reply) and env.message.status == "accepted", env.message
        assert device.counters.ptz_commands == 1
        event = await box.expect(CommandEvent)
        assert (event.action, event.status) == ("ptz move", "accepted")

        bad = await bus.request(topics.GB28181_SERVICE, GbPtzCommand(
            device_id=DEVICE_ID, channel_id=CHANNELS[0], action="move", pan=2), timeout=10)
        assert isinstance(bad.message, Reply) and bad.message.status == "rejected"
        assert bad.message.detail == "pan must be -1, 0 or 1, not 2"
        assert device.counters.ptz_commands == 1


async def test_device_that_stops_keepalives_goes_offline_with_an_alert(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path) -> None:
    box = Inbox(bus.subscribe(topics.GB, topics.alert(topics.gb_alert_source(DEVICE_ID)),
                              topics.svc_health("gb28181")))
    async with gb_service(endpoints, vehicle_config(tmp_path), tmp_path) as gb, \
            scripted_device(sip_address(gb)) as device:
        # It registers and then says nothing more: no keepalive, no answer to the queries.
        assert (await device.register("12345678")).status == 200
        await box.expect(GbDeviceStatus, online)
        mark = box.mark()
        down = await box.expect(GbDeviceStatus, lambda m: m.state == "offline", within=20,
                                since=mark)
        assert down.reason == "3 keepalives missed", down.reason
        alert = await box.expect(Alert, lambda a: a.severity == "warning", since=mark)
        assert alert.text == f"GB device North dome ({DEVICE_ID}) is offline: {down.reason}"
        health = await box.expect(ServiceHealth, lambda h: h.state == "degraded", since=mark)
        assert health.detail.startswith("0 devices online")


async def test_wrong_password_is_refused_and_the_status_says_so(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path) -> None:
    box = Inbox(bus.subscribe(topics.GB, topics.alert(topics.gb_alert_source(DEVICE_ID))))
    cfg = vehicle_config(tmp_path, max_auth_failures=1)
    async with gb_service(endpoints, cfg, tmp_path) as gb, \
            sim_device(gb, password="wrong") as (_, task):
        refused = await box.expect(GbDeviceStatus, lambda m: m.state == "refused", within=20)
        assert refused.reason.startswith("refused after 1 wrong password from 127.0.0.1:")
        assert refused.reason.endswith("check its password")
        alert = await box.expect(Alert, lambda a: a.severity == "error")
        assert "wrong password" in alert.text
        await eventually(task.done, within=20, what="the simulator to give up")
        assert gb.refused == 1
    # The platform's password reaches no status or alert.
    assert all("12345678" not in repr(message) for _, message, _ in box.seen)


async def test_device_that_never_answers_invite_leaves_a_reason_and_no_crash(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path) -> None:
    cfg = vehicle_config(tmp_path, cameras=[CAMERA], request_timeout_s=1.0)
    box = Inbox(bus.subscribe(topics.cam("dome"), topics.GB, topics.svc_health("camera@dome")))
    async with gb_service(endpoints, cfg, tmp_path) as gb, \
            scripted_device(sip_address(gb)) as device:
        assert (await device.register("12345678")).status == 200
        await box.expect(GbDeviceStatus, online)
        async with camera_service(endpoints, cfg, tmp_path):
            down = await box.expect(CameraStatus, lambda m: m.state == "down", within=20)
            assert "did not answer the INVITE" in down.reason, down.reason
            invite = await device.request_for("INVITE", within=10)
            assert invite.uri.startswith(f"sip:{CHANNELS[0]}@")
            # The camera process lives on, and says why in its health too.
            health = await box.expect(ServiceHealth,
                                      lambda h: "did not answer the INVITE" in h.detail)
            assert health.state == "degraded"
            # It keeps asking, with backoff: a new INVITE (not a retransmission) comes.
            while (await device.request_for("INVITE", within=20)).call_id == invite.call_id:
                pass


async def test_ps_garbage_gives_a_reason_and_no_crash(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path) -> None:
    cfg = vehicle_config(tmp_path, cameras=[CAMERA], no_media_s=1.5)
    box = Inbox(bus.subscribe(topics.cam("dome"), topics.GB))
    async with gb_service(endpoints, cfg, tmp_path) as gb, \
            scripted_device(sip_address(gb)) as device:
        assert (await device.register("12345678")).status == 200
        await box.expect(GbDeviceStatus, online)
        async with camera_service(endpoints, cfg, tmp_path):
            invite = await device.request_for("INVITE", within=20)
            offer = parse_offer(invite.body)
            await device.send(_ok_with_sdp(invite, answer_to(
                offer, channel_id=CHANNELS[0], host="127.0.0.1", port=40000)))
            await device.request_for("ACK")
            # RTP of the right SSRC carrying bytes that are no program stream.
            sender = await _udp_sender()
            ssrc = int(offer.ssrc) & 0xFFFFFFFF
            stop = asyncio.Event()

            async def spray() -> None:
                seq = 0
                while not stop.is_set():
                    header = struct.pack("!BBHII", 0x80, 0x80 | 96, seq, seq * 3000, ssrc)
                    sender.sendto(header + os.urandom(1000), (offer.host, offer.port))
                    seq += 1
                    await asyncio.sleep(0.01)

            task = asyncio.create_task(spray())
            try:
                down = await box.expect(CameraStatus, lambda m: m.state == "down", within=20)
            finally:
                stop.set()
                await task
                sender.close()
            assert down.reason.startswith("PS garbage: no picture in 1.5 s of media"), \
                down.reason
            assert "bytes skipped" in down.reason
            # The session was let go (BYE) before trying again.
            bye = await device.request_for("BYE", within=10)
            assert bye.call_id == invite.call_id
            await device.answer(bye)


def _ok_with_sdp(invite: SipRequest, sdp: bytes) -> SipResponse:
    response = response_to(invite, 200, to_tag="dev", content_type="APPLICATION/SDP", body=sdp)
    response.headers.add("Contact", f"<sip:{CHANNELS[0]}@127.0.0.1:5060>")
    return response


async def _udp_sender() -> asyncio.DatagramTransport:
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    return transport


async def test_edge_run_gb28181_as_its_own_process(
        bus: BusClient, runtime_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "EDGE_RUNTIME_DIR": str(runtime_dir)}
    env.pop("NOTIFY_SOCKET", None)
    config = tmp_path / "vehicle.toml"
    config.write_text('[gb28181]\nenabled = true\nlisten = "127.0.0.1:0"\n'
                      'password = { file = "gb.secret" }\n')
    # An unreadable password: one line naming the key and the file, before anything listens.
    code, _, err = await run_edge("run", "gb28181", "--config", str(config), env=env)
    assert code == 2, err
    assert err.strip() == (f"{config}: gb28181.password: {tmp_path}/gb.secret: cannot read "
                           "secret: No such file or directory"), err

    (tmp_path / "gb.secret").write_text("12345678\n")
    box = Inbox(bus.subscribe(topics.GB_PLATFORM_INFO, topics.svc_health("gb28181")))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge", "run", "gb28181", "--config", str(config), cwd=REPO,
        env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        info = await box.expect(GbPlatformInfo, within=20)
        assert (info.platform_id, info.rtp_port_min, info.rtp_port_max) == (
            "34020000002000000001", 30000, 30999)
        await box.expect(ServiceHealth, lambda m: m.detail.startswith("0 devices online"),
                         within=10)
        proc.send_signal(signal.SIGTERM)
        _, err_bytes = await asyncio.wait_for(proc.communicate(), 8)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err_bytes.decode()
    assert b"Traceback" not in err_bytes

