"""The simulated GB/T 28181 device against our platform (GbPlatform), over real UDP and TCP.

Registration with digest, keepalives, Catalog/DeviceInfo/DeviceStatus, live video as
PS over RTP (UDP, TCP either way round) decoded by PyAV, PTZ moving the picture, BYE.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable

import pytest

from drivers.gb28181 import ptz_cmd
from drivers.gb28181.gb_sdp import MediaTransport
from drivers.gb28181.platform import GbPlatform, SessionEnded
from drivers.gb28181.registrar import AuthRefused, DeviceEvent
from drivers.gb28181.sip_transport import Peer, TransportName
from drivers.rtsp.annexb import Codec
from drivers.sim.gb28181.device import GbDeviceError, SimGbDevice, channel_ids
from drivers.sim.gb28181.media import WIDTH
from tests.support import eventually, standing_still
from tests.support.gb28181_media import media_port

PLATFORM_ID = "34020000002000000001"
DEVICE_ID = "34020000001320000001"
PASSWORD = "12345678"
SSRC = "0200001234"


@pytest.fixture
async def platform() -> AsyncIterator[GbPlatform]:
    gb = GbPlatform(platform_id=PLATFORM_ID, password=PASSWORD, host="127.0.0.1", port=0,
                    keepalive_interval=0.2)
    await gb.start()
    yield gb
    await gb.close()


@contextlib.asynccontextmanager
async def running(gb: GbPlatform, transport: TransportName, *, password: str = PASSWORD,
                  keepalive_s: float = 0.2, codec: Codec = "h264",
                  ) -> AsyncIterator[tuple[SimGbDevice, asyncio.Task[None]]]:
    device = SimGbDevice(DEVICE_ID, Peer(transport, *gb.address), password=password,
                         platform_id=PLATFORM_ID, keepalive_s=keepalive_s,
                         local_host="127.0.0.1", t1=0.1, codec=codec)
    task = asyncio.create_task(device.run())
    try:
        yield device, task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, GbDeviceError):
            await task


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_registers_keeps_alive_and_answers_queries(platform: GbPlatform,
                                                         transport: TransportName) -> None:
    async with running(platform, transport) as (device, _):
        seen = await eventually(lambda: platform.registrar.get(DEVICE_ID), what="registration")
        assert seen is not None and seen.peer.transport == transport
        # Each keepalive the device counts is one the platform answered 200: it knew us.
        await eventually(lambda: device.counters.keepalives >= 2, what="two keepalives")

        channels = await platform.query_catalog(DEVICE_ID)
        assert [c.channel_id for c in channels] == channel_ids(DEVICE_ID, 2)
        # The names went through GB2312 and back.
        assert [c.name for c in channels] == ["布控球通道1", "布控球通道2"]
        info = await platform.query_device_info(DEVICE_ID)
        assert info.channels == 2 and info.manufacturer == "edge"
        status = await platform.query_device_status(DEVICE_ID)
        assert status.online and status.status_ok


async def test_wrong_password_is_refused_with_a_clear_reason() -> None:
    events: list[DeviceEvent | object] = []
    gb = GbPlatform(platform_id=PLATFORM_ID, password=PASSWORD, host="127.0.0.1", port=0,
                    max_auth_failures=1, on_event=events.append)
    await gb.start()
    try:
        device = SimGbDevice(DEVICE_ID, Peer("udp", *gb.address), password="wrong",
                             platform_id=PLATFORM_ID, local_host="127.0.0.1", t1=0.1)
        with pytest.raises(GbDeviceError) as refused:
            await asyncio.wait_for(device.run(), 20)  # generous: loopback, a loaded machine
        assert "wrong password" in str(refused.value)
        assert "\n" not in str(refused.value)
        assert gb.registrar.get(DEVICE_ID) is None
        assert any(isinstance(e, AuthRefused) for e in events)
    finally:
        await gb.close()


@pytest.mark.parametrize("transport", ["udp", "tcp-passive", "tcp-active"])
async def test_live_video_follows_ptz_and_stops_on_bye(platform: GbPlatform,
                                                       transport: MediaTransport) -> None:
    sip: TransportName = "udp" if transport == "udp" else "tcp"
    channel = channel_ids(DEVICE_ID, 2)[0]
    async with running(platform, sip, keepalive_s=5) as (device, _), \
            media_port(transport, int(SSRC)) as media:
        await eventually(lambda: platform.registrar.get(DEVICE_ID), what="registration")
        session = await platform.invite(DEVICE_ID, channel, media_host="127.0.0.1",
                                        media_port=media.port, transport=transport, ssrc=SSRC)
        assert session.answer.ssrc == SSRC
        assert session.answer.payloads.get(96) == "PS/90000"
        if transport == "tcp-active":
            await media.connect(session.answer.host, session.answer.port)
        sink = media.sink
        await eventually(lambda: sink.pictures >= 5, what="five decoded pictures")
        assert sink.units[0].keyframe and sink.units[0].codec == "h264"
        assert sink.receiver.stats.lost == 0
        home = sink.marker_x()
        assert home is not None and abs(home - WIDTH / 2) < 8

        # Pan left: the camera turns left, so the world (and its marker) moves right.
        await platform.ptz(DEVICE_ID, channel, ptz_cmd.ptz(pan=-1))
        await eventually(lambda: (x := sink.marker_x()) is not None and x > home + WIDTH / 16,
                         what="the picture to pan")
        assert device.counters.ptz_commands == 1

        await platform.bye(session)
        await eventually(lambda: not device.sessions, what="the device to end the session")
        # Polled every 0.3 s (several frame intervals): a count that stays put has stopped.
        await eventually(standing_still(lambda: sink.packets), within=10, every=0.3,
                         what="media to stop after BYE")


def reaches(read: Callable[[], int], target: int) -> Callable[[], bool]:
    return lambda: read() >= target


async def test_keyframe_request_starts_a_gop_at_once(platform: GbPlatform) -> None:
    channel = channel_ids(DEVICE_ID, 2)[0]
    async with running(platform, "udp", keepalive_s=5) as (device, _), \
            media_port("udp", int(SSRC)) as media:
        await eventually(lambda: platform.registrar.get(DEVICE_ID), what="registration")
        session = await platform.invite(DEVICE_ID, channel, media_host="127.0.0.1",
                                        media_port=media.port, ssrc=SSRC)
        sink = media.sink
        await eventually(lambda: sink.pictures >= 3, what="three decoded pictures")
        streams = [s.stream for s in device.sessions.values()]
        stream = streams[0]
        assert stream is not None
        # One chance in 25 that the loop was coming round to its IDR anyway: ask again.
        for _ in range(3):
            await platform.keyframe(DEVICE_ID, channel)
            await eventually(reaches(lambda: stream.frames_sent, stream.frames_sent + 2),
                             what="two more pictures")
            if stream.keyframes_forced:
                break
        assert stream.keyframes_forced >= 1
        assert device.counters.keyframe_requests >= 1
        # On the wire: a keyframe sooner than a GOP (25 pictures, 90 kHz) after the one before.
        def early() -> bool:
            stamps = [u.pts for u in sink.units if u.keyframe and u.pts is not None]
            return any((b - a) % (1 << 33) < 90_000 for a, b in itertools.pairwise(stamps))
        await eventually(early, what="a keyframe out of the GOP's turn")
        # The pictures after it decode: it is a real IDR, parameter sets first.
        before = sink.pictures
        await eventually(lambda: sink.pictures >= before + 5, what="pictures after it")
        await platform.bye(session)


async def test_device_hangs_up_with_its_own_bye(platform: GbPlatform) -> None:
    events: list[object] = []
    platform.on_event = events.append
    channel = channel_ids(DEVICE_ID, 2)[0]
    async with running(platform, "tcp", keepalive_s=5) as (device, _), \
            media_port("udp", int(SSRC)) as media:
        await eventually(lambda: platform.registrar.get(DEVICE_ID), what="registration")
        session = await platform.invite(DEVICE_ID, channel, media_host="127.0.0.1",
                                        media_port=media.port, ssrc=SSRC)
        await eventually(lambda: media.sink.pictures >= 2, what="two decoded pictures")
        assert await device.hang_up(channel_ids(DEVICE_ID, 2)[1]) == []  # not streaming
        assert await device.hang_up(channel) == [200]
        assert platform.sessions == {} and not device.sessions
        assert events == [SessionEnded(DEVICE_ID, channel, session.call_id)]
        assert (device.counters.byes_sent, device.counters.byes_received) == (1, 0)
        await eventually(standing_still(lambda: media.sink.packets), within=10, every=0.3,
                         what="media to stop after the device's BYE")


async def test_h265_video(platform: GbPlatform) -> None:
    channel = channel_ids(DEVICE_ID, 2)[1]
    async with running(platform, "udp", keepalive_s=5, codec="h265") as _, \
            media_port("udp", int(SSRC)) as media:
        await eventually(lambda: platform.registrar.get(DEVICE_ID), what="registration")
        session = await platform.invite(DEVICE_ID, channel, media_host="127.0.0.1",
                                        media_port=media.port, ssrc=SSRC)
        await eventually(lambda: media.sink.pictures >= 5, what="five decoded pictures")
        assert media.sink.units[0].codec == "h265" and media.sink.units[0].keyframe
        await platform.bye(session)
