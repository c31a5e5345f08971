"""`edge run drone@LINK`: one MAVLink link and every vehicle on it, on the bus.

One process per configured ``[[drones]]`` link (a radio, serial port or
socket). Every vehicle heard on the link, by MAVLink system id, becomes a
drone with the id ``<link-id>-<sysid>`` (link ``alpha``, sysid 1: ``alpha-1``),
so two vehicles on one radio and the same sysid on two radios stay apart.

Published per drone:

- ``drone/<id>/telemetry`` (:class:`DroneTelemetry`) at the link's
  ``telemetry_hz`` (default 5 Hz); nothing while the vehicle is lost, so a
  frozen position is never shown as current.
- ``drone/<id>/status`` (:class:`DroneStatus`, state: the broker caches it)
  at 1 Hz and at once on a change of mode, arming, live/lost or home.
- ``drone/<id>/stream`` (:class:`DroneVideo`, state) when the vehicle's
  camera announces a video stream; the camera service ingests it. With
  several streams, the one with the lowest (component, stream) id is the
  drone's stream, so the choice does not flip with discovery order.
- ``alert/drone/<id>`` (:class:`Alert`): STATUSTEXT with the vehicle's own
  severity, lost/regained, found, mode and arming changes.
- ``alert/drone@<link>``: link-level alerts (refused unsigned commands from a
  router endpoint, an endpoint that cannot open).

Commands: requests to ``drone@<link>`` carrying :class:`DroneCommand`,
answered with :class:`Reply` (see :mod:`edge.services.drone_commands`), and
told to everyone as a :class:`CommandEvent` on ``event/command``.
Every command is answered within the bus request timeout: the per-attempt
ACK wait is sized so that all retries fit into it.

Config problems (unreadable signing key, bad connection or endpoint) are
found when the service is built, before anything runs, and reported as one
:class:`ConfigError` line. A link that cannot open yet (a serial radio not
plugged in, a UDP port still taken) is retried, and the service reports
``starting`` with the reason until it opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from typing import Any, ClassVar

from drivers.mavlink import (
    ArmedChanged,
    DroneLink,
    Endpoint,
    LinkEvent,
    MavRouter,
    ModeChanged,
    SigningRefused,
    StatusText,
    Telemetry,
    VehicleDiscovered,
    VehicleLost,
    VehicleRegained,
    VideoStreamFound,
)
from drivers.mavlink.signing import load_key
from edge.bus import topics
from edge.bus.envelope import Envelope
from edge.bus.messages import (
    Alert,
    CommandEvent,
    DroneCommand,
    DroneStatus,
    DroneTelemetry,
    DroneVideo,
    Message,
    Reply,
    Severity,
)
from edge.bus.topics import drone_id
from edge.config import ConfigError, DroneLinkConfig
from edge.recorder.layout import tlog_dir
from edge.recorder.tlog_thread import TlogThread
from edge.runtime.service import Service, ServiceContext
from edge.services.drone_commands import BadCommand, check_sysid, to_command, to_reply

STATUS_EVERY_S = 1.0
OPEN_RETRY_FIRST_S = 1.0
OPEN_RETRY_MAX_S = 30.0
# Left of the caller's request timeout for the bus round trip and our own work.
REPLY_MARGIN_S = 0.5
ACK_WAIT_MAX_S = 1.5

_STATUS_SEVERITY: dict[str, Severity] = {  # MAV_SEVERITY names to the bus's alert severities
    "EMERGENCY": "emergency", "ALERT": "alert", "CRITICAL": "critical", "ERROR": "error",
    "WARNING": "warning", "NOTICE": "notice", "INFO": "info", "DEBUG": "debug",
}


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _digits(name: str) -> int | None:
    """Decimals a telemetry field keeps on the wire, by what it measures: a position to
    MAVLink's own 1e-7 degree, an angle to 0.1 degree, metres, m/s and volts to 0.01;
    anything else as the driver has it."""
    if name in ("lat", "lon"):
        return 7
    if name.endswith("_deg"):
        return 1
    if name.endswith(("_m", "_mps", "_v")):
        return 2
    return None


# The message's fields are the one list of what telemetry says: each is read from the
# driver's attribute of the same name (the driver cannot import the bus's messages).
_TELEMETRY_FIELDS = tuple((f.name, _digits(f.name), f.default)
                          for f in dataclasses.fields(DroneTelemetry) if f.name != "drone_id")
_UNREAD = {name for name, _, _ in _TELEMETRY_FIELDS} - {
    f.name for f in dataclasses.fields(Telemetry)}
if _UNREAD:
    raise TypeError(f"DroneTelemetry fields the driver's Telemetry lacks: {sorted(_UNREAD)}")


def telemetry_message(did: str, t: Telemetry) -> DroneTelemetry:
    """The bus message for the driver's telemetry of drone `did`; where the driver knows
    nothing (None), the message's own default."""
    values: dict[str, Any] = {}
    for name, digits, default in _TELEMETRY_FIELDS:
        value = getattr(t, name)
        if value is None:
            value = default
        elif digits is not None:
            value = round(value, digits)
        values[name] = value
    return DroneTelemetry(drone_id=did, **values)


class DroneService(Service):
    #: seconds of silence before a vehicle is declared lost (tests shorten it)
    LOST_AFTER_S: ClassVar[float] = 3.0
    #: ACK retries per command (attempts = retries + 1)
    COMMAND_RETRIES: ClassVar[int] = 2

    def __init__(self, ctx: ServiceContext) -> None:
        super().__init__(ctx)
        self.link_id = ctx.instance or ""
        self.cfg, index = self._link_config()
        where = f"drones[{index}]"
        key = self._signing_key(where)
        # The reply must reach the caller before its own request timeout.
        self.reply_budget_s = max(0.5, ctx.endpoints.request_timeout_s - REPLY_MARGIN_S)
        # All attempts fit in 90 % of it; the rest is the outer limit's margin.
        ack_wait = min(ACK_WAIT_MAX_S, 0.9 * self.reply_budget_s / (self.COMMAND_RETRIES + 1))
        try:
            self.link = DroneLink(self.cfg.connection, source_system=self.cfg.source_system,
                                  signing_key=key, lost_after_s=self.LOST_AFTER_S,
                                  command_timeout_s=ack_wait,
                                  command_retries=self.COMMAND_RETRIES)
        except ValueError as e:
            raise self._config_error(f"{where}.connection: {e}") from None
        self.endpoints: list[Endpoint] = []
        for j, ep in enumerate(self.cfg.endpoints):
            try:
                self.endpoints.append(Endpoint.build(ep.name, ep.url, ep.mode,
                                                     allow=ep.allow or None, deny=ep.deny))
            except ValueError as e:
                raise self._config_error(f"{where}.endpoints[{j}]: {e}") from None
        self.router: MavRouter | None = None
        self.router_error = ""
        self.open_error = ""
        self.opened = False
        self._last_status: dict[int, tuple[Any, ...]] = {}
        self._status_sent: dict[int, float] = {}
        self._video_sent: dict[int, DroneVideo] = {}

    # ------------------------------------------------------------------ config

    def _config_error(self, problem: str) -> ConfigError:
        return ConfigError(str(self.ctx.config_path), [problem])

    def _link_config(self) -> tuple[DroneLinkConfig, int]:
        for i, d in enumerate(self.ctx.config.drones):
            if d.id == self.link_id:
                return d, i
        raise self._config_error(f'drones: no link with id "{self.link_id}"')

    def _signing_key(self, where: str) -> bytes | None:
        ref = self.cfg.signing_key
        if ref is None:
            return None
        # A few bytes read once at start-up, before the service runs.
        try:
            blob = ref.read_bytes(self.ctx.config_dir)
        except ConfigError as e:
            raise self._config_error(f"{where}.signing_key: {e.path}: "
                                     f"{'; '.join(e.problems)}") from None
        try:
            return load_key(blob)
        except ValueError:
            raise self._config_error(
                f"{where}.signing_key: {ref.path(self.ctx.config_dir)} must hold 32 raw bytes "
                f"or 64 hex characters, it holds {len(blob)} bytes") from None

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        log = self.ctx.log
        self.ctx.bus.serve(topics.drone_service(self.link_id), self._handle)
        tasks: list[asyncio.Task[None]] = []
        self.tlog = self._tlog()
        try:
            await self._open()
            tasks = [
                asyncio.create_task(self._publish_loop(), name="drone-publish"),
                asyncio.create_task(self._event_loop(), name="drone-events"),
            ]
            if self.endpoints:
                tasks.append(asyncio.create_task(self._keep_router(), name="drone-router"))
            self.ctx.ready(f"link {self.cfg.connection} open")
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            if self.router is not None:
                await self.router.stop()
            await self.link.stop()
            if self.tlog is not None:
                await asyncio.to_thread(self.tlog.stop)
            log.info("link %s closed", self.cfg.connection)

    def _tlog(self) -> TlogThread | None:
        """The link's raw MAVLink, both ways, into the recorder's tlogs (when it records)."""
        rec = self.ctx.config.recorder
        if not rec.enabled:
            return None
        tlog = TlogThread(tlog_dir(rec, self.ctx.config_dir, self.link_id),
                          name=f"tlog-{self.link_id}")
        self.link.add_frame_listener(lambda frame: tlog.frame(frame.raw))
        self.link.add_sent_listener(tlog.frame)
        tlog.start()
        return tlog

    async def _open(self) -> None:
        delay = OPEN_RETRY_FIRST_S
        while True:
            try:
                await self.link.start()
            except OSError as e:
                reason = e.strerror or str(e)
                if reason != self.open_error:
                    self.ctx.log.error("cannot open %s: %s; retrying", self.cfg.connection, reason)
                self.open_error = reason
                await asyncio.sleep(delay)
                delay = min(delay * 2, OPEN_RETRY_MAX_S)
                continue
            self.opened = True
            self.open_error = ""
            self.ctx.log.info("link %s open", self.cfg.connection)
            return

    async def _keep_router(self) -> None:
        # An endpoint that cannot bind must not cost the commander the drones;
        # the link runs on and the router is retried.
        delay = OPEN_RETRY_FIRST_S
        while True:
            router = MavRouter(self.link, self.endpoints)
            try:
                await router.start()
            except OSError as e:
                reason = f"router endpoints cannot open: {e.strerror or e}"
                if reason != self.router_error:
                    self.ctx.log.error("%s; retrying", reason)
                    self._alert(self.ctx.name, "error", reason)
                self.router_error = reason
                await asyncio.sleep(delay)
                delay = min(delay * 2, OPEN_RETRY_MAX_S)
                continue
            self.router, self.router_error = router, ""
            names = ", ".join(f"{e.name} ({e.connection}, {e.mode})" for e in self.endpoints)
            self.ctx.log.info("relaying to %s", names)
            return

    # ------------------------------------------------------------------ publishing

    async def _publish_loop(self) -> None:
        period = 1.0 / self.cfg.telemetry_hz
        expected = time.monotonic()
        while True:
            expected += period
            await asyncio.sleep(max(0.0, expected - time.monotonic()))
            now = time.monotonic()
            if now - expected > period:
                expected = now  # after a stall, do not burst to catch up
            for t in self.link.snapshot().values():
                if not t.lost:
                    self._publish_telemetry(t)
                self._maybe_status(t, now)

    def _publish_telemetry(self, t: Telemetry) -> None:
        did = drone_id(self.link_id, t.sysid)
        self.ctx.bus.publish(topics.drone_telemetry(did), telemetry_message(did, t))

    @staticmethod
    def _status_key(t: Telemetry) -> tuple[Any, ...]:
        home = (t.home.lat, t.home.lon, t.home.alt_msl_m) if t.home is not None else None
        return (t.lost, t.mode, t.armed, t.system_status, t.autopilot, t.vehicle_type, home)

    def _maybe_status(self, t: Telemetry, now: float) -> None:
        key = self._status_key(t)
        if (key != self._last_status.get(t.sysid)
                or now - self._status_sent.get(t.sysid, 0.0) >= STATUS_EVERY_S):
            self._publish_status(t, now, key)

    def _publish_status(self, t: Telemetry, now: float, key: tuple[Any, ...]) -> None:
        self._last_status[t.sysid] = key
        self._status_sent[t.sysid] = now
        did = drone_id(self.link_id, t.sysid)
        age = None if t.last_message_ns is None else (time.time_ns() - t.last_message_ns) / 1e9
        home = t.home
        self.ctx.bus.publish(topics.drone_status(did), DroneStatus(
            drone_id=did, sysid=t.sysid, link=self.link_id,
            state="lost" if t.lost else "live", autopilot=t.autopilot or "",
            vehicle_type=t.vehicle_type or "", mode=t.mode or "", armed=bool(t.armed),
            system_status=t.system_status or "", link_quality_pct=t.link_quality_pct,
            msgs_per_s=t.msgs_per_s, last_message_age_s=_round(age, 2),
            home_lat=None if home is None else round(home.lat, 7),
            home_lon=None if home is None else round(home.lon, 7),
            home_alt_m=None if home is None else round(home.alt_msl_m, 2),
        ))

    def _status_now(self, sysid: int) -> None:
        t = self.link.telemetry(sysid)
        if t is not None:
            self._publish_status(t, time.monotonic(), self._status_key(t))

    # ------------------------------------------------------------------ events

    async def _event_loop(self) -> None:
        async for event in self.link.events():
            try:
                self._on_event(event)
            except Exception:  # one odd event must not end alerting
                self.ctx.log.exception("could not publish %r", event)

    def _alert(self, source: str, severity: Severity, text: str) -> None:
        self.ctx.bus.publish(topics.alert(source), Alert(severity=severity, source=source,
                                                         text=text))

    def _on_event(self, event: LinkEvent) -> None:
        if isinstance(event, SigningRefused):
            via = "the drone link" if event.source == "drone" else f"endpoint {event.source}"
            self._alert(self.ctx.name, event.level,
                        f"refused unsigned {event.message} from system {event.sysid} "
                        f"(component {event.compid}) via {via}")
            return
        did = drone_id(self.link_id, event.sysid)
        source = f"drone/{did}"
        if isinstance(event, StatusText):
            self._alert(source, _STATUS_SEVERITY.get(event.severity, "info"),
                        f"{did}: {event.text}")
        elif isinstance(event, VehicleLost):
            text = f"{did} lost: nothing heard for {event.silent_s:.1f} s"
            self.ctx.log.warning("%s", text)
            self._alert(source, "critical", text)
            self._status_now(event.sysid)
        elif isinstance(event, VehicleRegained):
            text = f"{did} regained after {event.lost_for_s:.1f} s"
            self.ctx.log.info("%s", text)
            self._alert(source, "warning", text)
            self._status_now(event.sysid)
        elif isinstance(event, VehicleDiscovered):
            text = f"{did} found on {self.link_id}: {event.autopilot} {event.vehicle_type}"
            self.ctx.log.info("%s", text)
            self._alert(source, "info", text)
            self._status_now(event.sysid)
        elif isinstance(event, ModeChanged):
            self._alert(source, "info", f"{did} mode {event.old} -> {event.new}")
            self._status_now(event.sysid)
        elif isinstance(event, ArmedChanged):
            self._alert(source, "warning", f"{did} {'armed' if event.armed else 'disarmed'}")
            self._status_now(event.sysid)
        elif isinstance(event, VideoStreamFound):
            self._publish_video(event.sysid)

    def _publish_video(self, sysid: int) -> None:
        streams = sorted((s for s in self.link.video_streams if s.sysid == sysid),
                         key=lambda s: (s.compid, s.stream_id))
        if not streams:
            return
        s = streams[0]
        did = drone_id(self.link_id, sysid)
        video = DroneVideo(drone_id=did, sysid=sysid, compid=s.compid, stream_id=s.stream_id,
                           name=s.name, uri=s.uri, width=s.resolution[0],
                           height=s.resolution[1], fps=s.framerate)
        if self._video_sent.get(sysid) != video:
            self._video_sent[sysid] = video
            self.ctx.bus.publish(topics.drone_video(did), video)
            self.ctx.log.info("%s video: %s", did, s.uri)

    # ------------------------------------------------------------------ commands

    async def _handle(self, env: Envelope) -> Message:
        reply = await self._answer(env)
        cmd = env.message
        if isinstance(cmd, DroneCommand) and isinstance(reply, Reply):
            # Everyone hears what was done (a second console, the recorder, a replay):
            # the reply itself goes back to the requester alone.
            subject = drone_id(self.link_id, cmd.sysid) if cmd.sysid in topics.SYSIDS else ""
            self.ctx.bus.publish(topics.EVENT_COMMAND, CommandEvent(
                service=self.ctx.name, subject=subject, action=cmd.action.strip().lower(),
                by=env.header.source, status=reply.status, detail=reply.detail,
                elapsed_ms=reply.elapsed_ms))
        return reply

    async def _answer(self, env: Envelope) -> Message:
        started = time.monotonic()

        def error(detail: str) -> Reply:
            return Reply(status="error", detail=detail,
                         elapsed_ms=round((time.monotonic() - started) * 1000, 1))

        cmd = env.message
        if not isinstance(cmd, DroneCommand):
            return error(f"expected a drone.command request, got {env.header.type}")
        try:
            check_sysid(cmd.sysid)
            if cmd.sysid not in self.link.vehicles:
                heard = ", ".join(str(s) for s in sorted(self.link.vehicles)) or "none"
                return error(f"sysid: no vehicle {cmd.sysid} heard on link {self.link_id} "
                             f"(heard: {heard})")
            command = to_command(cmd)
        except BadCommand as e:
            return error(str(e))
        did = drone_id(self.link_id, cmd.sysid)
        action = cmd.action.strip().lower()
        self.ctx.log.info("%s: %s requested by %s", did, action, env.header.source)
        try:
            async with asyncio.timeout(self.reply_budget_s):
                result = await self.link.command(cmd.sysid, command)
        except TimeoutError:
            # Reached only when the vehicle said IN_PROGRESS, which lets the driver
            # wait longer than the caller would: the caller still gets an answer.
            return Reply(status="timeout", detail=f"no final answer from the vehicle within "
                         f"{self.reply_budget_s:.1f} s",
                         elapsed_ms=round((time.monotonic() - started) * 1000, 1),
                         data={"drone_id": did})
        except Exception as e:  # the caller gets a reason, never a traceback
            self.ctx.log.exception("%s: %s failed", did, action)
            return error(f"internal error: {type(e).__name__}: {e}")
        reply = to_reply(result, action, did, (time.monotonic() - started) * 1000)
        self.ctx.log.info("%s: %s -> %s (%s)", did, action, reply.status, reply.detail)
        return reply

    # ------------------------------------------------------------------ health

    def health(self) -> tuple[str, str]:
        if not self.opened:
            return ("starting", f"cannot open {self.cfg.connection}: {self.open_error}"
                    if self.open_error else f"opening {self.cfg.connection}")
        vehicles = self.link.vehicles
        problems = [self.router_error] if self.router_error else []
        if not vehicles:
            return ("degraded", "; ".join([f"no vehicle heard on {self.cfg.connection}",
                                           *problems]))
        parts = []
        for sysid, v in sorted(vehicles.items()):
            t = v.telemetry
            did = drone_id(self.link_id, sysid)
            if v.is_lost:
                parts.append(f"{did} lost")
            else:
                parts.append(f"{did} {t.mode or '?'}{' armed' if t.armed else ''} "
                             f"{t.msgs_per_s:g} msg/s")
        state = "degraded" if problems or all(v.is_lost for v in vehicles.values()) else "running"
        return (state, "; ".join([*parts, *problems]))
