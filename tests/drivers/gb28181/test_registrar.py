"""The registry's rules on a clock the test moves: expiry, missed keepalives, lockout.

The registrar does no I/O, so these feed it parsed REGISTERs directly; the same paths
over real sockets and against SIPp are in test_platform_*.
"""

from __future__ import annotations

import logging

import pytest

from drivers.gb28181.digest import digest_response, parse_params
from drivers.gb28181.manscdp import Channel
from drivers.gb28181.registrar import (
    AuthRefused,
    ChannelsChanged,
    DeviceEvent,
    DeviceOffline,
    DeviceOnline,
    Registrar,
)
from drivers.gb28181.sip_message import SipRequest, SipResponse, parse_message
from drivers.gb28181.sip_transport import Peer

DEVICE = "34020000001320000001"
PEER = Peer("udp", "10.64.3.17", 5060)
URI = "sip:34020000002000000001@3402000000"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def register_request(device: str = DEVICE, *, authorization: str | None = None,
                     expires: str | None = "3600") -> SipRequest:
    lines = [f"REGISTER {URI} SIP/2.0",
             "Via: SIP/2.0/UDP 10.64.3.17:5060;rport;branch=z9hG4bK1",
             f"From: <sip:{device}@3402000000>;tag=1", f"To: <sip:{device}@3402000000>",
             "Call-ID: reg-1", "CSeq: 1 REGISTER",
             f"Contact: <sip:{device}@10.64.3.17:5060>"]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    message = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(message, SipRequest)
    return message


def authorization(challenge: SipResponse, password: str, device: str = DEVICE) -> str:
    params = parse_params(challenge.header("WWW-Authenticate"))
    response = digest_response(username=device, realm=params["realm"], password=password,
                               method="REGISTER", uri=URI, nonce=params["nonce"])
    return (f'Digest username="{device}", realm="{params["realm"]}", '
            f'nonce="{params["nonce"]}", uri="{URI}", response="{response}"')


class Fixture:
    def __init__(self, **options: object) -> None:
        self.clock = Clock()
        self.events: list[DeviceEvent] = []
        self.registrar = Registrar(realm="3402000000", password="12345678",
                                   on_event=self.events.append, clock=self.clock,
                                   keepalive_interval=60, **options)  # type: ignore[arg-type]

    def register(self, password: str = "12345678", device: str = DEVICE,
                 expires: str | None = "3600", peer: Peer = PEER) -> SipResponse:
        challenge = self.registrar.register(register_request(device, expires=expires), peer)
        assert challenge.status == 401
        return self.registrar.register(
            register_request(device, expires=expires,
                             authorization=authorization(challenge, password, device)), peer)


def test_register_answers_date_and_expires_and_goes_online() -> None:
    f = Fixture()
    response = f.register()
    assert response.status == 200
    assert response.headers.get("Expires") == "3600"
    date = response.headers.get("Date") or ""
    assert len(date) == 23 and date[10] == "T" and date[19] == "."  # 2026-12-02T09:00:00.000
    assert response.to.tag
    assert f.events == [DeviceOnline(DEVICE, PEER)]


def test_unregister_and_expiry() -> None:
    f = Fixture()
    f.register()
    assert f.register(expires="0").status == 200
    assert f.registrar.get(DEVICE) is None
    assert f.events[-1] == DeviceOffline(DEVICE, "unregistered")
    f.register(expires="120")
    f.clock.now += 119
    f.registrar.keepalive(DEVICE)
    f.registrar.sweep()
    assert f.registrar.get(DEVICE) is not None
    f.clock.now += 2
    f.registrar.sweep()
    assert f.registrar.get(DEVICE) is None
    assert f.events[-1] == DeviceOffline(DEVICE, "registration expired")


def test_offline_after_three_missed_keepalives_and_back_on_the_next() -> None:
    f = Fixture()
    f.register()
    for _ in range(5):
        f.clock.now += 60
        assert f.registrar.keepalive(DEVICE)
        f.registrar.sweep()
    assert f.registrar.devices[DEVICE].online
    f.clock.now += 180  # three intervals without one: not yet more than three missed
    f.registrar.sweep()
    assert f.registrar.devices[DEVICE].online
    f.clock.now += 1
    f.registrar.sweep()
    assert not f.registrar.devices[DEVICE].online
    assert f.events[-1] == DeviceOffline(DEVICE, "3 keepalives missed")
    f.registrar.sweep()
    assert sum(isinstance(e, DeviceOffline) for e in f.events) == 1  # said once
    assert f.registrar.keepalive(DEVICE)
    assert f.events[-1:] == [DeviceOnline(DEVICE, PEER)]
    assert f.registrar.devices[DEVICE].keepalives == 6


def test_keepalive_from_unregistered_device() -> None:
    assert not Fixture().registrar.keepalive(DEVICE)


def test_wrong_password_lockout_and_its_end(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="drivers.gb28181")
    f = Fixture(max_auth_failures=3, lockout=300)
    statuses = [f.register("wrong").status for _ in range(2)]
    challenge = f.registrar.register(register_request(), PEER)
    third = f.registrar.register(
        register_request(authorization=authorization(challenge, "wrong")), PEER)
    assert statuses == [401, 401] and third.status == 403
    # Locked out: even the right password is refused, without a new challenge.
    assert f.registrar.register(register_request(), PEER).status == 403
    assert f.registrar.auth_failures(DEVICE) == 3
    assert [e for e in f.events if isinstance(e, AuthRefused)] == [AuthRefused(DEVICE, PEER, 3)]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and DEVICE in warnings[0].getMessage()
    f.clock.now += 301
    assert f.register().status == 200
    assert f.registrar.auth_failures(DEVICE) == 0


def test_stale_nonce_is_challenged_not_counted() -> None:
    f = Fixture()
    challenge = f.registrar.register(register_request(), PEER)
    f.clock.now += 3600
    again = f.registrar.register(
        register_request(authorization=authorization(challenge, "12345678")), PEER)
    assert again.status == 401
    assert "stale=true" in again.header("WWW-Authenticate")
    assert f.registrar.auth_failures(DEVICE) == 0


def test_per_device_password_and_unknown_device() -> None:
    f = Fixture()
    f.registrar.password = None
    f.registrar.device_passwords = {DEVICE: "own"}
    assert f.register("own").status == 200
    unknown = f.registrar.register(register_request("34020000001320000009"), PEER)
    assert (unknown.status, unknown.reason) == (403, "Forbidden (unknown device)")


@pytest.mark.parametrize(("authorization_value", "reason"), [
    ("Basic abc", "not a Digest header"),
    ('Digest username="x"', "lacks"),
])
def test_unreadable_authorization_counts_as_a_failure(
        authorization_value: str, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="drivers.gb28181")
    f = Fixture()
    response = f.registrar.register(register_request(authorization=authorization_value), PEER)
    assert response.status == 401
    assert f.registrar.auth_failures(DEVICE) == 1
    assert reason in caplog.text


def test_bad_expires_and_no_device_id() -> None:
    f = Fixture()
    assert f.register(expires="soon").status == 400
    message = register_request()
    message.headers.set("From", "<sip:3402000000>;tag=1")
    assert f.registrar.register(message, PEER).reason == "Bad Request (no device id in From)"


def test_channels_changed_only_on_change() -> None:
    f = Fixture()
    f.register()
    channels = [Channel("34020000001310000001", "北门")]
    f.registrar.set_channels(DEVICE, channels)
    f.registrar.set_channels(DEVICE, channels)
    assert [e for e in f.events if isinstance(e, ChannelsChanged)] == [
        ChannelsChanged(DEVICE, tuple(channels))]
