"""``DroneLink``: everything the drone service needs from one MAVLink link.

It listens (telemetry per vehicle, events), asks for the telemetry rates
and camera streams, and runs commands with honest answers. It knows nothing
of the bus: the service polls :meth:`DroneLink.snapshot` at its own rate,
consumes :meth:`DroneLink.events`, and calls :meth:`DroneLink.command`.

Lifecycle::

    link = DroneLink("udpin:0.0.0.0:14550")
    await link.start()
    ...
    await link.stop()       # cancels every task it started, closes sockets
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from drivers.mavlink.commands import Command, CommandResult, CommandSender, VehicleInfo
from drivers.mavlink.connection import GCS_COMPONENT_ID, GCS_SYSTEM_ID, MavConnection
from drivers.mavlink.dialect import mavlink
from drivers.mavlink.events import LinkEvent, VehicleDiscovered, VehicleRegained
from drivers.mavlink.framing import Frame
from drivers.mavlink.intervals import TELEMETRY_RATES_HZ, request_telemetry_rates
from drivers.mavlink.signing import Signing, load_key
from drivers.mavlink.telemetry import Telemetry, TelemetryNormaliser, is_autopilot_heartbeat
from drivers.mavlink.transport import ConnectionSpec, PeerId
from drivers.mavlink.video import VideoDiscovery, VideoStream

log = logging.getLogger(__name__)

EventCallback = Callable[[LinkEvent], None]
RawFrameCallback = Callable[[Frame], None]

#: SiK radios report RADIO_STATUS as system 51 ('3'), component 68 ('D');
#: it describes the whole radio link, so it applies to every vehicle on it
SIK_RADIO_SYSID = 51

_HEARTBEAT = mavlink.MAVLINK_MSG_ID_HEARTBEAT
_COMMAND_ACK = mavlink.MAVLINK_MSG_ID_COMMAND_ACK
_RADIO_STATUS = mavlink.MAVLINK_MSG_ID_RADIO_STATUS
_VIDEO_IDS = frozenset(
    {
        _HEARTBEAT,
        mavlink.MAVLINK_MSG_ID_CAMERA_INFORMATION,
        mavlink.MAVLINK_MSG_ID_VIDEO_STREAM_INFORMATION,
    }
)


@dataclass(slots=True)
class LinkStats:
    bytes_in: int
    bytes_out: int
    frames: int
    bad_bytes: int
    crc_errors: int
    unknown: int
    signed_ok: int
    signed_bad: int
    events_dropped: int
    peers: int


class DroneLink:
    """One MAVLink link (one radio, serial port or socket) and its vehicles."""

    def __init__(
        self,
        connection: str | ConnectionSpec,
        *,
        source_system: int = GCS_SYSTEM_ID,
        source_component: int = GCS_COMPONENT_ID,
        signing_key: bytes | None = None,
        signing_link_id: int = 0,
        lost_after_s: float = 3.0,
        heartbeat_hz: float = 1.0,
        request_rates: Mapping[int, float] | None = TELEMETRY_RATES_HZ,
        discover_video: bool = True,
        command_timeout_s: float = 1.5,
        command_retries: int = 2,
        event_queue_size: int = 1000,
    ) -> None:
        self.signing = (
            Signing(load_key(signing_key), link_id=signing_link_id) if signing_key else None
        )
        self.connection = MavConnection(
            connection,
            source_system=source_system,
            source_component=source_component,
            signing=self.signing,
            heartbeat_hz=heartbeat_hz,
        )
        self.lost_after_s = lost_after_s
        self._request_rates = request_rates
        self.vehicles: dict[int, TelemetryNormaliser] = {}
        self.commands = CommandSender(
            self.connection.send,
            self.connection.encoder,
            timeout_s=command_timeout_s,
            retries=command_retries,
        )
        self.video = VideoDiscovery(self._request, self.emit) if discover_video else None
        self._event_listeners: list[EventCallback] = []
        self._raw_listeners: list[RawFrameCallback] = []
        self._queue: asyncio.Queue[LinkEvent] = asyncio.Queue(maxsize=event_queue_size)
        self._events_dropped = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self._running = False
        self.connection.add_listener(self._on_frame)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.connection.start()
        self._running = True
        self._watchdog = asyncio.create_task(self._watch(), name=f"watchdog {self.connection.spec}")

    async def stop(self) -> None:
        self._running = False
        tasks = [t for t in (self._watchdog, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        # after the cancels: commands the service is still awaiting end now too
        self.commands.stop()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._watchdog = None
        if self.video is not None:
            await self.video.stop()
        await self.connection.close()

    async def __aenter__(self) -> DroneLink:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ state

    def telemetry(self, sysid: int) -> Telemetry | None:
        """A snapshot of one vehicle's telemetry (safe to keep and publish)."""
        vehicle = self.vehicles.get(sysid)
        return vehicle.telemetry.copy() if vehicle is not None else None

    def snapshot(self) -> dict[int, Telemetry]:
        """Snapshots of every vehicle, for a service publishing at its own rate."""
        return {sysid: v.telemetry.copy() for sysid, v in self.vehicles.items()}

    @property
    def video_streams(self) -> list[VideoStream]:
        return list(self.video.streams.values()) if self.video is not None else []

    @property
    def stats(self) -> LinkStats:
        s = self.connection.stats
        transport = self.connection.transport
        return LinkStats(
            bytes_in=transport.bytes_in,
            bytes_out=transport.bytes_out,
            frames=s.frames,
            bad_bytes=s.bad_bytes,
            crc_errors=s.crc_errors,
            unknown=s.unknown,
            signed_ok=self.signing.stats.signed_ok if self.signing else 0,
            signed_bad=self.signing.stats.signed_bad if self.signing else 0,
            events_dropped=self._events_dropped,
            peers=transport.peer_count,
        )

    def vehicle_info(self, sysid: int) -> VehicleInfo:
        vehicle = self.vehicles.get(sysid)
        if vehicle is None:
            return VehicleInfo(sysid, None, None)
        t = vehicle.telemetry
        return VehicleInfo(sysid, t.autopilot_id, t.type_id, vehicle.autopilot_compid or 1)

    # ------------------------------------------------------------------ events

    def add_event_listener(self, callback: EventCallback) -> None:
        """Called synchronously for every event (keep it quick)."""
        self._event_listeners.append(callback)

    def add_frame_listener(self, callback: RawFrameCallback) -> None:
        """Every valid frame heard on the link, before any filtering (for a router)."""
        self._raw_listeners.append(callback)

    def add_sent_listener(self, callback: Callable[[bytes], None]) -> None:
        """Every frame we send on the link, ours or relayed (for a log of the link)."""
        self.connection.add_sent_listener(callback)

    def remove_frame_listener(self, callback: RawFrameCallback) -> None:
        with contextlib.suppress(ValueError):
            self._raw_listeners.remove(callback)

    async def events(self) -> AsyncIterator[LinkEvent]:
        """Events in order. One consumer; when it lags, the oldest are dropped (counted)."""
        while True:
            yield await self._queue.get()

    def emit(self, event: LinkEvent) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self._events_dropped += 1
        self._queue.put_nowait(event)
        for callback in self._event_listeners:
            try:
                callback(event)
            except Exception:
                log.exception("event listener failed on %r", event)
        if isinstance(event, VehicleDiscovered | VehicleRegained):
            self._vehicle_appeared(event.sysid, regained=isinstance(event, VehicleRegained))

    # ------------------------------------------------------------------ commands

    async def command(
        self,
        sysid: int,
        command: Command,
        *,
        timeout_s: float | None = None,
        retries: int | None = None,
    ) -> CommandResult:
        """Run a command on a vehicle and return what happened (never raises for
        the vehicle's answer; ``ValueError`` only from building bad arguments)."""
        return await self.commands.execute(
            command, self.vehicle_info(sysid), timeout_s=timeout_s, retries=retries
        )

    async def _request(self, sysid: int, command: Command) -> CommandResult:
        return await self.commands.execute(command, self.vehicle_info(sysid), retries=1)

    def send_raw(self, data: bytes) -> None:
        """Put already-framed bytes on the link unchanged (router use)."""
        self.connection.send_raw(data)

    # ------------------------------------------------------------------ internals

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        if not self._running:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _vehicle_appeared(self, sysid: int, *, regained: bool) -> None:
        if regained and self.video is not None:
            # a vehicle that comes back may have rebooted: ask again
            self.video.forget(sysid)
        if self._request_rates:
            rates = self._request_rates
            self._spawn(self._ask_rates(sysid, rates), f"rates {sysid}")

    async def _ask_rates(self, sysid: int, rates: Mapping[int, float]) -> None:
        async def run(cmd: Command) -> CommandResult:
            return await self.commands.execute(cmd, self.vehicle_info(sysid), retries=1)

        results = await request_telemetry_rates(run, rates)
        refused = {k: r.result or str(r.status) for k, r in results.items() if not r.ok}
        if refused:
            log.info("vehicle %d: message rates not all set: %s", sysid, refused)

    def _on_frame(self, frame: Frame, peer: PeerId) -> None:
        for listener in self._raw_listeners:
            listener(frame)
        if frame.sig_ok is False:
            return  # a bad signature: not from who it claims to be
        msg = frame.msg
        if msg is None:
            return
        sysid = frame.sysid
        msg_id = frame.msg_id
        vehicle = self.vehicles.get(sysid)
        if vehicle is None:
            if msg_id == _HEARTBEAT and is_autopilot_heartbeat(msg):
                vehicle = TelemetryNormaliser(sysid, self.emit)
                self.vehicles[sysid] = vehicle
            elif msg_id == _RADIO_STATUS and sysid == SIK_RADIO_SYSID:
                for v in self.vehicles.values():
                    v.radio_status(msg)
        if vehicle is not None:
            vehicle.handle(frame)
        if msg_id == _COMMAND_ACK:
            self.commands.on_ack(sysid, frame.compid, msg)
        elif self.video is not None and msg_id in _VIDEO_IDS:
            self.video.on_frame(frame)

    async def _watch(self) -> None:
        period = min(0.25, self.lost_after_s / 4)
        while True:
            await asyncio.sleep(period)
            for vehicle in list(self.vehicles.values()):
                vehicle.check_silence(self.lost_after_s)
