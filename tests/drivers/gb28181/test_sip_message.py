"""SIP parsing and serialising: device samples, compact and folded headers, bad input."""

from __future__ import annotations

import pytest

from drivers.gb28181.sip_message import (
    Headers,
    NameAddr,
    SipParseError,
    SipRequest,
    SipResponse,
    StreamFramer,
    parse_message,
    response_to,
)

# A REGISTER as a Hikvision-style dome sends it after its first 401 (LF-only lines are
# normalised below to what the wire carries).
HIK_REGISTER = (
    b"REGISTER sip:34020000002000000001@3402000000 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.64.3.17:5060;rport;branch=z9hG4bK1848935211\r\n"
    b"From: <sip:34020000001320000001@3402000000>;tag=1105395452\r\n"
    b"To: <sip:34020000001320000001@3402000000>\r\n"
    b"Call-ID: 1571357496\r\n"
    b"CSeq: 2 REGISTER\r\n"
    b"Contact: <sip:34020000001320000001@10.64.3.17:5060>\r\n"
    b'Authorization: Digest username="34020000001320000001", realm="3402000000", '
    b'nonce="0123", uri="sip:34020000002000000001@3402000000", '
    b'response="8d5c0b7b1e0b8a2f4e0b8a2f4e0b8a2f", algorithm=MD5\r\n'
    b"Max-Forwards: 70\r\n"
    b"User-Agent: IP Camera\r\n"
    b"Expires: 3600\r\n"
    b"Content-Length: 0\r\n\r\n"
)

# A Keepalive MESSAGE in compact form, with a folded Via and lower-case names.
COMPACT_KEEPALIVE = (
    b"MESSAGE sip:34020000002000000001@3402000000 SIP/2.0\r\n"
    b"v: SIP/2.0/TCP 10.64.3.17:5060\r\n"
    b" ;branch=z9hG4bK77\r\n"
    b"f: <sip:34020000001320000001@3402000000>;tag=9\r\n"
    b"t: <sip:34020000002000000001@3402000000>\r\n"
    b"i: ka-1\r\n"
    b"cseq: 20 MESSAGE\r\n"
    b"c: Application/MANSCDP+xml\r\n"
    b"l: 11\r\n"
    b"\r\n"
    b"<Notify/>\r\nTRAILING"
)


def test_device_register_sample() -> None:
    message = parse_message(HIK_REGISTER)
    assert isinstance(message, SipRequest)
    assert message.method == "REGISTER"
    assert message.from_.user == "34020000001320000001"
    assert message.from_.tag == "1105395452"
    assert message.to.tag is None
    assert message.cseq == (2, "REGISTER")
    [via] = message.vias
    assert (via.transport, via.host, via.port, via.branch) == (
        "UDP", "10.64.3.17", 5060, "z9hG4bK1848935211")
    assert "rport" in via.params
    assert message.headers.get("expires") == "3600"
    assert (message.headers.get("AUTHORIZATION") or "").startswith("Digest ")
    assert message.body == b""


def test_compact_and_folded_headers() -> None:
    message = parse_message(COMPACT_KEEPALIVE)
    assert message.call_id == "ka-1"
    assert message.vias[0].transport == "TCP"
    assert message.vias[0].branch == "z9hG4bK77"
    assert message.content_type == "application/manscdp+xml"
    assert message.cseq == (20, "MESSAGE")
    assert message.body == b"<Notify/>\r\n"  # cut at Content-Length, not at the datagram end
    # Written back with full names.
    text = message.to_bytes().decode()
    assert "\r\nCall-ID: ka-1\r\n" in text and "\r\nContent-Length: 11\r\n" in text


def test_several_vias_in_one_line_and_in_several() -> None:
    raw = HIK_REGISTER.replace(
        b"Via: SIP/2.0/UDP 10.64.3.17:5060;rport;branch=z9hG4bK1848935211\r\n",
        b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa, SIP/2.0/UDP [2001:db8::1]:5070"
        b";branch=z9hG4bKb\r\nVia: SIP/2.0/TCP proxy;branch=z9hG4bKc\r\n")
    vias = parse_message(raw).vias
    assert [(v.host, v.port, v.branch) for v in vias] == [
        ("10.0.0.1", 5060, "z9hG4bKa"), ("2001:db8::1", 5070, "z9hG4bKb"),
        ("proxy", None, "z9hG4bKc")]


def test_response_round_trip_keeps_vias_and_adds_to_tag() -> None:
    request = parse_message(HIK_REGISTER)
    assert isinstance(request, SipRequest)
    response = response_to(request, 401, to_tag="abc")
    again = parse_message(response.to_bytes())
    assert isinstance(again, SipResponse)
    assert (again.status, again.reason) == (401, "Unauthorized")
    assert again.to.tag == "abc"
    assert again.call_id == "1571357496"
    assert again.vias[0].branch == "z9hG4bK1848935211"


def test_name_addr_forms() -> None:
    plain = NameAddr.parse("sip:34020000001320000001@3402000000;tag=5")
    assert (plain.uri, plain.tag, plain.user) == (
        "sip:34020000001320000001@3402000000", "5", "34020000001320000001")
    named = NameAddr.parse('"北门" <sip:1@h:5060;transport=tcp>;tag=x')
    assert (named.display, named.uri, named.tag) == ("北门", "sip:1@h:5060;transport=tcp", "x")


def test_gb2312_display_name_in_header_is_read() -> None:
    raw = HIK_REGISTER.replace(b"From: <", '"北门球机" <'.encode("gb2312"), 1)
    raw = raw.replace('"北门球机" <'.encode("gb2312"), 'From: "北门球机" <'.encode("gb2312"), 1)
    assert parse_message(raw).from_.display == "北门球机"


def test_headers_set_replaces_every_copy() -> None:
    headers = Headers([("Via", "a"), ("v", "b"), ("To", "x")])
    headers.set("VIA", "c")
    assert list(headers) == [("Via", "c"), ("To", "x")]


def _reason(value: object) -> str | None:
    return value if isinstance(value, str) else "input"


@pytest.mark.parametrize(("raw", "reason"), [
    (b"", "no blank line"),
    (b"\r\n\r\n", "empty message"),
    (b"HELLO\r\n\r\n", "bad request line"),
    (b"REGISTER sip:x SIP/3.0\r\n\r\n", "not SIP/2.0"),
    (b"SIP/2.0 99 Odd\r\n\r\n", "bad status line"),
    (HIK_REGISTER.replace(b"Call-ID: 1571357496\r\n", b""), "missing Call-ID"),
    (HIK_REGISTER.replace(b"CSeq: 2 REGISTER", b"CSeq: two REGISTER"), "bad CSeq"),
    (HIK_REGISTER.replace(b"CSeq: 2 REGISTER", b"CSeq: 2 INVITE"), "does not match"),
    (HIK_REGISTER.replace(b"Via: SIP/2.0/UDP", b"Via: HTTP/1.1"), "bad Via"),
    (HIK_REGISTER.replace(b"10.64.3.17:5060;rport", b"10.64.3.17:99999;rport"),
     "bad port"),
    (HIK_REGISTER.replace(b"From: <sip:", b"From: <nothing"), "bad URI in From"),
    (HIK_REGISTER.replace(b"3402000000>;tag=1105395452", b"3402000000;tag=1"),
     "unclosed"),
    (HIK_REGISTER.replace(b"Content-Length: 0", b"Content-Length: 40"),
     "Content-Length says"),
    (HIK_REGISTER.replace(b"Content-Length: 0", b"Content-Length: -1"),
     "bad Content-Length"),
    (HIK_REGISTER.replace(b"Max-Forwards: 70", b"Max Forwards 70"), "bad header line"),
    (b"REGISTER sip:x SIP/2.0\r\n folded\r\n\r\n", "continuation line"),
    (HIK_REGISTER + b"x" * 70000, "over the"),
], ids=_reason)
def test_bad_input_is_one_clear_error(raw: bytes, reason: str) -> None:
    with pytest.raises(SipParseError) as caught:
        parse_message(raw)
    message = str(caught.value)
    assert reason in message
    assert "\n" not in message


def test_stream_framer_cuts_by_content_length_across_chunks() -> None:
    framer = StreamFramer()
    stream = b"\r\n\r\n" + COMPACT_KEEPALIVE.replace(b"TRAILING", b"") + HIK_REGISTER
    got: list[SipRequest | SipResponse] = []
    for i in range(0, len(stream), 7):  # in small pieces, as TCP may deliver them
        got.extend(framer.feed(stream[i:i + 7]))
    assert [(m.call_id, m.body) for m in got] == [("ka-1", b"<Notify/>\r\n"),
                                                  ("1571357496", b"")]


@pytest.mark.parametrize(("stream", "reason"), [
    (HIK_REGISTER.replace(b"Content-Length: 0\r\n", b""), "missing Content-Length"),
    (HIK_REGISTER.replace(b"Content-Length: 0", b"Content-Length: 999999"), "over the"),
    (b"x" * 70000, "headers longer"),
], ids=_reason)
def test_stream_framer_refuses(stream: bytes, reason: str) -> None:
    with pytest.raises(SipParseError, match=reason):
        StreamFramer().feed(stream)
