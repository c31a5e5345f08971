"""The platform against SIPp acting as a GB/T 28181 device, over real UDP and TCP sockets."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from drivers.gb28181.platform import GbPlatform, PlatformEvent
from drivers.gb28181.registrar import AuthRefused, ChannelsChanged, DeviceOnline
from tests.support import eventually
from tests.support.sipp import DEVICE_ID, PASSWORD, PLATFORM_ID, sipp


@pytest.fixture
async def platform() -> AsyncIterator[tuple[GbPlatform, list[PlatformEvent]]]:
    events: list[PlatformEvent] = []
    gb = GbPlatform(platform_id=PLATFORM_ID, password=PASSWORD, host="127.0.0.1", port=0,
                    on_event=events.append, max_auth_failures=3)
    await gb.start()
    yield gb, events
    await gb.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_device_registers_keeps_alive_and_answers_catalog(
        platform: tuple[GbPlatform, list[PlatformEvent]], transport: str, tmp_path: Path) -> None:
    gb, events = platform
    async with sipp("device_register_keepalive.xml", gb.address, tmp_path, transport=transport,
                    out_of_call="device_answer_catalog.xml") as device:
        await eventually(lambda: gb.registrar.get(DEVICE_ID), what="the device to register")
        assert events[0] == DeviceOnline(DEVICE_ID, gb.registrar.devices[DEVICE_ID].peer)
        await eventually(lambda: gb.registrar.devices[DEVICE_ID].keepalives,
                         what="a keepalive")
        channels = await gb.query_catalog(DEVICE_ID)
        result = await device.finish()
    assert result.returncode == 0, result.explain()

    assert [(c.channel_id, c.name, c.online) for c in channels] == [
        ("34020000001310000001", "北门球机", True),
        ("34020000001310000002", "南门 & 东侧", False),
    ]
    registered = gb.registrar.devices[DEVICE_ID]
    assert registered.online
    assert registered.peer.transport == transport
    assert list(registered.channels) == ["34020000001310000001", "34020000001310000002"]
    assert [e for e in events if isinstance(e, ChannelsChanged)] == [
        ChannelsChanged(DEVICE_ID, tuple(channels))]
    # SIPp answered its challenge with qop=auth: the digest was checked, not skipped.
    assert 'qop="auth"' in result.messages and "qop=auth" in result.messages
    assert gb.errors.total() == 0, gb.last_error


async def test_wrong_password_is_refused_and_counted(
        platform: tuple[GbPlatform, list[PlatformEvent]], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    gb, events = platform
    caplog.set_level(logging.INFO, logger="drivers.gb28181")
    async with sipp("device_wrong_password.xml", gb.address, tmp_path,
                    password="not-the-password") as device:
        result = await device.finish()
    # SIPp's scenario expects 401, 401, 401, then 403 twice: exit 0 means exactly that.
    assert result.returncode == 0, result.explain()
    assert gb.registrar.get(DEVICE_ID) is None
    assert gb.registrar.auth_failures(DEVICE_ID) == 3
    refused = [e for e in events if isinstance(e, AuthRefused)]
    assert [(e.device_id, e.failures) for e in refused] == [(DEVICE_ID, 3)]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and DEVICE_ID in warnings[0], warnings

    # The refusals cost nothing but the device's own registration: another one registers.
    async with sipp("device_register_keepalive.xml", gb.address, tmp_path / "other",
                    out_of_call="device_answer_catalog.xml",
                    device_id="34020000001320000002") as other:
        await eventually(lambda: gb.registrar.get("34020000001320000002"),
                         what="the other device to register")
        await gb.query_catalog("34020000001320000002")
        assert (await other.finish()).returncode == 0


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_invite_ack_bye_with_sipp(platform: tuple[GbPlatform, list[PlatformEvent]],
                                        transport: str, tmp_path: Path) -> None:
    gb, _ = platform
    channel = "34020000001310000001"
    async with sipp("device_register_keepalive.xml", gb.address, tmp_path, transport=transport,
                    out_of_call="device_answer_invite.xml") as device:
        await eventually(lambda: gb.registrar.get(DEVICE_ID), what="the device to register")
        session = await gb.invite(DEVICE_ID, channel, media_host="127.0.0.1", media_port=30000)
        assert gb.sessions == {session.call_id: session}
        await gb.bye(session)
        result = await device.finish()
    assert result.returncode == 0, result.explain()
    assert (session.answer.host, session.answer.port, session.answer.transport) == (
        "127.0.0.1", 15060, "udp")
    assert session.answer.ssrc == session.offer.ssrc and session.offer.ssrc[:6] == "020000"
    assert session.answer.payloads == {96: "PS/90000"}
    assert gb.sessions == {}
    invite = result.messages.split("INVITE sip:", 1)[1].split("\n\n-----", 1)[0]
    assert f"Subject: {channel}:{session.offer.ssrc},{PLATFORM_ID}:0" in invite
    for line in ("s=Play", f"u={channel}:0", "m=video 30000 RTP/AVP 96",
                 "a=rtpmap:96 PS/90000", "a=recvonly", f"y={session.offer.ssrc}"):
        assert line in invite, line
