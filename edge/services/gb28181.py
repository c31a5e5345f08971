"""`edge run gb28181`: the vehicle as the GB/T 28181 platform its dome cameras register to.

Runs `drivers.gb28181.platform.GbPlatform` (SIP over UDP and TCP on `[gb28181]
listen`) and puts what it learns on the bus:

- ``gb/<device>/status`` (:class:`GbDeviceStatus`, state) at 1 Hz and at once on a
  change: online, offline with the reason (keepalives missed, registration expired,
  unregistered) or refused (wrong password), where its SIP comes from, its last
  keepalive, DeviceInfo, and the channels of its Catalog, both asked after each
  registration. Configured devices show from the start, as not registered yet.
- ``gb/platform/info`` (:class:`GbPlatformInfo`, state): the media settings a
  camera process needs to receive a channel (`main = { gb28181 = "dev/chan" }`).
- ``alert/gb/<device>``: registered, offline, back online, refused.

Requests to ``gb28181``: :class:`GbInvite` (a channel's live video to a host and
port: the session id and the device's answer), :class:`GbBye` (end a session),
:class:`GbPtzCommand`, each answered with a :class:`Reply` within the device's
answer time (`request_timeout_s`), and :class:`GbAdopt` (a channel made a camera:
its `[[cameras]]` table appended to the config file this service was started with,
`edge.config.camera_append`). PTZ commands and adoptions are also told to everyone
on ``event/command``; an adoption's event (action `adopt`, the camera id as its
subject) is what the demo starts the new camera on.

Passwords are secret references read when the service is built: an unreadable one
is a one-line config error before anything listens.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from drivers.gb28181 import ptz_cmd
from drivers.gb28181.gb_sdp import MediaTransport
from drivers.gb28181.manscdp import Channel
from drivers.gb28181.platform import GbError, GbPlatform, PlatformEvent, SessionEnded
from drivers.gb28181.ptz_cmd import PtzCmd, PtzCmdError
from drivers.gb28181.registrar import AuthRefused, ChannelsChanged, DeviceOffline, DeviceOnline
from edge.bus import topics
from edge.bus.envelope import Envelope
from edge.bus.messages import (
    GB_PTZ_ACTIONS,
    Alert,
    CommandEvent,
    GbAdopt,
    GbBye,
    GbChannel,
    GbDeviceStateName,
    GbDeviceStatus,
    GbInvite,
    GbPlatformInfo,
    GbPtzCommand,
    Message,
    Reply,
    Severity,
)
from edge.config import ConfigError, VehicleConfig
from edge.config.camera_append import (
    AppendError,
    TomlValue,
    append_camera,
    gb_channel_cameras,
)
from edge.config.gb28181 import Gb28181Config, check_gb_id
from edge.config.secrets import SecretRef
from edge.runtime.service import Service, ServiceContext

STATUS_EVERY_S = 1.0
OPEN_RETRY_FIRST_S = 1.0
OPEN_RETRY_MAX_S = 30.0
# Devices we keep a status for: configured ones plus strangers that tried to register,
# so that a scan of the SIP port with made-up ids cannot grow the bus's topics forever.
MAX_DEVICES = 256
_TRANSPORTS: tuple[MediaTransport, ...] = ("udp", "tcp-passive", "tcp-active")
MAX_NAME_CHARS = 64  # a camera's name (`[[cameras]] name`)


class BadRequest(Exception):
    """A request we cannot carry out; `str()` is the reply's detail."""


@dataclass
class _Record:
    """What the bus is told of one device, beyond what the registrar holds."""

    device_id: str
    name: str
    state: GbDeviceStateName = "offline"
    reason: str = "not registered yet"
    address: str = ""
    transport: str = ""
    alerted_offline: bool = False
    ever_online: bool = False
    channels: list[Channel] = field(default_factory=list)


class Gb28181Service(Service):
    def __init__(self, ctx: ServiceContext) -> None:
        super().__init__(ctx)
        self.cfg: Gb28181Config = ctx.config.gb28181
        if not self.cfg.enabled:
            raise ConfigError(str(ctx.config_path), ["gb28181.enabled: false (set it to true "
                                                     "to run the GB/T 28181 platform)"])
        self.password = self._secret("gb28181.password", self.cfg.password)
        self.device_passwords: dict[str, str] = {}
        self.records: dict[str, _Record] = {}
        for i, device in enumerate(self.cfg.devices):
            secret = self._secret(f"gb28181.devices[{i}].password", device.password)
            if secret is not None:
                self.device_passwords[device.id] = secret
            self.records[device.id] = _Record(device.id, device.name)
        self.platform: GbPlatform | None = None
        self.open_error = ""
        self.refused = 0  # devices refused for wrong passwords since the start
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_sent: dict[str, GbDeviceStatus] = {}
        # One adoption at a time: each reads the file, checks it and replaces it whole.
        self._adopting = asyncio.Lock()

    def _secret(self, where: str, ref: SecretRef | None) -> str | None:
        if ref is None:
            return None
        try:
            text = ref.read_text(self.ctx.config_dir)
        except ConfigError as e:
            raise ConfigError(str(self.ctx.config_path),
                              [f"{where}: {e.path}: {'; '.join(e.problems)}"]) from None
        if not text:
            raise ConfigError(str(self.ctx.config_path),
                              [f"{where}: {ref.path(self.ctx.config_dir)} is empty"])
        return text

    # -- life ------------------------------------------------------------------------------

    async def run(self) -> None:
        self.ctx.bus.serve(topics.GB28181_SERVICE, self._handle)
        try:
            await self._open()
            assert self.platform is not None
            self._publish_info()
            for record in self.records.values():
                self._publish(record)
            self.ctx.ready(f"SIP on {self.cfg.listen} (UDP and TCP)")
            while True:
                await asyncio.sleep(STATUS_EVERY_S)
                for record in list(self.records.values()):
                    self._publish(record, force=True)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self.platform is not None:
                await self._end_sessions(self.platform)
                await self.platform.close()

    async def _end_sessions(self, platform: GbPlatform) -> None:
        """Stopping: every device streaming to the vehicle is told to stop, briefly."""
        sessions = list(platform.sessions.values())
        if sessions:
            await asyncio.gather(*(asyncio.wait_for(platform.bye(s), 2.0) for s in sessions),
                                 return_exceptions=True)

    async def _open(self) -> None:
        cfg = self.cfg
        delay = OPEN_RETRY_FIRST_S
        while True:
            platform = GbPlatform(
                platform_id=cfg.platform_id, realm=cfg.realm or None, password=self.password,
                device_passwords=self.device_passwords, host=cfg.sip_host, port=cfg.sip_port,
                on_event=self._on_event, keepalive_interval=cfg.keepalive_interval_s,
                keepalive_misses=cfg.keepalive_misses, max_auth_failures=cfg.max_auth_failures,
                query_timeout=cfg.request_timeout_s)
            try:
                await platform.start()
            except OSError as e:
                await platform.close()
                reason = e.strerror or str(e)
                if reason != self.open_error:
                    self.ctx.log.error("cannot listen on %s: %s; retrying", cfg.listen, reason)
                self.open_error = reason
                await asyncio.sleep(delay)
                delay = min(delay * 2, OPEN_RETRY_MAX_S)
                continue
            self.platform, self.open_error = platform, ""
            host, port = platform.address
            self.ctx.log.info("GB/T 28181 platform %s listening on %s:%d (UDP and TCP)",
                              cfg.platform_id, host, port)
            return

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- events from the platform ----------------------------------------------------------

    def _record(self, device_id: str) -> _Record | None:
        record = self.records.get(device_id)
        if record is None and len(self.records) < MAX_DEVICES:
            record = self.records[device_id] = _Record(device_id, "")
        return record

    def _on_event(self, event: PlatformEvent) -> None:
        try:
            self._event(event)
        except Exception:  # one odd event must not end the platform's callbacks
            self.ctx.log.exception("could not handle %r", event)

    def _event(self, event: PlatformEvent) -> None:
        if isinstance(event, SessionEnded):
            self.ctx.log.info("device %s ended the stream of channel %s", event.device_id,
                              event.channel_id)
            record = self.records.get(event.device_id)
            if record is not None:
                self._publish(record)
            return
        record = self._record(event.device_id)
        if record is None:
            return
        label = self._label(record)
        if isinstance(event, DeviceOnline):
            peer = event.peer
            record.address = f"{peer.host}:{peer.port}"
            record.transport = peer.transport
            was = record.state
            record.state, record.reason = "online", ""
            if record.alerted_offline:
                self._alert(record, "notice", f"{label} is online again from {record.address}")
            elif not record.ever_online or was == "refused":
                self._alert(record, "info", f"{label} registered from {record.address} "
                                            f"({peer.transport.upper()})")
            record.ever_online = True
            record.alerted_offline = False
            self._spawn(self._ask_device(event.device_id))
        elif isinstance(event, DeviceOffline):
            record.state, record.reason = "offline", event.reason
            if not record.alerted_offline:
                record.alerted_offline = True
                self._alert(record, "warning", f"{label} is offline: {event.reason}")
        elif isinstance(event, AuthRefused):
            self.refused += 1
            record.state = "refused"
            record.reason = (f"refused after {event.failures} wrong password"
                             f"{'s' if event.failures != 1 else ''} from "
                             f"{event.peer.host}:{event.peer.port}; check its password")
            self._alert(record, "error", f"{label} {record.reason}")
        elif isinstance(event, ChannelsChanged):
            record.channels = list(event.channels)
        self._publish(record)

    async def _ask_device(self, device_id: str) -> None:
        """After a registration: its channels and what it is (each may fail alone)."""
        platform = self.platform
        assert platform is not None
        for what, ask in (("Catalog", platform.query_catalog),
                          ("DeviceInfo", platform.query_device_info)):
            try:
                await ask(device_id)
            except GbError as e:
                self.ctx.log.warning("%s query: %s", what, e)
        record = self.records.get(device_id)
        if record is not None:
            self._publish(record)

    def _label(self, record: _Record) -> str:
        return f"GB device {record.name} ({record.device_id})" if record.name else \
            f"GB device {record.device_id}"

    def _alert(self, record: _Record, severity: Severity, text: str) -> None:
        source = topics.gb_alert_source(record.device_id)
        self.ctx.log.log(logging.WARNING if severity in ("warning", "error") else logging.INFO,
                         "%s", text)
        self.ctx.bus.publish(topics.alert(source), Alert(severity=severity, source=source,
                                                         text=text))

    # -- publishing ------------------------------------------------------------------------

    def _publish_info(self) -> None:
        cfg = self.cfg
        low, high = cfg.rtp_port_range
        self.ctx.bus.publish(topics.GB_PLATFORM_INFO, GbPlatformInfo(
            platform_id=cfg.platform_id, sip=cfg.listen, media_bind=cfg.media_bind,
            rtp_port_min=low, rtp_port_max=high, invite_transport=cfg.invite_transport,
            request_timeout_s=cfg.request_timeout_s, no_media_s=cfg.no_media_s))

    def status(self, record: _Record) -> GbDeviceStatus:
        msg = GbDeviceStatus(device_id=record.device_id, name=record.name, state=record.state,
                             reason=record.reason, address=record.address,
                             transport=record.transport)
        platform = self.platform
        device = platform.registrar.get(record.device_id) if platform is not None else None
        channels = record.channels
        if device is not None:
            msg.registered_ns = int(device.registered_at * 1e9)
            msg.keepalives = device.keepalives
            if device.keepalives:
                msg.last_keepalive_ns = int(device.last_seen * 1e9)
            channels = list(device.channels.values()) or channels
            if device.info is not None:
                info = device.info
                msg.name = msg.name or info.name
                msg.manufacturer, msg.model, msg.firmware = (info.manufacturer, info.model,
                                                             info.firmware)
        record.channels = channels
        msg.channels = [GbChannel(channel_id=c.channel_id, name=c.name, status=c.status,
                                  manufacturer=c.manufacturer, model=c.model,
                                  ptz_type=c.ptz_type, lat=c.latitude, lon=c.longitude)
                        for c in channels]
        if platform is not None:
            msg.sessions = sum(1 for s in platform.sessions.values()
                               if s.device_id == record.device_id)
        return msg

    def _publish(self, record: _Record, *, force: bool = False) -> None:
        msg = self.status(record)
        if not force and self._last_sent.get(record.device_id) == msg:
            return
        self._last_sent[record.device_id] = msg
        self.ctx.bus.publish(topics.gb_status(record.device_id), msg)

    # -- requests --------------------------------------------------------------------------

    async def _handle(self, env: Envelope) -> Message:
        started = time.monotonic()
        req = env.message
        try:
            if self.platform is None:
                raise BadRequest(f"not listening yet: {self.open_error or 'starting'}")
            if isinstance(req, GbInvite):
                reply = await self._invite(req)
            elif isinstance(req, GbBye):
                reply = await self._bye(req)
            elif isinstance(req, GbPtzCommand):
                reply = await self._ptz(req, env.header.source)
            elif isinstance(req, GbAdopt):
                reply = await self._adopt(req, env.header.source)
            else:
                raise BadRequest(f"expected gb.invite, gb.bye, gb.ptz or gb.adopt, got "
                                 f"{env.header.type}")
        except BadRequest as e:
            reply = Reply(status="rejected", detail=str(e))
        except GbError as e:
            reply = Reply(status="rejected", detail=str(e))
        except Exception as e:  # the caller gets a reason, never a traceback
            self.ctx.log.exception("request %s failed", env.header.type)
            reply = Reply(status="error", detail=f"internal error: {type(e).__name__}: {e}")
        reply.elapsed_ms = round((time.monotonic() - started) * 1000, 1)
        if isinstance(req, GbPtzCommand | GbAdopt):
            subject, action = ((f"{req.device_id}/{req.channel_id}", f"ptz {req.action}")
                               if isinstance(req, GbPtzCommand) else (req.camera_id, "adopt"))
            self.ctx.bus.publish(topics.EVENT_COMMAND, CommandEvent(
                service=self.ctx.name, subject=subject, action=action, by=env.header.source,
                status=reply.status, detail=reply.detail, elapsed_ms=reply.elapsed_ms))
        return reply

    def _online(self, device_id: str) -> None:
        """Refuse at once for a device that cannot answer, with the reason it cannot."""
        try:
            check_gb_id(device_id, "device_id")
        except ValueError as e:
            raise BadRequest(str(e)) from None
        assert self.platform is not None
        device = self.platform.registrar.get(device_id)
        record = self.records.get(device_id)
        if device is None or not device.online:
            why = record.reason if record is not None and record.state != "online" else \
                "not registered"
            raise BadRequest(f"device {device_id} is offline: {why}")

    async def _invite(self, req: GbInvite) -> Reply:
        self._online(req.device_id)
        try:
            check_gb_id(req.channel_id, "channel_id")
        except ValueError as e:
            raise BadRequest(str(e)) from None
        transport = next((t for t in _TRANSPORTS if t == req.transport), None)
        if transport is None:
            raise BadRequest(f"transport {req.transport!r}: expected udp, tcp-passive or "
                             "tcp-active")
        if not 1 <= req.port <= 65535:
            raise BadRequest(f"port {req.port} is not in 1-65535")
        platform = self.platform
        assert platform is not None
        device = platform.registrar.get(req.device_id)
        assert device is not None
        # Where the device reaches us, unless the operator knows better (a NAT on our side).
        host = req.host or self.cfg.media_host or \
            platform.transport.local_address(device.peer)[0]
        session = await platform.invite(req.device_id, req.channel_id, media_host=host,
                                        media_port=req.port, transport=transport,
                                        timeout=self.cfg.request_timeout_s)
        answer = session.answer
        # The SSRC the device says it uses; devices that answer none use the offer's.
        ssrc = answer.ssrc_value if answer.ssrc else int(session.offer.ssrc) & 0xFFFFFFFF
        self.ctx.log.info("device %s channel %s streams to %s:%d over %s (session %s)",
                          req.device_id, req.channel_id, host, req.port, transport,
                          session.call_id)
        record = self.records.get(req.device_id)
        if record is not None:
            self._publish(record)
        return Reply(status="accepted", data={
            "session_id": session.call_id, "host": host, "port": req.port, "ssrc": ssrc,
            "transport": transport, "device_host": answer.host, "device_port": answer.port})

    async def _bye(self, req: GbBye) -> Reply:
        assert self.platform is not None
        session = self.platform.sessions.get(req.session_id)
        if session is None:
            # Ended already (the device's BYE, or ours before): the caller's wish holds.
            return Reply(status="accepted", detail="no such session (ended already)")
        try:
            async with asyncio.timeout(self.cfg.request_timeout_s):
                await self.platform.bye(session)
        except TimeoutError:
            return Reply(status="timeout", detail=f"device {session.device_id} did not answer "
                         f"the BYE within {self.cfg.request_timeout_s:g} s; session forgotten")
        record = self.records.get(session.device_id)
        if record is not None:
            self._publish(record)
        return Reply(status="accepted")

    async def _ptz(self, req: GbPtzCommand, by: str) -> Reply:
        self._online(req.device_id)
        try:
            check_gb_id(req.channel_id, "channel_id")
            command = ptz_command(req)
        except (ValueError, PtzCmdError) as e:
            raise BadRequest(str(e)) from None
        assert self.platform is not None
        try:
            async with asyncio.timeout(self.cfg.request_timeout_s):
                await self.platform.ptz(req.device_id, req.channel_id, command)
        except TimeoutError:
            return Reply(status="timeout", detail=f"device {req.device_id} did not answer the "
                         f"PTZ command within {self.cfg.request_timeout_s:g} s")
        self.ctx.log.info("PTZ %s on %s/%s for %s", req.action, req.device_id, req.channel_id, by)
        return Reply(status="accepted", data={"ptz_cmd": command.hex()})

    async def _adopt(self, req: GbAdopt, by: str) -> Reply:
        """Channel `req.channel_id` of a device we know becomes camera `req.camera_id`."""
        try:
            check_gb_id(req.device_id, "device_id")
            check_gb_id(req.channel_id, "channel_id")
        except ValueError as e:
            raise BadRequest(str(e)) from None
        record = self.records.get(req.device_id)
        if record is None:
            raise BadRequest(f"unknown device {req.device_id}: it is not configured and has "
                             "not registered")
        channels = self.status(record).channels
        channel = next((c for c in channels if c.channel_id == req.channel_id), None)
        if channel is None:
            raise BadRequest(f"device {req.device_id} has no channel {req.channel_id}" + (
                f" (its catalog lists {len(channels)})" if channels else
                " (it has not sent its catalog yet)"))
        # The device's own name for the channel is whatever it sent: made printable and short.
        own = " ".join("".join(c if c.isprintable() else " " for c in channel.name).split())
        name = " ".join(req.name.split()) or own[:MAX_NAME_CHARS].strip() or \
            f"GB channel {req.channel_id}"
        if not name.isprintable():
            raise BadRequest("name: control characters are not allowed in a camera's name")
        if len(name) > MAX_NAME_CHARS:
            raise BadRequest(f"name is {len(name)} characters long; at most {MAX_NAME_CHARS}")
        path = self.ctx.config_path
        key = (req.device_id, req.channel_id)

        def refuse(config: VehicleConfig) -> str | None:
            camera = gb_channel_cameras(config).get(key)
            if camera is None:
                return None
            return (f"channel {req.channel_id} of device {req.device_id} is camera {camera} "
                    f"already (in {path})")

        comment = (f"Adopted by {by or 'a bus client'} on "
                   f"{time.strftime('%Y-%m-%d %H:%M:%S')}: GB/T 28181 device {req.device_id}, "
                   f"channel {req.channel_id}.")
        fields: dict[str, TomlValue] = {
            "name": name, "main": {"gb28181": f"{req.device_id}/{req.channel_id}"}}
        async with self._adopting:
            try:
                await asyncio.to_thread(append_camera, path, req.camera_id, fields,
                                        comment=comment, refuse=refuse)
            except AppendError as e:
                raise BadRequest(str(e)) from None
        self.ctx.log.info("camera %s (%s/%s) added to %s for %s", req.camera_id,
                          req.device_id, req.channel_id, path, by)
        return Reply(status="accepted", detail=(
            f"camera {req.camera_id} added to {path}; start it with "
            f"`systemctl start edge-camera@{req.camera_id}` (the demo starts it now)"),
            data={"camera_id": req.camera_id, "path": str(path),
                  "device_id": req.device_id, "channel_id": req.channel_id})

    # -- health ----------------------------------------------------------------------------

    def health(self) -> tuple[str, str]:
        if self.platform is None:
            return ("starting", f"cannot listen on {self.cfg.listen}: {self.open_error}"
                    if self.open_error else f"opening {self.cfg.listen}")
        online = [r for r in self.records.values() if r.state == "online"]
        refused = [r for r in self.records.values() if r.state == "refused"]
        sessions = len(self.platform.sessions)
        detail = (f"{len(online)} device{'s' if len(online) != 1 else ''} online, "
                  f"{sessions} stream{'s' if sessions != 1 else ''}")
        if refused:
            detail += f", {len(refused)} refused"
        return ("running" if online else "degraded", detail)


def ptz_command(req: GbPtzCommand) -> PtzCmd:
    """The 8-byte PTZCmd a request asks for; `PtzCmdError` names what was wrong."""
    action = req.action.strip().lower()
    if action == "move":
        if not 1 <= req.speed <= 255:
            raise PtzCmdError(f"speed {req.speed} is outside 1..255")
        if not (req.pan or req.tilt or req.zoom):
            raise PtzCmdError("move: give pan, tilt or zoom (-1 or 1); `stop` stops")
        return ptz_cmd.ptz(pan=req.pan, tilt=req.tilt, zoom=req.zoom, pan_speed=req.speed,
                           tilt_speed=req.speed, zoom_speed=max(1, req.speed * 15 // 255))
    if action == "stop":
        return ptz_cmd.stop()
    if action.startswith("preset_"):
        return ptz_cmd.preset(action.removeprefix("preset_"), req.preset)
    raise PtzCmdError(f"action {req.action!r}: expected one of {', '.join(GB_PTZ_ACTIONS)}")
