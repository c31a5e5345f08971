"""The simulated drone as a MAVLink 2 peer on a real socket (QGC MockLink style).

Connection strings, seen from the vehicle:

``tcp:HOST:PORT`` (or ``tcpin:``)
    the sim *listens*, as ArduPilot SITL does on 5760; any number of ground
    stations may connect and all get the same traffic.
``udpin:HOST:PORT``
    the sim binds and answers whoever sends to it (a GCS using ``udpout``).
``udpout:HOST:PORT``
    the sim sends to a listening GCS, like SITL's default ``--out
    udp:127.0.0.1:14550`` (a GCS using ``udpin:0.0.0.0:14550``).
``serial:DEVICE:BAUD``
    e.g. one side of a pty pair.

Test hooks behave like the real failures they stand for: a command id in
``ignore_commands`` is received and never answered (timeout); ``go_silent``
stops all traffic both ways, as a radio dropping out; ``garbage`` adds line
noise, truncated frames and corrupted frames between good ones;
``signing_key`` makes the vehicle sign everything and refuse unsigned
messages (except RADIO_STATUS, as ArduPilot does); ``in_progress_commands``
maps a command id to seconds during which it reports MAV_RESULT_IN_PROGRESS
before the final answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from drivers.mavlink.connection import MavConnection
from drivers.mavlink.dialect import MAVLinkMessage, mavlink
from drivers.mavlink.framing import Frame
from drivers.mavlink.signing import Signing, load_key
from drivers.mavlink.transport import ConnectionSpec, PeerId, parse_connection
from drivers.sim.drone.autopilot import SimAutopilot
from drivers.sim.drone.camera import CAMERA_COMPID, SimCamera
from drivers.sim.drone.generator import TelemetryGenerator
from drivers.sim.drone.vehicle import SimConfig, SimVehicle

log = logging.getLogger(__name__)

AUTOPILOT_COMPID = mavlink.MAV_COMP_ID_AUTOPILOT1
#: Shanghai People's Square; any default is as good as another
DEFAULT_HOME = (31.2304, 121.4737)
#: the longest a simulation step may be, so a stalled loop cannot teleport
_MAX_STEP_S = 0.2


@dataclass(slots=True)
class SimStats:
    commands: int = 0
    ignored: int = 0
    unsigned_refused: int = 0
    garbage_bytes: int = 0
    frames_corrupted: int = 0


def server_spec(connection: str | ConnectionSpec) -> ConnectionSpec:
    """The vehicle side of a link: ``tcp:`` means listen."""
    if isinstance(connection, str):
        kind, _, rest = connection.strip().partition(":")
        if kind.lower() == "tcp":
            connection = f"tcpin:{rest}"
        return parse_connection(connection)
    spec = connection
    if spec.kind == "tcp":
        return ConnectionSpec("tcpin", host=spec.host, port=spec.port)
    return spec


class SimDrone:
    def __init__(
        self,
        connection: str | ConnectionSpec = "tcp:127.0.0.1:5760",
        *,
        sysid: int = 1,
        home: tuple[float, float] = DEFAULT_HOME,
        home_alt_msl_m: float = 10.0,
        camera_rtsp_url: str | None = None,
        start_flying: bool = True,
        config: SimConfig | None = None,
        time_scale: float = 1.0,
        tick_hz: float = 10.0,
        ignore_commands: Iterable[int] = (),
        in_progress_commands: Mapping[int, float] | None = None,
        garbage: bool = False,
        signing_key: bytes | None = None,
        seed: int | None = None,
    ) -> None:
        cfg = config or SimConfig()
        if start_flying:
            self.vehicle = SimVehicle.flying(home[0], home[1], cfg)
        else:
            self.vehicle = SimVehicle(home[0], home[1], config=cfg, mode="LOITER")
        self.vehicle.home_alt_msl = home_alt_msl_m
        self.sysid = sysid
        self.signing = Signing(load_key(signing_key), link_id=1) if signing_key else None
        self.conn = MavConnection(
            server_spec(connection),
            source_system=sysid,
            source_component=AUTOPILOT_COMPID,
            signing=self.signing,
            heartbeat_hz=0,  # our HEARTBEAT is one of the telemetry streams
        )
        self.generator = TelemetryGenerator(self.vehicle, self.conn.encoder)
        self.autopilot = SimAutopilot(self.vehicle, self.generator, self.conn.encoder, sysid)
        self.camera = (
            SimCamera(self.conn.make_encoder(CAMERA_COMPID), camera_rtsp_url)
            if camera_rtsp_url
            else None
        )
        self.time_scale = time_scale
        self._period = 1.0 / tick_hz
        self.ignore_commands: set[int] = set(ignore_commands)
        self.in_progress_commands: dict[int, float] = dict(in_progress_commands or {})
        self.garbage = garbage
        self._rng = random.Random(seed)
        self._silent_until = 0.0
        self._delayed: list[tuple[float, Any, bool, int, int]] = []
        self._task: asyncio.Task[None] | None = None
        self._started = 0.0
        self._next_camera_hb = 0.0
        self.stats = SimStats()
        self.conn.add_listener(self._on_frame)
        self.vehicle.say(mavlink.MAV_SEVERITY_INFO, "ArduCopter V4.5.7 (edge sim)")

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.conn.start()
        self._started = time.monotonic()
        self._task = asyncio.create_task(self._run(), name=f"sim drone {self.sysid}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.conn.close()

    async def serve(self) -> None:
        """Until cancelled (the simulation runs on); raises what ended it if it failed."""
        task = self._task
        if task is None:
            raise RuntimeError("the simulated drone is not started")
        # Waited for, not awaited: cancelling us must not cancel the simulation.
        await asyncio.wait({task})
        task.result()

    async def __aenter__(self) -> SimDrone:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def address(self) -> tuple[str, int] | None:
        """Where a GCS should connect (the bound address, useful with port 0)."""
        return self.conn.transport.local_address

    # ------------------------------------------------------------------ hooks

    def go_silent(self, seconds: float) -> None:
        """Stop all traffic, both ways, for ``seconds`` (a radio dropout)."""
        self._silent_until = time.monotonic() + seconds

    @property
    def silent(self) -> bool:
        return time.monotonic() < self._silent_until

    def say(self, severity: int, text: str) -> None:
        """Queue a STATUSTEXT (chunked when longer than 50 characters)."""
        self.vehicle.say(severity, text)

    def inject(self, data: bytes) -> None:
        """Put raw bytes on the link (for noise tests)."""
        self.conn.send_raw(data)

    # ------------------------------------------------------------------ output

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self._period)
            now = time.monotonic()
            dt = (now - last) * self.time_scale
            last = now
            while dt > 0:
                step = min(dt, _MAX_STEP_S)
                self.vehicle.step(step)
                dt -= step
            self._run_delayed(now)
            if self.silent:
                continue
            messages = self.generator.due(now - self._started)
            self._transmit(messages)
            if self.camera is not None and now >= self._next_camera_hb:
                self._next_camera_hb = now + 1.0
                self.camera.boot_s = now - self._started
                self.conn.send(self.camera.heartbeat(), self.camera.encoder)

    def _transmit(self, messages: list[MAVLinkMessage]) -> None:
        if not messages:
            return
        parts = [self.conn.pack(m) for m in messages]
        if self.garbage:
            parts = self._dirty(parts)
        self.conn.send_raw(b"".join(parts))

    def _dirty(self, frames: list[bytes]) -> list[bytes]:
        """Interleave noise, truncated frames and corrupted frames."""
        rng = self._rng
        out: list[bytes] = []
        for frame in frames:
            roll = rng.random()
            if roll < 0.25:
                noise = bytearray(rng.randbytes(rng.randint(1, 40)))
                if rng.random() < 0.5:
                    # a plausible v2 header start, to lure a parser into a long wait
                    noise[rng.randrange(len(noise))] = 0xFD
                out.append(bytes(noise))
                self.stats.garbage_bytes += len(noise)
            if 0.25 <= roll < 0.30 and frame[0] == 0xFD and len(frame) > 14:
                out.append(frame[: len(frame) // 2])  # the rest is lost
                self.stats.frames_corrupted += 1
                continue
            if 0.30 <= roll < 0.35 and len(frame) > 14:
                damaged = bytearray(frame)
                damaged[10 + rng.randrange(len(frame) - 12)] ^= 0xFF
                out.append(bytes(damaged))
                self.stats.frames_corrupted += 1
                continue
            out.append(frame)
        return out

    # ------------------------------------------------------------------ input

    def _on_frame(self, frame: Frame, peer: PeerId) -> None:
        if self.silent:
            return
        msg = frame.msg
        if msg is None or frame.sysid == self.sysid:
            return
        if (
            self.signing is not None
            and frame.sig_ok is not True
            and frame.msg_id != mavlink.MAVLINK_MSG_ID_RADIO_STATUS
        ):
            self.stats.unsigned_refused += 1
            return
        msg_id = frame.msg_id
        if msg_id in (mavlink.MAVLINK_MSG_ID_COMMAND_LONG, mavlink.MAVLINK_MSG_ID_COMMAND_INT):
            self._command(
                msg, msg_id == mavlink.MAVLINK_MSG_ID_COMMAND_INT, frame.sysid, frame.compid
            )
        elif msg_id == mavlink.MAVLINK_MSG_ID_SET_MODE and msg.target_system == self.sysid:
            result = self.autopilot.handle_set_mode(msg)
            self._ack(mavlink.MAVLINK_MSG_ID_SET_MODE, result, frame.sysid, frame.compid)
        elif msg_id == mavlink.MAVLINK_MSG_ID_PARAM_REQUEST_LIST and self._for_autopilot(msg):
            self._send_all(self.autopilot.param_list())
        elif msg_id == mavlink.MAVLINK_MSG_ID_PARAM_REQUEST_READ and self._for_autopilot(msg):
            self._send_all(self.autopilot.param_read(msg))
        elif msg_id == mavlink.MAVLINK_MSG_ID_PARAM_SET and self._for_autopilot(msg):
            self._send_all(self.autopilot.param_set(msg))
        elif msg_id == mavlink.MAVLINK_MSG_ID_MISSION_REQUEST_LIST and self._for_autopilot(msg):
            self._send_all(self.autopilot.mission_count(msg, frame.sysid, frame.compid))

    def _for_autopilot(self, msg: Any) -> bool:
        return bool(
            msg.target_system in (0, self.sysid) and msg.target_component in (0, AUTOPILOT_COMPID)
        )

    def _command(self, cmd: Any, is_int: bool, gcs_sysid: int, gcs_compid: int) -> None:
        if cmd.target_system not in (0, self.sysid):
            return
        self.stats.commands += 1
        if self.camera is not None and cmd.target_component == self.camera.compid:
            result, after = self.camera.handle_command(cmd)
            self._ack(cmd.command, result, gcs_sysid, gcs_compid, encoder=self.camera.encoder)
            for m in after:
                self.conn.send(m, self.camera.encoder)
            return
        if cmd.target_component not in (0, AUTOPILOT_COMPID):
            return
        if cmd.command in self.ignore_commands:
            self.stats.ignored += 1
            return
        delay = self.in_progress_commands.get(cmd.command)
        if delay is not None:
            self._ack(
                cmd.command, mavlink.MAV_RESULT_IN_PROGRESS, gcs_sysid, gcs_compid, progress=0
            )
            self._delayed.append((time.monotonic() + delay, cmd, is_int, gcs_sysid, gcs_compid))
            return
        self._execute(cmd, is_int, gcs_sysid, gcs_compid)

    def _execute(self, cmd: Any, is_int: bool, gcs_sysid: int, gcs_compid: int) -> None:
        result, after = self.autopilot.handle_command(cmd, is_int)
        self._ack(cmd.command, result, gcs_sysid, gcs_compid)
        self._send_all(after)

    def _run_delayed(self, now: float) -> None:
        if not self._delayed:
            return
        due = [d for d in self._delayed if d[0] <= now]
        self._delayed = [d for d in self._delayed if d[0] > now]
        for _, cmd, is_int, gcs_sysid, gcs_compid in due:
            self._execute(cmd, is_int, gcs_sysid, gcs_compid)

    def _ack(
        self,
        command: int,
        result: int,
        gcs_sysid: int,
        gcs_compid: int,
        *,
        progress: int = 0,
        encoder: Any = None,
    ) -> None:
        enc = encoder or self.conn.encoder
        self.conn.send(
            enc.command_ack_encode(command, result, progress, 0, gcs_sysid, gcs_compid), enc
        )

    def _send_all(self, messages: list[MAVLinkMessage]) -> None:
        for m in messages:
            self.conn.send(m)


async def run_sim_drone(
    connection: str = "tcp:127.0.0.1:5760",
    *,
    sysid: int = 1,
    home: tuple[float, float] = DEFAULT_HOME,
    camera_rtsp_url: str | None = None,
    **options: Any,
) -> None:
    """Run one simulated drone until cancelled (``edge sim drone``)."""
    async with SimDrone(
        connection, sysid=sysid, home=home, camera_rtsp_url=camera_rtsp_url, **options
    ) as sim:
        log.info("sim drone %d on %s (home %.6f,%.6f)", sysid, sim.conn.spec, *home)
        await asyncio.Event().wait()
