"""The GB/T 28181 SDP: the offer's lines, SSRCs, and answers as devices write them."""

from __future__ import annotations

import pytest

from drivers.gb28181.gb_sdp import (
    MediaTransport,
    Offer,
    SdpError,
    answer_to,
    live_ssrc,
    parse_answer,
    parse_offer,
)


def test_live_ssrc() -> None:
    assert live_ssrc("3402000000", 7) == "0200000007"
    assert live_ssrc("4401060000", 1234) == "0106001234"
    with pytest.raises(SdpError, match="outside 0..9999"):
        live_ssrc("3402000000", 10000)
    with pytest.raises(SdpError, match="does not start with 8 digits"):
        live_ssrc("edge", 1)


def test_udp_offer() -> None:
    text = Offer("34020000002000000001", "34020000001310000001", "10.0.0.5", 30000,
                 "0200000007").to_bytes().decode()
    assert text.split("\r\n") == [
        "v=0", "o=34020000002000000001 0 0 IN IP4 10.0.0.5", "s=Play",
        "u=34020000001310000001:0", "c=IN IP4 10.0.0.5", "t=0 0",
        "m=video 30000 RTP/AVP 96", "a=recvonly", "a=rtpmap:96 PS/90000", "y=0200000007", ""]


@pytest.mark.parametrize(("transport", "setup"), [("tcp-passive", "passive"),
                                                  ("tcp-active", "active")])
def test_tcp_offers(transport: str, setup: str) -> None:
    text = Offer("34020000002000000001", "c", "10.0.0.5", 30000, "0200000007",
                 transport).to_bytes().decode()  # type: ignore[arg-type]
    assert "m=video 30000 TCP/RTP/AVP 96\r\n" in text
    assert f"a=setup:{setup}\r\na=connection:new\r\n" in text


DEVICE_ANSWER = (b"v=0\r\no=34020000001310000001 0 0 IN IP4 192.168.1.64\r\ns=Play\r\n"
                 b"c=IN IP4 192.168.1.64\r\nt=0 0\r\nm=video 15060 RTP/AVP 96\r\n"
                 b"a=sendonly\r\na=rtpmap:96 PS/90000\r\ny=0200000007\r\nf=\r\n")


def test_device_answers() -> None:
    answer = parse_answer(DEVICE_ANSWER)
    assert (answer.host, answer.port, answer.transport, answer.ssrc) == (
        "192.168.1.64", 15060, "udp", "0200000007")
    assert answer.ssrc_value == 200000007
    assert answer.payloads == {96: "PS/90000"}
    tcp = parse_answer(DEVICE_ANSWER.replace(b"RTP/AVP", b"TCP/RTP/AVP")
                       .replace(b"a=sendonly", b"a=setup:active"))
    assert tcp.transport == "tcp-passive"  # the device connects; we listen
    tcp = parse_answer(DEVICE_ANSWER.replace(b"RTP/AVP", b"TCP/RTP/AVP")
                       .replace(b"a=sendonly", b"a=setup:passive"))
    assert tcp.transport == "tcp-active"
    # LF line ends, and no y= (the device keeps ours).
    assert parse_answer(DEVICE_ANSWER.replace(b"\r\n", b"\n")
                        .replace(b"y=0200000007\n", b"")).ssrc is None


@pytest.mark.parametrize(("body", "reason"), [
    (b"v=0\r\nc=IN IP4 1.2.3.4\r\n", "no m= line"),
    (DEVICE_ANSWER.replace(b"c=IN IP4 192.168.1.64\r\n", b""), "no c= line"),
    (DEVICE_ANSWER.replace(b"m=video 15060", b"m=audio 15060"), "bad m= line"),
    (DEVICE_ANSWER.replace(b"RTP/AVP", b"RTP/SAVP"), "unsupported media profile"),
    (DEVICE_ANSWER.replace(b"y=0200000007", b"y=02x"), "bad y= SSRC"),
    (DEVICE_ANSWER.replace(b"c=IN IP4 192.168.1.64", b"c=IN"), "bad c= line"),
])
def test_bad_answers(body: bytes, reason: str) -> None:
    with pytest.raises(SdpError, match=reason):
        parse_answer(body)


@pytest.mark.parametrize("transport", ["udp", "tcp-passive", "tcp-active"])
def test_a_device_reads_the_offer_and_its_answer_reads_back(transport: MediaTransport) -> None:
    offer = Offer(platform_id="34020000002000000001", channel_id="34020000001310000001",
                  host="10.0.0.5", port=30000, ssrc=live_ssrc("3402000000", 7),
                  transport=transport)
    seen = parse_offer(offer.to_bytes())
    assert (seen.host, seen.port, seen.ssrc, seen.transport, seen.payload) == \
        ("10.0.0.5", 30000, offer.ssrc, transport, 96)
    back = parse_answer(answer_to(seen, channel_id=offer.channel_id, host="10.0.0.9",
                                  port=40000))
    assert (back.host, back.port, back.ssrc) == ("10.0.0.9", 40000, offer.ssrc)
    # The device takes the other TCP role, which the platform reads as its own again.
    assert back.transport == transport


@pytest.mark.parametrize(("body", "why"), [
    (b"v=0\r\ns=Playback\r\nc=IN IP4 1.2.3.4\r\nm=video 1 RTP/AVP 96\r\n"
     b"a=rtpmap:96 PS/90000\r\ny=0100000001\r\n", "only live Play"),
    (b"v=0\r\ns=Play\r\nc=IN IP4 1.2.3.4\r\nm=video 1 RTP/AVP 98\r\n"
     b"a=rtpmap:98 H264/90000\r\ny=0100000001\r\n", "no PS/90000"),
    (b"v=0\r\ns=Play\r\nc=IN IP4 1.2.3.4\r\nm=video 1 RTP/AVP 96\r\n"
     b"a=rtpmap:96 PS/90000\r\n", "no y= SSRC"),
])
def test_an_offer_a_device_cannot_play_is_named(body: bytes, why: str) -> None:
    with pytest.raises(SdpError, match=why):
        parse_offer(body)
