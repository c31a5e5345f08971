"""`edge run gb28181`: a session's life beyond INVITE and BYE, over real SIP, RTP and bus.

Who ends a session nobody asked to end: a camera process killed (-9) or restarted, whose
session the service ends with a BYE; the device's own BYE, which the camera hears of at
once. A keyframe asked of a camera reaches the device as IFameCmd. The SIP port's TCP
side holds a bounded number of connections and closes idle ones. The device is G's
simulator (or, to stay silent, the scripted device); the camera process is a real
`edge run camera@dome` where it must die.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from drivers.gb28181 import manscdp
from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import (
    CameraStatus,
    CameraStream,
    GbDeviceStatus,
    GbInvite,
    GbKeyframe,
    GbSessionEnd,
    KeyframeRequest,
    Reply,
    ServiceHealth,
)
from edge.config import ConfigError, parse_config
from edge.media.subscriber import MediaSubscriber
from edge.media.wire import MediaFrame
from edge.services.gb28181 import DEVICE_BYE, Gb28181Service
from tests.support import Inbox, eventually, kill9
from tests.support.gb28181 import scripted_device
from tests.support.gb28181_process import camera_process, process_config
from tests.support.gb28181_service import (
    CHANNELS,
    DEVICE_ID,
    PASSWORD,
    camera_service,
    gb_service,
    sim_device,
    sip_address,
    vehicle_config,
)

# Camera processes import PyAV and the simulator encodes its loop: seconds on a loaded machine.
pytestmark = pytest.mark.timeout(180)

CAMERA = {"id": "dome", "name": "Dome", "main": {"gb28181": f"{DEVICE_ID}/{CHANNELS[0]}"}}
GOP_TICKS = 90_000  # the simulator's loop: one GOP of 25 pictures at 25 fps, 90 kHz PTS
PTS_WRAP = 1 << 33


def online(m: GbDeviceStatus) -> bool:
    return m.state == "online"


def live(m: CameraStatus) -> bool:
    return m.state == "live"


def lists_ended(session_id: str) -> Callable[[GbDeviceStatus], bool]:
    return lambda m: any(e.session_id == session_id for e in m.ended)


def end_of(status: GbDeviceStatus, session_id: str) -> GbSessionEnd:
    return next(e for e in status.ended if e.session_id == session_id)


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def only_session(gb: Gb28181Service) -> str:
    assert gb.platform is not None
    assert len(gb.platform.sessions) == 1, gb.platform.sessions
    return next(iter(gb.platform.sessions))


# -- gap 1: a camera process that dies leaves no session open ---------------------------------

async def test_killed_camera_process_has_its_session_ended(
        bus: BusClient, endpoints: Endpoints, runtime_dir: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    cfg, path = process_config(tmp_path, cameras=[CAMERA], owner_silent_s=3.0, linger_s=0)
    box = Inbox(bus.subscribe(topics.cam("dome"), topics.GB))
    async with gb_service(endpoints, cfg, tmp_path) as gb, sim_device(gb) as (device, _):
        await box.expect(GbDeviceStatus, online, within=30)
        async with camera_process(runtime_dir, path) as camera:
            await box.expect(CameraStatus, live, within=60)
            call_id = only_session(gb)
            owner = gb.owners[call_id]
            assert (owner.requester, owner.stream) == ("camera@dome", "dome/main")
            assert owner.epoch != 0
            await kill9(camera.pid)
            # No BYE from the dead process: the service must notice and end it itself.
            await eventually(lambda: not device.sessions, within=30,
                             what="the device's session to end after the kill")
            assert device.counters.byes_received == 1
            assert "Traceback" not in camera.output()
        why = end_of(await box.expect(GbDeviceStatus, lists_ended(call_id)), call_id)
        assert why.reason == "no health from camera@dome for 3 s (its process is gone)"
        assert why.requester == "camera@dome"
        assert messages(caplog, "ending the stream") == [
            f"ending the stream of device {DEVICE_ID} channel {CHANNELS[0]} for camera@dome "
            f"(dome/main): {why.reason} (session {call_id})"]
        assert gb.platform is not None and not gb.platform.sessions and not gb.owners


async def test_restarted_camera_process_ends_its_old_session_first(
        bus: BusClient, endpoints: Endpoints, runtime_dir: Path, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    # Silence would take two minutes: only the restart can end the old session in time.
    cfg, path = process_config(tmp_path, cameras=[CAMERA], owner_silent_s=120.0, linger_s=0)
    box = Inbox(bus.subscribe(topics.cam("dome"), topics.GB))
    async with gb_service(endpoints, cfg, tmp_path) as gb, sim_device(gb) as (device, _):
        await box.expect(GbDeviceStatus, online, within=30)
        async with camera_process(runtime_dir, path) as first:
            await box.expect(CameraStatus, live, within=60)
            old = only_session(gb)
            old_epoch = gb.owners[old].epoch
            await kill9(first.pid)
        async with camera_process(runtime_dir, path) as second:
            await eventually(lambda: [o.epoch for o in gb.owners.values()] not in ([],
                                                                                  [old_epoch]),
                             within=60, what="the new process's session")
            assert gb.platform is not None and old not in gb.platform.sessions
            assert len(gb.owners) == 1 and device.counters.invites == 2
            # Streaming to the new process alone.
            await eventually(lambda: len(device.sessions) == 1 and all(
                s.stream is not None and s.stream.frames_sent > 0
                for s in device.sessions.values()), within=30, what="the new stream")
            assert device.counters.byes_received == 1
            why = end_of(await box.expect(GbDeviceStatus, lists_ended(old)), old).reason
            # The new process's health or its INVITE, whichever came first, told.
            assert why.startswith("camera@dome restarted (a new process of it "), why
            assert len(messages(caplog, "ending the stream")) == 1
            assert "Traceback" not in second.output()


# -- gap 2: the device's own BYE --------------------------------------------------------------

async def test_device_bye_ends_the_session_at_once_and_the_camera_says_why(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    # A minute of silence before the camera would notice on its own: the BYE must tell.
    cfg = vehicle_config(tmp_path, cameras=[CAMERA], no_media_s=60.0, linger_s=0)
    box = Inbox(bus.subscribe(topics.cam("dome"), topics.GB))
    async with gb_service(endpoints, cfg, tmp_path) as gb, sim_device(gb) as (device, _), \
            camera_service(endpoints, cfg, tmp_path):
        await box.expect(CameraStatus, live, within=30)
        first = only_session(gb)
        mark = box.mark()
        assert await device.hang_up(CHANNELS[0]) == [200]
        assert gb.platform is not None and first not in gb.platform.sessions
        down = await box.expect(CameraStatus, lambda m: m.state == "down", since=mark,
                                within=20)
        assert down.reason == DEVICE_BYE == "the device ended the stream (BYE)"
        again = box.mark()
        end = end_of(await box.expect(GbDeviceStatus, lists_ended(first)), first)
        assert (end.reason, end.requester, end.channel_id) == (DEVICE_BYE, "camera@dome",
                                                               CHANNELS[0])
        # Invited again (after the source's backoff), and live.
        await box.expect(CameraStatus, live, since=again, within=30)
        assert device.counters.invites == 2 and len(device.sessions) == 1
        assert only_session(gb) != first
        assert device.counters.byes_received == 0  # nobody sent the device a BYE
    assert messages(caplog, "ended the stream of channel") == [
        f"device {DEVICE_ID} ended the stream of channel {CHANNELS[0]} for camera@dome "
        "(dome/main) (its BYE, answered 200)"]


# -- gap 3: IFameCmd --------------------------------------------------------------------------

async def _next_keyframe_gap(media: MediaSubscriber, last: list[MediaFrame],
                             frames: int) -> int | None:
    """Within the next `frames` units: the PTS distance of the first keyframe that came
    sooner than a GOP after the one before it (None if none did)."""
    for _ in range(frames):
        frame = await media.recv()
        if frame.keyframe and frame.pts is not None:
            before = last[0].pts
            last[0] = frame
            assert before is not None
            gap = (frame.pts - before) % PTS_WRAP
            if gap < GOP_TICKS:
                return gap
    return None


async def test_keyframe_request_reaches_the_media_plane_before_the_gop_would(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path) -> None:
    cfg = vehicle_config(tmp_path, cameras=[CAMERA], linger_s=0)
    box = Inbox(bus.subscribe(topics.cam("dome"), topics.GB))
    async with gb_service(endpoints, cfg, tmp_path) as gb, sim_device(gb) as (device, _), \
            camera_service(endpoints, cfg, tmp_path):
        await box.expect(CameraStatus, live, within=30)
        stream = await box.expect(CameraStream, within=10)
        media = MediaSubscriber(bus.sync_ctx, stream.endpoint)
        try:
            async with asyncio.timeout(60):  # only bounds a broken test
                while not (frame := await media.recv()).keyframe:
                    pass
                last = [frame]
                # A request landing just as the loop comes round to its IDR changes nothing
                # (one chance in 25): then ask again.
                for _ in range(3):
                    env = await bus.request(topics.camera_service("dome"), KeyframeRequest(
                        profile="main", reason="test"), timeout=15)
                    reply = env.message
                    assert isinstance(reply, Reply), reply
                    if reply.status == "busy":  # the camera's once-a-second limit: a GOP on
                        await _next_keyframe_gap(media, last, 25)
                        continue
                    assert reply.status == "accepted", reply
                    # Two GOPs' worth: the keyframe due anyway may come first.
                    if (gap := await _next_keyframe_gap(media, last, 50)) is not None:
                        break
                else:
                    raise AssertionError("no keyframe out of the GOP's turn after 3 requests")
        finally:
            media.close()
        assert 0 < gap < GOP_TICKS
        assert device.counters.keyframe_requests >= 1
        streams = [s.stream for s in device.sessions.values() if s.stream is not None]
        assert len(streams) == 1 and streams[0].keyframes_forced >= 1


async def test_keyframe_request_refusals_are_one_line(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path) -> None:
    async with gb_service(endpoints, vehicle_config(tmp_path), tmp_path) as gb:
        async def ask(req: GbKeyframe | GbInvite) -> Reply:
            env = await bus.request(topics.GB28181_SERVICE, req, timeout=10)
            assert isinstance(env.message, Reply)
            return env.message

        offline = await ask(GbKeyframe(device_id=DEVICE_ID, channel_id=CHANNELS[0]))
        assert (offline.status, offline.detail) == (
            "rejected", f"device {DEVICE_ID} is offline: not registered yet")
        async with sim_device(gb) as (device, _):
            await eventually(lambda: gb.records[DEVICE_ID].state == "online", within=30,
                             what="the device online")
            bad = await ask(GbKeyframe(device_id=DEVICE_ID, channel_id="1"))
            assert bad.status == "rejected"
            assert bad.detail == ('channel_id must be 20 digits (GB/T 28181), like '
                                  '"34020000001320000001", got "1"')
            stream = await ask(GbInvite(device_id=DEVICE_ID, channel_id=CHANNELS[0], port=40000,
                                        stream="dome/\x1b[2Jmain"))
            assert (stream.status, stream.detail) == (
                "rejected", "stream: at most 200 printable characters")
            # Not streaming: the device takes the request all the same (it is a control).
            took = await ask(GbKeyframe(device_id=DEVICE_ID, channel_id=CHANNELS[0]))
            assert took.status == "accepted", took
            assert device.counters.keyframe_requests == 1 and device.counters.invites == 0


# -- gap 4: the SIP port's TCP side ---------------------------------------------------------

def test_connection_and_requester_limits_in_the_config() -> None:
    gb = parse_config({}).gb28181
    assert (gb.max_tcp_connections, gb.tcp_idle_s, gb.owner_silent_s) == (256, 120.0, 10.0)
    for key, value, problem in [
            ("max_tcp_connections", 0, "input should be greater than or equal to 1, got 0"),
            ("tcp_idle_s", 0, "input should be greater than 0, got 0"),
            # Health is 1 Hz: less than two beats would end the sessions of the living.
            ("owner_silent_s", 1, "input should be greater than or equal to 2, got 1")]:
        with pytest.raises(ConfigError) as e:
            parse_config({"gb28181": {"enabled": True, "password": {"file": "gb.secret"},
                                      key: value}}, "v.toml")
        assert e.value.problems == [f"gb28181.{key}: {problem}"]


async def _raw(address: tuple[str, int]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(*address)


async def _close_all(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.close()
    for writer in writers:
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def _still_served(device_address: tuple[str, int]) -> None:
    """A new device connection is taken and answered (an OPTIONS: 200)."""
    async with scripted_device(device_address, transport="tcp") as other:
        await other.send(other.request("OPTIONS"))
        assert (await other.response()).status == 200


async def test_sip_tcp_connections_beyond_the_cap_are_refused_and_devices_keep_theirs(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    cfg = vehicle_config(tmp_path, max_tcp_connections=16, tcp_idle_s=300.0)
    box = Inbox(bus.subscribe(topics.svc_health("gb28181")))
    async with gb_service(endpoints, cfg, tmp_path) as gb, \
            scripted_device(sip_address(gb), transport="tcp") as device:
        assert gb.platform is not None
        transport = gb.platform.transport
        assert (await device.register(PASSWORD)).status == 200
        readers: list[asyncio.StreamReader] = []
        writers: list[asyncio.StreamWriter] = []
        try:
            for _ in range(40):  # a scan, or a flood: 15 fit beside the device
                reader, writer = await _raw(sip_address(gb))
                readers.append(reader)
                writers.append(writer)
            await eventually(lambda: transport.refused_connections == 25, within=20,
                             what="25 connections refused")
            # Those refused were closed at once: their read ends; the 15 others stay open.
            await eventually(lambda: sum(r.at_eof() for r in readers) == 25, within=20,
                             what="the refused connections closed")
            assert transport.connections == 16
            # The registered device, connected first, is served as before.
            await device.send(device.request("MESSAGE", manscdp.keepalive(1, DEVICE_ID)))
            assert (await device.response()).status == 200
            assert not device.closed_by_peer
            health = await box.expect(ServiceHealth,
                                      lambda h: "SIP connections refused" in h.detail)
            assert health.detail.endswith(", 25 SIP connections refused (max_tcp_connections)")
        finally:
            await _close_all(writers)
        # Rate-limited: far fewer lines than refusals (one per 10 s, with a count).
        lines = messages(caplog, "refused a SIP connection from tcp:127.0.0.1:")
        assert 1 <= len(lines) <= 3, lines
        assert lines[0].endswith(": 16 open, the most allowed (max_tcp_connections)")
        # Room again once they are gone.
        await eventually(lambda: transport.connections == 1, within=20,
                         what="the closed connections forgotten")
        await _still_served(sip_address(gb))


async def test_idle_sip_tcp_connections_are_closed_but_not_a_registered_devices(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    # Keepalives a minute apart: the registered device stays silent past the idle time.
    cfg = vehicle_config(tmp_path, tcp_idle_s=1.0, keepalive_interval_s=60.0)
    async with gb_service(endpoints, cfg, tmp_path) as gb, \
            scripted_device(sip_address(gb), transport="tcp") as device:
        assert gb.platform is not None
        transport = gb.platform.transport
        assert (await device.register(PASSWORD)).status == 200
        readers: list[asyncio.StreamReader] = []
        writers: list[asyncio.StreamWriter] = []
        try:
            for n in range(10):
                reader, writer = await _raw(sip_address(gb))
                if n == 0:  # half a request, then nothing: no better than silence
                    writer.write(b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1\r\n")
                readers.append(reader)
                writers.append(writer)
            # And one that trickles a byte at a time, never a whole message.
            trickle_reader, trickle = await _raw(sip_address(gb))
            readers.append(trickle_reader)
            writers.append(trickle)

            async def drip() -> None:
                with contextlib.suppress(ConnectionError, OSError):
                    while not trickle_reader.at_eof():
                        trickle.write(b"O")
                        await trickle.drain()
                        await asyncio.sleep(0.1)

            dripping = asyncio.create_task(drip())
            await eventually(lambda: all(r.at_eof() for r in readers), within=30,
                             what="the idle connections closed")
            await dripping
            assert transport.idle_closed == 11
            # The device said nothing after registering either, for longer: kept.
            assert not device.closed_by_peer
            await device.send(device.request("MESSAGE", manscdp.keepalive(1, DEVICE_ID)))
            assert (await device.response()).status == 200
        finally:
            await _close_all(writers)
        lines = messages(caplog, "closed the SIP connection from tcp:127.0.0.1:")
        assert 1 <= len(lines) <= 3, lines
        assert lines[0].endswith(": no message for 1 s and no registered device on it")
        await _still_served(sip_address(gb))
