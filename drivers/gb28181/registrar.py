"""The platform's registry of GB/T 28181 devices (GB/T 28181 §9.1, §9.6).

REGISTER is challenged (401) and verified by MD5 digest; a good one is answered 200
with Expires and a Date the device sets its clock from. Expires: 0 unregisters.
A registration lapses at its expiry; a registered device that sends no Keepalive for
`keepalive_misses` intervals is offline until its next one. Wrong digests count per
device id: after `max_auth_failures` it is answered 403 (logged once) until `lockout`
seconds pass. Changes go out as events through one callback.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from drivers.gb28181.digest import Credentials, DigestAuthority, DigestError
from drivers.gb28181.manscdp import Channel, DeviceInfo
from drivers.gb28181.sip_message import (
    NameAddr,
    SipParseError,
    SipRequest,
    SipResponse,
    new_tag,
    response_to,
)
from drivers.gb28181.sip_transport import Peer

log = logging.getLogger(__name__)

DEFAULT_EXPIRES = 3600
MAX_EXPIRES = 86400
KEEPALIVE_INTERVAL = 60.0
"""Seconds between a device's Keepalive messages, the standard's default (§9.6)."""
KEEPALIVE_MISSES = 3


@dataclass
class Device:
    """A registered device: where it is reached, until when, and what it has told us."""

    device_id: str
    peer: Peer
    contact: str
    registered_at: float
    expires_at: float
    last_seen: float
    online: bool = True
    keepalives: int = 0
    channels: dict[str, Channel] = field(default_factory=dict)
    info: DeviceInfo | None = None


@dataclass(frozen=True)
class DeviceOnline:
    device_id: str
    peer: Peer


@dataclass(frozen=True)
class DeviceOffline:
    device_id: str
    reason: str


@dataclass(frozen=True)
class ChannelsChanged:
    device_id: str
    channels: tuple[Channel, ...]


@dataclass(frozen=True)
class AuthRefused:
    """A device was refused (403) after too many wrong digests."""

    device_id: str
    peer: Peer
    failures: int


DeviceEvent = DeviceOnline | DeviceOffline | ChannelsChanged | AuthRefused


@dataclass
class _Failures:
    count: int = 0
    since: float = 0.0
    logged: bool = False


def gb_date(when: float) -> str:
    """The Date value GB/T 28181 devices set their clocks from: local time, milliseconds."""
    stamp = datetime.datetime.fromtimestamp(when)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}"


class Registrar:
    """REGISTER, Keepalive and expiry for every device; no I/O of its own."""

    def __init__(self, *, realm: str, password: str | None = None,
                 device_passwords: Mapping[str, str] | None = None,
                 on_event: Callable[[DeviceEvent], None] | None = None,
                 keepalive_interval: float = KEEPALIVE_INTERVAL,
                 keepalive_misses: int = KEEPALIVE_MISSES, max_auth_failures: int = 3,
                 lockout: float = 300.0, qop: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        if keepalive_interval <= 0 or keepalive_misses < 1 or max_auth_failures < 1:
            raise ValueError("keepalive_interval, keepalive_misses and max_auth_failures "
                             "must be positive")
        self.realm = realm
        self.password = password
        self.device_passwords = dict(device_passwords or {})
        self.on_event = on_event
        self.keepalive_interval = keepalive_interval
        self.keepalive_misses = keepalive_misses
        self.max_auth_failures = max_auth_failures
        self.lockout = lockout
        self._clock = clock
        self.authority = DigestAuthority(realm, qop=qop, clock=clock)
        self.devices: dict[str, Device] = {}
        self._failures: dict[str, _Failures] = {}

    def _emit(self, event: DeviceEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def password_for(self, device_id: str) -> str | None:
        return self.device_passwords.get(device_id, self.password)

    def auth_failures(self, device_id: str) -> int:
        entry = self._failures.get(device_id)
        return entry.count if entry is not None else 0

    def get(self, device_id: str) -> Device | None:
        return self.devices.get(device_id)

    # -- REGISTER --------------------------------------------------------------------------

    def register(self, request: SipRequest, peer: Peer) -> SipResponse:
        """The response to a REGISTER (401, 403, 400 or 200), state updated and events out."""
        try:
            device_id = request.from_.user
        except SipParseError as exc:
            return response_to(request, 400, f"Bad Request ({exc})", to_tag=new_tag())
        if not device_id:
            return response_to(request, 400, "Bad Request (no device id in From)",
                               to_tag=new_tag())
        password = self.password_for(device_id)
        if password is None:
            log.warning("REGISTER from unknown device %s at %s refused: no password for it",
                        device_id, peer)
            return response_to(request, 403, "Forbidden (unknown device)", to_tag=new_tag())
        now = self._clock()
        failures = self._failures.get(device_id)
        if failures is not None and now - failures.since > self.lockout:
            del self._failures[device_id]
            failures = None
        if failures is not None and failures.count >= self.max_auth_failures:
            return response_to(request, 403, "Forbidden", to_tag=new_tag())
        authorization = request.headers.get("Authorization")
        if authorization is None:
            return self._challenge(request)
        try:
            credentials = Credentials.parse(authorization)
        except DigestError as exc:
            return self._failed(request, peer, device_id, f"unreadable Authorization: {exc}")
        verdict = self.authority.verify(credentials, password=password, method="REGISTER")
        if verdict == "stale":
            return self._challenge(request, stale=True)
        if verdict == "wrong":
            return self._failed(request, peer, device_id, "wrong digest")
        self._failures.pop(device_id, None)
        return self._accept(request, peer, device_id, now)

    def _challenge(self, request: SipRequest, *, stale: bool = False) -> SipResponse:
        response = response_to(request, 401, to_tag=new_tag())
        response.headers.add("WWW-Authenticate", self.authority.challenge(stale=stale))
        return response

    def _failed(self, request: SipRequest, peer: Peer, device_id: str,
                reason: str) -> SipResponse:
        entry = self._failures.setdefault(device_id, _Failures(since=self._clock()))
        entry.count += 1
        if entry.count < self.max_auth_failures:
            log.info("REGISTER from %s at %s: %s (%d of %d tries)", device_id, peer, reason,
                     entry.count, self.max_auth_failures)
            return self._challenge(request)
        if not entry.logged:
            entry.logged = True
            entry.since = self._clock()  # the lockout runs from the refusal
            log.warning("device %s at %s refused after %d failed authentications (%s); "
                        "check its password", device_id, peer, entry.count, reason)
            self._emit(AuthRefused(device_id, peer, entry.count))
        return response_to(request, 403, "Forbidden", to_tag=new_tag())

    def _accept(self, request: SipRequest, peer: Peer, device_id: str,
                now: float) -> SipResponse:
        contact_text = request.headers.get("Contact") or ""
        expires = _expires(request, contact_text)
        if expires is None:
            return response_to(request, 400, "Bad Request (bad Expires)", to_tag=new_tag())
        response = response_to(request, 200, to_tag=new_tag())
        response.headers.add("Date", gb_date(now))
        if expires == 0:
            response.headers.add("Expires", "0")
            if self.devices.pop(device_id, None) is not None:
                log.info("device %s unregistered", device_id)
                self._emit(DeviceOffline(device_id, "unregistered"))
            return response
        expires = min(expires, MAX_EXPIRES)
        if contact_text:
            response.headers.add("Contact", contact_text.split(";expires")[0])
        response.headers.add("Expires", str(expires))
        device = self.devices.get(device_id)
        if device is None:
            device = Device(device_id, peer, contact_text, now, now + expires, now)
            self.devices[device_id] = device
            log.info("device %s registered from %s for %d s", device_id, peer, expires)
            self._emit(DeviceOnline(device_id, peer))
            return response
        came_back = not device.online or device.peer != peer
        device.peer, device.contact = peer, contact_text
        device.registered_at, device.expires_at, device.last_seen = now, now + expires, now
        if came_back:
            device.online = True
            log.info("device %s online again from %s", device_id, peer)
            self._emit(DeviceOnline(device_id, peer))
        return response

    # -- Keepalive, channels, expiry ------------------------------------------------------

    def keepalive(self, device_id: str) -> bool:
        """Note a Keepalive; False if the device is not registered (it should re-register).

        The peer a keepalive came from is not taken as the device's new address: keepalives
        are not authenticated, and a NAT rebinding is followed by a new REGISTER.
        """
        device = self.devices.get(device_id)
        if device is None:
            return False
        device.last_seen = self._clock()
        device.keepalives += 1
        if not device.online:
            device.online = True
            log.info("device %s online again (keepalive)", device_id)
            self._emit(DeviceOnline(device_id, device.peer))
        return True

    def set_channels(self, device_id: str, channels: list[Channel]) -> None:
        device = self.devices.get(device_id)
        if device is None:
            return
        fresh = {c.channel_id: c for c in channels}
        if fresh != device.channels:
            device.channels = fresh
            self._emit(ChannelsChanged(device_id, tuple(fresh.values())))

    def sweep(self) -> None:
        """Lapse expired registrations and mark silent devices offline; call it often."""
        now = self._clock()
        silence = self.keepalive_interval * self.keepalive_misses
        # Forget old failures, so that made-up device ids cannot grow the table for ever.
        for device_id, failures in list(self._failures.items()):
            if now - failures.since > self.lockout:
                del self._failures[device_id]
        for device_id, device in list(self.devices.items()):
            if now >= device.expires_at:
                del self.devices[device_id]
                log.info("device %s: registration expired", device_id)
                if device.online:
                    self._emit(DeviceOffline(device_id, "registration expired"))
            elif device.online and now - device.last_seen > silence:
                device.online = False
                log.info("device %s offline: %d keepalives missed", device_id,
                         self.keepalive_misses)
                self._emit(DeviceOffline(
                    device_id, f"{self.keepalive_misses} keepalives missed"))


def _expires(request: SipRequest, contact_text: str) -> int | None:
    """Expires from the header, else the Contact's parameter, else the default."""
    text = request.headers.get("Expires")
    if text is None and contact_text and contact_text.strip() != "*":
        try:
            text = NameAddr.parse(contact_text, "Contact").params.get("expires")
        except SipParseError:
            return None
    if text is None:
        return DEFAULT_EXPIRES
    text = text.strip()
    return int(text) if text.isdigit() else None
