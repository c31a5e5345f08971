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
:class:`GbPtzCommand`, :class:`GbKeyframe` (DeviceControl `IFameCmd`), each answered
with a :class:`Reply` within the device's answer time (`request_timeout_s`), and
:class:`GbAdopt` (a channel made a camera:
its `[[cameras]]` table appended to the config file this service was started with,
`edge.config.camera_append`). PTZ commands and adoptions are also told to everyone
on ``event/command``; an adoption's event (action `adopt`, the camera id as its
subject) is what the demo starts the new camera on.

Every session belongs to the bus client that asked for it (the request's header source,
a `camera@<id>`), because a device streams to a port until told to stop, on the SIM's
data: it is ended (BYE) when that requester is gone, its ``svc/<name>/health`` silent for
`owner_silent_s`, or restarted, its health or a new INVITE coming from another process
(`GbInvite.epoch`); a stream's new INVITE ends that stream's earlier session too. A session
the device ends (its BYE) is answered 200 and forgotten at once. Either way, and with a
log line saying why, it is listed on the device's status (`GbDeviceStatus.ended`), which
is how the camera process learns of it without waiting for silence.

Passwords are secret references read when the service is built: an unreadable one
is a one-line config error before anything listens.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from drivers.gb28181 import ptz_cmd
from drivers.gb28181.gb_sdp import MediaTransport
from drivers.gb28181.manscdp import Channel
from drivers.gb28181.platform import (
    GbError,
    GbPlatform,
    MediaSession,
    PlatformEvent,
    SessionEnded,
)
from drivers.gb28181.ptz_cmd import PtzCmd, PtzCmdError
from drivers.gb28181.registrar import AuthRefused, ChannelsChanged, DeviceOffline, DeviceOnline
from edge.bus import topics
from edge.bus.envelope import Envelope
from edge.bus.messages import (
    GB_ENDED_KEPT,
    GB_PTZ_ACTIONS,
    Alert,
    CommandEvent,
    GbAdopt,
    GbBye,
    GbChannel,
    GbDeviceStateName,
    GbDeviceStatus,
    GbInvite,
    GbKeyframe,
    GbPlatformInfo,
    GbPtzCommand,
    GbSessionEnd,
    Message,
    Reply,
    ServiceHealth,
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
DEVICE_BYE = "the device ended the stream (BYE)"
# Requesters whose health we keep: a scan of the bus's service names cannot grow it further.
MAX_REQUESTERS = 1024


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
    ended: deque[GbSessionEnd] = field(default_factory=lambda: deque(maxlen=GB_ENDED_KEPT))


@dataclass
class _Owner:
    """Who asked for a session: a bus client (its header source), which process of it (its
    bus epoch, 0 unknown) and which of its streams."""

    requester: str
    epoch: int
    stream: str
    since_ns: int  # wall clock of the INVITE's answer: its health is looked for after it

    def of(self) -> str:
        return f"{self.requester} ({self.stream})" if self.stream else self.requester


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
        self.owners: dict[str, _Owner] = {}
        """Who asked for each media session, by Call-ID."""
        # The newest health of each bus client: (its epoch, the producer's stamp in ns).
        self._health: dict[str, tuple[int, int]] = {}
        self._ending: set[str] = set()  # Call-IDs we are ending on our own account
        self._checked = time.monotonic()  # the last look at the requesters' health

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
        self._spawn(self._follow_health())
        try:
            await self._open()
            assert self.platform is not None
            self._publish_info()
            for record in self.records.values():
                self._publish(record)
            self.ctx.ready(f"SIP on {self.cfg.listen} (UDP and TCP)")
            while True:
                await asyncio.sleep(STATUS_EVERY_S)
                self._check_owners()
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
                query_timeout=cfg.request_timeout_s, max_tcp_connections=cfg.max_tcp_connections,
                tcp_idle_timeout=cfg.tcp_idle_s)
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
            owner = self.owners.pop(event.call_id, None)
            self.ctx.log.info("device %s ended the stream of channel %s%s (its BYE, answered "
                              "200)", event.device_id, event.channel_id,
                              f" for {owner.of()}" if owner is not None else "")
            self._note_ended(event.device_id, event.channel_id, event.call_id, owner,
                             DEVICE_BYE)
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
        msg.ended = list(record.ended)
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
                reply = await self._invite(req, env.header.source)
            elif isinstance(req, GbBye):
                reply = await self._bye(req)
            elif isinstance(req, GbKeyframe):
                reply = await self._keyframe(req)
            elif isinstance(req, GbPtzCommand):
                reply = await self._ptz(req, env.header.source)
            elif isinstance(req, GbAdopt):
                reply = await self._adopt(req, env.header.source)
            else:
                raise BadRequest(f"expected gb.invite, gb.bye, gb.ptz, gb.keyframe or "
                                 f"gb.adopt, got {env.header.type}")
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

    async def _invite(self, req: GbInvite, by: str) -> Reply:
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
        if not 0 <= req.epoch < 1 << 64:
            raise BadRequest(f"epoch {req.epoch} is not a bus epoch (0 to 2**64-1)")
        stream = req.stream.strip()
        if len(stream) > 200 or not stream.isprintable():
            raise BadRequest("stream: at most 200 printable characters")
        owner = _Owner(by, req.epoch, stream, 0)
        await self._end_superseded(owner)
        platform = self.platform
        assert platform is not None
        device = platform.registrar.get(req.device_id)
        if device is None:  # it went while we ended what the new INVITE replaces
            raise BadRequest(f"device {req.device_id} is offline: not registered")
        # Where the device reaches us, unless the operator knows better (a NAT on our side).
        host = req.host or self.cfg.media_host or \
            platform.transport.local_address(device.peer)[0]
        session = await platform.invite(req.device_id, req.channel_id, media_host=host,
                                        media_port=req.port, transport=transport,
                                        timeout=self.cfg.request_timeout_s)
        answer = session.answer
        owner.since_ns = time.time_ns()
        if session.call_id in platform.sessions:  # not ended already by the device
            self.owners[session.call_id] = owner
        if owner.epoch:
            self._heard(owner.requester, owner.epoch, owner.since_ns)
        # The SSRC the device says it uses; devices that answer none use the offer's.
        ssrc = answer.ssrc_value if answer.ssrc else int(session.offer.ssrc) & 0xFFFFFFFF
        self.ctx.log.info("device %s channel %s streams to %s:%d over %s for %s (session %s)",
                          req.device_id, req.channel_id, host, req.port, transport,
                          owner.of(), session.call_id)
        record = self.records.get(req.device_id)
        if record is not None:
            self._publish(record)
        return Reply(status="accepted", data={
            "session_id": session.call_id, "host": host, "port": req.port, "ssrc": ssrc,
            "transport": transport, "device_host": answer.host, "device_port": answer.port})

    async def _bye(self, req: GbBye) -> Reply:
        assert self.platform is not None
        self.owners.pop(req.session_id, None)
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

    async def _keyframe(self, req: GbKeyframe) -> Reply:
        self._online(req.device_id)
        try:
            check_gb_id(req.channel_id, "channel_id")
        except ValueError as e:
            raise BadRequest(str(e)) from None
        assert self.platform is not None
        try:
            async with asyncio.timeout(self.cfg.request_timeout_s):
                await self.platform.keyframe(req.device_id, req.channel_id)
        except TimeoutError:
            return Reply(status="timeout", detail=f"device {req.device_id} did not answer the "
                         f"keyframe request within {self.cfg.request_timeout_s:g} s")
        self.ctx.log.debug("keyframe asked of %s/%s", req.device_id, req.channel_id)
        return Reply(status="accepted")

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

    # -- who asked for each session ----------------------------------------------------------

    async def _follow_health(self) -> None:
        """Every service's health: a requester's beat, and which process of it is up."""
        sub = self.ctx.bus.subscribe(topics.SVC)
        try:
            async for env in sub:
                if isinstance(env.message, ServiceHealth):
                    self._heard(env.header.source, env.header.epoch, env.header.ts_ns)
        finally:
            sub.close()

    def _heard(self, requester: str, epoch: int, stamp_ns: int) -> None:
        known = self._health.get(requester)
        if known is not None and known[1] >= stamp_ns:
            return  # the broker's replay of something older (a dead process's last word)
        if known is None and len(self._health) >= MAX_REQUESTERS:
            return
        self._health[requester] = (epoch, stamp_ns)
        if not epoch:
            return
        for call_id, owner in list(self.owners.items()):
            # Another process under the same name, heard after the session began: restarted.
            if owner.requester == requester and owner.epoch and owner.epoch != epoch \
                    and stamp_ns > owner.since_ns:
                self._end_later(call_id, f"{requester} restarted (a new process of it is up)")

    def _check_owners(self) -> None:
        """End the sessions whose requester has gone silent; forget those ended anyway."""
        platform = self.platform
        if platform is None:
            return
        now = time.monotonic()
        stalled = now - self._checked > 3 * STATUS_EVERY_S
        self._checked = now
        if stalled:
            # Our own loop stood still: the health that came meanwhile is still queued on
            # the subscription, so silence now would be ours, not the requester's.
            return
        now_ns = time.time_ns()
        limit_ns = int(self.cfg.owner_silent_s * 1e9)
        for call_id, owner in list(self.owners.items()):
            if call_id not in platform.sessions:
                del self.owners[call_id]
                continue
            heard = self._health.get(owner.requester)
            last_ns = max(owner.since_ns, heard[1] if heard is not None else 0)
            if now_ns - last_ns > limit_ns:
                self._end_later(call_id, f"no health from {owner.requester} for "
                                         f"{self.cfg.owner_silent_s:g} s (its process is gone)")

    async def _end_superseded(self, new: _Owner) -> None:
        """Before a requester's INVITE: end what it asked for as another process (restarted),
        or for the same stream before (its BYE was lost), so a device never streams twice."""
        ending = []
        for call_id, owner in list(self.owners.items()):
            if owner.requester != new.requester:
                continue
            if new.epoch and owner.epoch and owner.epoch != new.epoch:
                why = f"{new.requester} restarted (a new process of it asked for video)"
            elif owner.epoch == new.epoch and new.stream and owner.stream == new.stream:
                why = f"{new.of()} asked for it again (its earlier session was not ended)"
            else:
                continue
            ending.append(self._end_owned(call_id, why))
        if ending:
            await asyncio.gather(*ending)

    def _end_later(self, call_id: str, why: str) -> None:
        if call_id not in self._ending:
            self._spawn(self._end_owned(call_id, why))

    async def _end_owned(self, call_id: str, why: str) -> None:
        """End a session on our own account (its requester cannot): BYE, log and status."""
        platform = self.platform
        if platform is None or call_id in self._ending:
            return
        owner = self.owners.pop(call_id, None)
        session = platform.sessions.get(call_id)
        if session is None:
            return
        self._ending.add(call_id)
        try:
            self.ctx.log.warning("ending the stream of device %s channel %s%s: %s (session %s)",
                                 session.device_id, session.channel_id,
                                 f" for {owner.of()}" if owner is not None else "", why,
                                 call_id)
            self._note_ended(session.device_id, session.channel_id, call_id, owner, why)
            await self._bye_briefly(platform, session)
        finally:
            self._ending.discard(call_id)

    async def _bye_briefly(self, platform: GbPlatform, session: MediaSession) -> None:
        try:
            async with asyncio.timeout(self.cfg.request_timeout_s):
                await platform.bye(session)
        except (GbError, TimeoutError) as e:
            # Forgotten either way: the device's own silence detection ends its side.
            self.ctx.log.info("BYE to device %s: %s", session.device_id,
                              e or "no answer in time")
        record = self.records.get(session.device_id)
        if record is not None:
            self._publish(record)

    def _note_ended(self, device_id: str, channel_id: str, call_id: str, owner: _Owner | None,
                    why: str) -> None:
        record = self.records.get(device_id)
        if record is None:
            return
        record.ended.append(GbSessionEnd(
            session_id=call_id, channel_id=channel_id,
            requester=owner.requester if owner is not None else "", reason=why,
            ended_ns=time.time_ns()))
        self._publish(record)

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
        turned_away = self.platform.transport.refused_connections
        if turned_away:
            detail += (f", {turned_away} SIP connection{'s' if turned_away != 1 else ''} "
                       f"refused (max_tcp_connections)")
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
