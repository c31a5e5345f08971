"""GbSource: a GB/T 28181 channel as a camera source, over real SIP and RTP sockets.

The INVITE goes through our GbPlatform to G's simulated device (PS over RTP on UDP or
TCP either way round); the bus side (the gb28181 service) is tested with the camera
service in tests/edge/services/test_gb28181.py. Faults a device cannot be made to
produce on demand (saying yes and sending nothing) are played by the invite callable.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from fractions import Fraction

import pytest

from drivers.gb28181.gb_sdp import MediaTransport
from drivers.gb28181.platform import GbError, GbPlatform
from drivers.gb28181.ps_mux import PsMuxer, RtpPacketizer
from drivers.gb28181.sip_transport import Peer
from drivers.gb28181.source import GbSource, GbSourceError, Invited, MediaPlan
from drivers.sim.gb28181.device import GbDeviceError, SimGbDevice, channel_ids
from drivers.sim.gb28181.media import View, view_loop
from drivers.source import AccessUnit, SourceState
from tests.support import eventually

pytestmark = pytest.mark.timeout(90)

PLATFORM_ID = "34020000002000000001"
DEVICE_ID = "34020000001320000001"
CHANNEL = channel_ids(DEVICE_ID, 2)[0]
PASSWORD = "12345678"


class Recorder:
    """What a source hands its camera service: units in order, states with reasons."""

    def __init__(self) -> None:
        self.units: list[AccessUnit] = []
        self.states: list[tuple[SourceState, str]] = []

    def sink(self, au: AccessUnit) -> None:
        self.units.append(au)

    def on_state(self, state: SourceState, reason: str) -> None:
        self.states.append((state, reason))

    def reasons(self, state: SourceState) -> list[str]:
        return [r for s, r in self.states if s is state]


@pytest.fixture
async def device() -> AsyncIterator[tuple[GbPlatform, SimGbDevice]]:
    platform = GbPlatform(platform_id=PLATFORM_ID, password=PASSWORD, host="127.0.0.1", port=0)
    await platform.start()
    sim = SimGbDevice(DEVICE_ID, Peer("tcp", *platform.address), password=PASSWORD,
                      platform_id=PLATFORM_ID, keepalive_s=5, local_host="127.0.0.1", t1=0.1)
    task = asyncio.create_task(sim.run())
    try:
        await eventually(lambda: platform.registrar.get(DEVICE_ID), what="registration")
        yield platform, sim
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, GbDeviceError):
            await task
        await platform.close()


def platform_source(platform: GbPlatform, rec: Recorder, transport: MediaTransport,
                    no_media_s: float = 5.0) -> GbSource:
    """A source whose INVITE and BYE are the platform's own, as the service does them."""

    async def plan() -> MediaPlan:
        return MediaPlan(transport=transport, bind_host="127.0.0.1", no_media_s=no_media_s)

    async def invite(plan: MediaPlan, port: int) -> Invited:
        try:
            session = await platform.invite(DEVICE_ID, CHANNEL, media_host="127.0.0.1",
                                            media_port=port, transport=plan.transport)
        except GbError as e:
            raise GbSourceError(str(e)) from None
        return Invited(session.call_id, int(session.offer.ssrc), session.answer.host,
                       session.answer.port)

    async def bye(session_id: str) -> None:
        session = platform.sessions.get(session_id)
        if session is not None:
            await platform.bye(session)

    return GbSource(name="dome/main", plan=plan, invite=invite, bye=bye, sink=rec.sink,
                    on_state=rec.on_state, retry_first_s=0.2)


@pytest.mark.parametrize("transport", ["udp", "tcp-passive", "tcp-active"])
async def test_invited_channel_goes_live_in_order_and_bye_on_stop(
        device: tuple[GbPlatform, SimGbDevice], transport: MediaTransport) -> None:
    platform, sim = device
    rec = Recorder()
    source = platform_source(platform, rec, transport)
    await source.start()
    try:
        await eventually(lambda: len(rec.units) >= 20, within=30, what="20 access units")
        assert rec.states[0] == (SourceState.CONNECTING, "waiting for the gb28181 service")
        assert (SourceState.LIVE, "") in rec.states
        first = rec.units[0]
        assert first.keyframe and first.codec == "h264" and first.time_base == Fraction(1, 90000)
        assert first.data.startswith(b"\x00\x00\x00\x01")
        assert [u.sequence for u in rec.units[:20]] == list(range(1, 21))
        info = source.stream_info
        assert info is not None and (info.codec, info.width > 0) == ("h264", True)
        assert info.parameter_sets and source.stats.state is SourceState.LIVE
        assert len(sim.sessions) == 1
    finally:
        await source.stop()
    assert rec.states[-1] == (SourceState.STOPPED, "stopped")
    # The BYE went before stop() returned: the device knows at once.
    assert not platform.sessions
    await eventually(lambda: not sim.sessions, what="the device to end its stream")


async def test_media_lost_is_down_then_invited_again(
        device: tuple[GbPlatform, SimGbDevice]) -> None:
    platform, sim = device
    rec = Recorder()
    source = platform_source(platform, rec, "udp", no_media_s=1.0)
    await source.start()
    try:
        await eventually(lambda: source.stats.state is SourceState.LIVE, within=30,
                         what="live")
        # Behind the source's back, the stream ends (as a device's own BYE would end it).
        await platform.bye(next(iter(platform.sessions.values())))
        await eventually(lambda: rec.reasons(SourceState.DOWN), within=20, what="down")
        assert rec.reasons(SourceState.DOWN)[0] == "no media from the device for 1 s"
        await eventually(lambda: source.stats.reconnects == 1
                         and source.stats.state is SourceState.LIVE, within=30,
                         what="live again")
        assert sim.counters.invites == 2
    finally:
        await source.stop()


async def test_refused_invite_and_silent_device_each_give_one_reason() -> None:
    rec = Recorder()
    asked: list[int] = []
    ended: list[str] = []

    async def plan() -> MediaPlan:
        return MediaPlan(bind_host="127.0.0.1", no_media_s=0.5)

    async def invite(plan: MediaPlan, port: int) -> Invited:
        asked.append(port)
        if len(asked) == 1:
            raise GbSourceError(f"device {DEVICE_ID} is offline: 3 keepalives missed")
        return Invited(f"call-{len(asked)}", 1234)  # says yes, sends nothing

    async def bye(session_id: str) -> None:
        ended.append(session_id)

    source = GbSource(name="dome/main", plan=plan, invite=invite, bye=bye, sink=rec.sink,
                      on_state=rec.on_state, retry_first_s=0.1, retry_max_s=0.2)
    await source.start()
    try:
        await eventually(lambda: len(rec.reasons(SourceState.DOWN)) >= 2, within=20,
                         what="two reasons")
    finally:
        await source.stop()
    down = rec.reasons(SourceState.DOWN)
    assert down[:2] == [f"device {DEVICE_ID} is offline: 3 keepalives missed",
                        "the device accepted the INVITE but sent no media within 0.5 s"]
    assert ended[0] == "call-2"  # the silent session was ended before asking again
    assert all(port > 0 for port in asked) and not rec.units


async def test_media_port_from_the_configured_range() -> None:
    rec = Recorder()
    asked: list[int] = []
    blocker = await asyncio.get_running_loop().create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    taken = blocker[0].get_extra_info("sockname")[1]

    async def plan() -> MediaPlan:
        return MediaPlan(bind_host="127.0.0.1", ports=(taken, taken), no_media_s=0.5)

    async def invite(plan: MediaPlan, port: int) -> Invited:
        asked.append(port)
        return Invited("x", None)

    async def bye(session_id: str) -> None:
        pass

    source = GbSource(name="dome/main", plan=plan, invite=invite, bye=bye, sink=rec.sink,
                      on_state=rec.on_state, retry_first_s=0.1)
    await source.start()
    try:
        reasons = await eventually(lambda: rec.reasons(SourceState.DOWN), what="a reason")
    finally:
        await source.stop()
        blocker[0].close()
    # The one port of the range is taken: nobody is invited to a port we do not hold.
    assert reasons[0].startswith(f"cannot open a udp media port on 127.0.0.1:{taken}-{taken}:")
    assert not asked


async def test_media_sent_before_the_answer_arrives_is_kept() -> None:
    # A device streams once it has answered; its answer reaches the camera through the
    # platform and the bus a moment later. The first packets carry the keyframe: dropped,
    # the picture would wait a whole GOP (here: for ever, nothing else is sent).
    rec = Recorder()
    pictures = view_loop("early", View())[:3]
    muxer, packetizer = PsMuxer("h264"), RtpPacketizer(4321)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    async def plan() -> MediaPlan:
        return MediaPlan(bind_host="127.0.0.1", no_media_s=30.0)

    async def invite(plan: MediaPlan, port: int) -> Invited:
        for i, picture in enumerate(pictures):
            ps = muxer.mux(picture.data, i * 3600, keyframe=picture.keyframe)
            for packet in packetizer.packetize(ps, i * 3600):
                sender.sendto(packet, ("127.0.0.1", port))
        # Loopback datagrams are in the socket already; let the loop read them before
        # the answer is "here".
        await asyncio.sleep(0.2)
        return Invited("early-call", 4321)

    async def bye(session_id: str) -> None:
        pass

    source = GbSource(name="dome/main", plan=plan, invite=invite, bye=bye, sink=rec.sink,
                      on_state=rec.on_state)
    await source.start()
    try:
        # The demuxer ends a picture when the next begins: the first two come out.
        await eventually(lambda: len(rec.units) >= 2, within=10,
                         what="the pictures sent before the answer")
    finally:
        await source.stop()
        sender.close()
    assert rec.units[0].keyframe and [u.pts for u in rec.units[:2]] == [0, 3600]
    assert (SourceState.LIVE, "") in rec.states


async def test_a_device_that_registers_is_invited_at_once_not_after_the_backoff() -> None:
    rec = Recorder()
    asked: list[int] = []
    registered = asyncio.Event()

    async def plan() -> MediaPlan:
        return MediaPlan(bind_host="127.0.0.1", no_media_s=30.0)

    async def invite(plan: MediaPlan, port: int) -> Invited:
        asked.append(port)
        if not registered.is_set():
            raise GbSourceError(f"device {DEVICE_ID} is offline: not registered yet")
        return Invited("call", 1234)

    async def bye(session_id: str) -> None:
        pass

    async def online() -> bool:
        await registered.wait()
        return True

    # A backoff far longer than the test's bound: only the registration can bring the
    # second INVITE in time.
    source = GbSource(name="dome/main", plan=plan, invite=invite, bye=bye, sink=rec.sink,
                      on_state=rec.on_state, retry_first_s=300.0, online=online)
    await source.start()
    try:
        await eventually(lambda: rec.reasons(SourceState.DOWN), within=10, what="down")
        assert len(asked) == 1
        registered.set()
        await eventually(lambda: len(asked) == 2, within=10, what="the second INVITE")
    finally:
        await source.stop()
