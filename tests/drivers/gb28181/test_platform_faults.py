"""The platform with devices that misbehave, over real sockets: one clear reason each, no crash.

The device here is scripted (tests.support.gb28181) so that it can misbehave on cue.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from drivers.gb28181 import manscdp, ptz_cmd
from drivers.gb28181.manscdp import Channel
from drivers.gb28181.platform import GbError, GbPlatform, PlatformEvent, SessionEnded
from drivers.gb28181.sip_message import SipRequest, SipResponse, response_to
from tests.support import eventually
from tests.support.gb28181 import ScriptedDevice, scripted_device

PLATFORM_ID = "34020000002000000001"
DEVICE_ID = "34020000001320000001"
PASSWORD = "12345678"


@pytest.fixture
def events() -> list[PlatformEvent]:
    return []


@pytest.fixture
async def platform(events: list[PlatformEvent]) -> AsyncIterator[GbPlatform]:
    # A short T1 so that the retransmission test sees several tries within a second;
    # the query timeout is still generous next to a loopback round trip.
    gb = GbPlatform(platform_id=PLATFORM_ID, password=PASSWORD, host="127.0.0.1", port=0,
                    t1=0.05, transaction_timeout=1.0, query_timeout=2.0,
                    on_event=events.append)
    await gb.start()
    yield gb
    await gb.close()


async def registered(gb: GbPlatform, device: ScriptedDevice) -> None:
    response = await device.register(PASSWORD)
    assert response.status == 200, response
    assert gb.registrar.get(device.device_id) is not None


def sn_of(request: SipRequest) -> int:
    return manscdp.parse(request.body).sn


async def test_malformed_sip_is_counted_and_the_platform_keeps_serving(
        platform: GbPlatform) -> None:
    async with scripted_device(platform.address) as device:
        await device.send(b"REGISTER sip:x SIP/2.0\r\nVia: nonsense\r\n\r\n")
        await device.send(b"\x00\x01garbage\xff\r\n\r\n")
        await eventually(lambda: platform.errors["sip"] == 2, what="two bad datagrams counted")
        assert platform.last_error is not None and "bad request line" in platform.last_error
        await registered(platform, device)


async def test_tcp_garbage_closes_that_connection_only(platform: GbPlatform) -> None:
    async with scripted_device(platform.address, transport="tcp") as bad, \
            scripted_device(platform.address, transport="tcp",
                            device_id="34020000001320000002") as good:
        await bad.send(b"INVITE sip:x SIP/2.0\r\nContent-Length: lots\r\n\r\n")
        await eventually(lambda: bad.closed_by_peer, what="the bad connection to close")
        assert "bad Content-Length" in (platform.last_error or "")
        await registered(platform, good)


async def test_malformed_manscdp_gets_400(platform: GbPlatform) -> None:
    async with scripted_device(platform.address) as device:
        await registered(platform, device)
        await device.send(device.request("MESSAGE", b"<Notify><CmdType>Keepalive</CmdType>",
                                         to=PLATFORM_ID))
        response = await device.response()
        assert response.status == 400
        assert platform.errors["manscdp"] == 1
        assert "malformed XML" in (platform.last_error or "")
        assert platform.registrar.devices[DEVICE_ID].keepalives == 0


async def test_message_from_unregistered_device_is_refused(platform: GbPlatform) -> None:
    async with scripted_device(platform.address) as device:
        await device.send(device.request("MESSAGE", manscdp.keepalive(1, DEVICE_ID),
                                         to=PLATFORM_ID))
        response = await device.response()
        assert (response.status, response.reason) == (403, "Forbidden (not registered)")


async def test_keepalive_and_its_retransmission(platform: GbPlatform) -> None:
    async with scripted_device(platform.address) as device:
        await registered(platform, device)
        keepalive = device.request("MESSAGE", manscdp.keepalive(7, DEVICE_ID), to=PLATFORM_ID)
        await device.send(keepalive)
        first = await device.response()
        await device.send(keepalive)  # the same transaction again, as a lost 200 causes
        again = await device.response()
        assert first.status == again.status == 200
        assert first.to.tag == again.to.tag  # the same answer, not a new one
        assert platform.registrar.devices[DEVICE_ID].keepalives == 1


async def test_query_retransmits_over_udp_then_gives_up(platform: GbPlatform) -> None:
    async with scripted_device(platform.address) as device:
        await registered(platform, device)
        device.received_raw.clear()
        with pytest.raises(GbError) as caught:
            await platform.query_device_info(DEVICE_ID)
        assert str(caught.value).startswith("no answer from udp:127.0.0.1:")
        assert "to MESSAGE within 1 s" in str(caught.value)
        sent = [m for m in device.received_raw if m.startswith(b"MESSAGE ")]
        assert len(sent) >= 3 and len(set(sent)) == 1  # the same request, again and again


async def test_retransmission_reaches_a_device_that_lost_the_first(
        platform: GbPlatform) -> None:
    async with scripted_device(platform.address) as device:
        await registered(platform, device)
        query = asyncio.create_task(platform.query_device_status(DEVICE_ID))
        await device.request_for("MESSAGE")  # "lost": not answered
        request = await device.request_for("MESSAGE")
        await device.answer(request)
        body = manscdp.build("Response", "DeviceStatus", sn_of(request), DEVICE_ID,
                             [("Result", "OK"), ("Online", "ONLINE"), ("Status", "OK")])
        await device.send(device.request("MESSAGE", body, to=PLATFORM_ID))
        status = await query
        assert status.online and status.status_ok


async def test_device_that_accepts_but_never_answers(platform: GbPlatform) -> None:
    async with scripted_device(platform.address, transport="tcp") as device:
        await registered(platform, device)
        query = asyncio.create_task(platform.query_catalog(DEVICE_ID))
        await device.answer(await device.request_for("MESSAGE"))
        with pytest.raises(GbError, match=f"device {DEVICE_ID} did not answer the Catalog "
                                          "query within 2 s"):
            await query


async def test_multi_part_catalog_and_unmatched_sn(platform: GbPlatform) -> None:
    async with scripted_device(platform.address) as device:
        await registered(platform, device)
        query = asyncio.create_task(platform.query_catalog(DEVICE_ID))
        request = await device.request_for("MESSAGE")
        await device.answer(request)
        sn = sn_of(request)
        channels = [Channel(f"3402000000131000000{i}", f"通道{i}", status="ON")
                    for i in range(3)]
        parts = [manscdp.catalog_response(sn + 1, DEVICE_ID, 3, channels),  # wrong SN
                 manscdp.catalog_response(sn, DEVICE_ID, 3, channels[:2]),
                 manscdp.catalog_response(sn, DEVICE_ID, 3, channels[2:])]
        for part in parts:
            await device.send(device.request("MESSAGE", part, to=PLATFORM_ID))
        got = await query
        assert [c.name for c in got] == ["通道0", "通道1", "通道2"]
        assert platform.errors["unmatched"] == 1


async def test_query_refused_or_device_unknown(platform: GbPlatform) -> None:
    with pytest.raises(GbError, match=f"device {DEVICE_ID} is not registered"):
        await platform.query_catalog(DEVICE_ID)
    async with scripted_device(platform.address) as device:
        await registered(platform, device)
        command = asyncio.create_task(platform.ptz(DEVICE_ID, "34020000001310000001",
                                                   ptz_cmd.ptz(pan=1)))
        request = await device.request_for("MESSAGE")
        body = manscdp.parse(request.body)
        assert (body.cmd_type, body.device_id) == ("DeviceControl", "34020000001310000001")
        assert body.element.findtext("PTZCmd") == ptz_cmd.ptz(pan=1).hex()
        await device.answer(request, 488)
        with pytest.raises(GbError, match="refused the PTZ command: 488 Not Acceptable Here"):
            await command


CHANNEL = "34020000001310000001"
ANSWER_SDP = (b"v=0\r\no=34020000001310000001 0 0 IN IP4 127.0.0.1\r\ns=Play\r\n"
              b"c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 15060 RTP/AVP 96\r\n"
              b"a=sendonly\r\na=rtpmap:96 PS/90000\r\n")


def ok_with_sdp(device: ScriptedDevice, invite: SipRequest, sdp: bytes = ANSWER_SDP
                ) -> SipResponse:
    response = response_to(invite, 200, to_tag="dev", body=sdp, content_type="APPLICATION/SDP")
    response.headers.add("Contact", f"<sip:{CHANNEL}@{device.local[0]}:{device.local[1]}>")
    return response


async def test_device_that_never_answers_invite_then_answers_late(
        platform: GbPlatform) -> None:
    async with scripted_device(platform.address) as device:
        await registered(platform, device)
        device.received_raw.clear()
        with pytest.raises(GbError, match="did not answer the INVITE within 1 s"):
            await platform.invite(DEVICE_ID, CHANNEL, media_host="127.0.0.1", media_port=30000)
        invites = [m for m in device.received_raw if m.startswith(b"INVITE ")]
        assert len(invites) >= 3 and len(set(invites)) == 1
        invite = await device.request_for("INVITE")
        # Its 200 comes after all: the session nobody waits for is ACKed and ended.
        await device.send(ok_with_sdp(device, invite))
        ack = await device.request_for("ACK")
        bye = await device.request_for("BYE")
        assert ack.call_id == bye.call_id == invite.call_id
        assert bye.to.tag == "dev"
        await device.answer(bye)
        assert platform.sessions == {}


async def test_invite_refused_is_acked_in_its_transaction(platform: GbPlatform) -> None:
    async with scripted_device(platform.address, transport="tcp") as device:
        await registered(platform, device)
        call = asyncio.create_task(platform.invite(DEVICE_ID, CHANNEL, media_host="127.0.0.1",
                                                   media_port=30000))
        invite = await device.request_for("INVITE")
        await device.answer(invite, 100)
        await device.answer(invite, 486)
        with pytest.raises(GbError, match=f"device {DEVICE_ID} channel {CHANNEL} refused to "
                                          "play: 486 Busy Here"):
            await call
        ack = await device.request_for("ACK")
        assert ack.vias[0].branch == invite.vias[0].branch  # same transaction (17.1.1.3)
        assert ack.to.tag == "dev" and ack.cseq == (invite.cseq[0], "ACK")
        await device.answer(invite, 486)  # its retransmission: ACKed again
        assert (await device.request_for("ACK")).vias[0].branch == invite.vias[0].branch


async def test_invite_proceeding_but_never_final(platform: GbPlatform) -> None:
    async with scripted_device(platform.address) as device:
        await registered(platform, device)
        call = asyncio.create_task(platform.invite(DEVICE_ID, CHANNEL, media_host="127.0.0.1",
                                                   media_port=30000, timeout=1.5))
        await device.answer(await device.request_for("INVITE"), 100)
        with pytest.raises(GbError, match="took it but did not answer the INVITE within 1.5 s"):
            await call


async def test_session_the_device_ends_and_its_200_retransmitted(
        platform: GbPlatform, events: list[PlatformEvent]) -> None:
    async with scripted_device(platform.address) as device:
        await registered(platform, device)
        call = asyncio.create_task(platform.invite(DEVICE_ID, CHANNEL, media_host="127.0.0.1",
                                                   media_port=30000))
        invite = await device.request_for("INVITE")
        ok = ok_with_sdp(device, invite)
        await device.send(ok)
        session = await call
        first_ack = await device.request_for("ACK")
        assert first_ack.uri == f"sip:{CHANNEL}@{device.local[0]}:{device.local[1]}"
        await device.send(ok)  # our ACK "lost": the device sends its 200 again
        assert (await device.request_for("ACK")).to_bytes() == first_ack.to_bytes()
        assert session.answer.port == 15060
        bye = device.request("BYE", to=CHANNEL)
        bye.headers.set("Call-ID", invite.call_id)
        await device.send(bye)
        assert (await device.response()).status == 200
        assert events[-1] == SessionEnded(DEVICE_ID, CHANNEL, invite.call_id)
        assert platform.sessions == {}
        await device.send(device.request("BYE", to=CHANNEL))  # a dialog never made
        assert (await device.response()).status == 481


async def test_unusable_sdp_answer_ends_the_session(platform: GbPlatform) -> None:
    async with scripted_device(platform.address) as device:
        await registered(platform, device)
        call = asyncio.create_task(platform.invite(DEVICE_ID, CHANNEL, media_host="127.0.0.1",
                                                   media_port=30000))
        invite = await device.request_for("INVITE")
        await device.send(ok_with_sdp(device, invite, b"v=0\r\n"))
        await device.request_for("ACK")
        bye = await device.request_for("BYE")
        await device.answer(bye)
        with pytest.raises(GbError, match="answered with unusable SDP: answer has no m= line"):
            await call
        assert platform.sessions == {}
