"""A GB/T 28181 channel as a camera source (`drivers.source.Source`): invited, received, demuxed.

Unlike RTSP, the camera does not wait to be pulled: the platform opens a port,
sends the device an INVITE naming it, and the device sends PS over RTP there
(UDP; or TCP, connecting to our listener for `tcp-passive`, accepting our
connection for `tcp-active`). The INVITE itself belongs to whoever holds the
SIP registration (the gb28181 service); this module takes it as three
callables, so it knows nothing of the bus:

* `plan()`: where to open the socket and how long to wait (may wait for the
  service to exist);
* `invite(plan, port)`: ask the device to send to `port`; the session, or
  `GbSourceError` with the reason (device offline, refused, did not answer);
* `bye(session_id)`: end it;
* optionally `keyframe()`: ask the device for a keyframe now (`IFameCmd`), and
  `ended(session_id)`: returns, with the reason, once the platform says the device
  ended that session itself (its BYE), so the session ends at once, not after
  `no_media_s` of silence.

Each session: open the socket, invite, feed every packet to an
`RtpPsReceiver` and hand its access units to `sink` in order, from the first
keyframe on. A session without a packet for `no_media_s` (or with packets
but no picture: PS garbage, a foreign SSRC) is lost, its reason names which,
a BYE ends it, and the channel is invited again with backoff. Stopping sends
BYE. Everything runs on the event loop: one camera process per camera, and
the RTP/PS work is light beside decoding, which nothing here does.

Linger (an `OnDemandSource`): a device streams over its SIM's data, so with
`linger_s` set, a live session nobody has consumed for that long is ended
(BYE) and the source waits in `standby`, saying why; the first consumer to
come has the channel invited again at once. The channel is invited at start
all the same: the stream's announcement (codec, parameter sets, which the
uplink answers viewers with), a thumbnail and the camera's state need one
session, and every session lasts at least `linger_s` once live.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from fractions import Fraction

from drivers.gb28181.gb_sdp import MediaTransport
from drivers.gb28181.ps_demux import PsAccessUnit
from drivers.gb28181.rtp_ps import RtpPsReceiver
from drivers.rtsp.annexb import nal_type, parameter_set_types, split_annexb, sps_type
from drivers.rtsp.sps import SpsError, parse_sps
from drivers.rtsp.stats import StatsCollector
from drivers.source import (
    AccessUnit,
    AccessUnitSink,
    SourceState,
    SourceStats,
    StateCallback,
    StreamInfo,
)

log = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 90000)
EARLY_MEDIA_MAX_BYTES = 2 * 1024 * 1024  # a 1080p keyframe is a few hundred KB
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 15.0
# How often the session checks for silence, and gives up on RTP held behind a gap.
CHECK_EVERY_S = 0.25
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024  # a 4K keyframe arrives as one burst of packets
BYE_WITHIN_S = 3.0
WAITING = "waiting for the gb28181 service"


def standby_reason(linger_s: float) -> str:
    return f"nobody has watched for {linger_s:g} s; invited again when someone does"


class GbSourceError(Exception):
    """Why a session could not start or ended; `str()` is one line for the camera's status."""


class _Released(Exception):
    """Nobody consumed the stream for `linger_s`: the session ends by choice, not by fault."""


@dataclass(frozen=True)
class MediaPlan:
    """Where the camera process receives and how patient it is."""

    transport: MediaTransport = "udp"
    bind_host: str = "0.0.0.0"
    ports: tuple[int, int] = (0, 0)  # inclusive range; (0, 0): any free port
    no_media_s: float = 10.0


@dataclass(frozen=True)
class Invited:
    """A device's yes to an INVITE."""

    session_id: str
    ssrc: int | None  # what its RTP carries (the offer's y=); None: the first heard
    device_host: str = ""  # tcp-active: where we connect
    device_port: int = 0


PlanFn = Callable[[], Awaitable[MediaPlan]]
InviteFn = Callable[[MediaPlan, int], Awaitable[Invited]]
ByeFn = Callable[[str], Awaitable[None]]
KeyframeFn = Callable[[], Awaitable[None]]
EndedFn = Callable[[str], Awaitable[str | None]]  # why the device ended it; None: unknown
# Returns True once the device comes online after it was not (a registration); False when
# it never will be heard of (the link is closing).
OnlineFn = Callable[[], Awaitable[bool]]


def _stream_info(unit: PsAccessUnit) -> StreamInfo | None:
    """Codec parameters from a keyframe's own parameter sets (the demuxer puts them first)."""
    codec = unit.codec
    sets = [n for n in split_annexb(unit.data) if nal_type(codec, n) in parameter_set_types(codec)]
    sps = next((n for n in sets if nal_type(codec, n) == sps_type(codec)), None)
    if sps is None:
        return None
    try:
        parsed = parse_sps(codec, sps)
    except SpsError:
        return None
    ordered = tuple(n for t in parameter_set_types(codec) for n in sets if nal_type(codec, n) == t)
    return StreamInfo(codec=codec, profile=parsed.profile, level=parsed.level,
                      width=parsed.width, height=parsed.height, fps=parsed.fps,
                      extradata=b"".join(b"\x00\x00\x00\x01" + n for n in ordered),
                      parameter_sets=ordered, profile_level_id=parsed.profile_level_id)


class _Media:
    """One session's socket(s) and receiver: bytes in, access units to the source."""

    def __init__(self, source: GbSource, plan: MediaPlan) -> None:
        self.source = source
        self.plan = plan
        self.port = 0
        self.receiver: RtpPsReceiver | None = None  # set once the device said yes
        # What came before the device's answer reached us (see `_bytes`), in order.
        self._early: list[tuple[bytes, bool]] = []
        self._early_bytes = 0
        self.received = 0  # datagrams or TCP reads
        self.last_received = 0.0  # monotonic
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._readers: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        low, high = self.plan.ports
        candidates = [0] if low == 0 else list(range(low, high + 1))
        if len(candidates) > 1:
            # From a random place: two cameras starting together do not race for one port.
            start = random.randrange(len(candidates))
            candidates = candidates[start:] + candidates[:start]
        last: OSError | None = None
        for port in candidates:
            try:
                await self._open_on(port)
                return
            except OSError as exc:
                last = exc
        where = f"{self.plan.bind_host}:{low}-{high}" if low else self.plan.bind_host
        why = last.strerror if last is not None and last.strerror else "no port free"
        raise GbSourceError(f"cannot open a {self.plan.transport} media port on {where}: {why}")

    async def _open_on(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        host = self.plan.bind_host
        if self.plan.transport == "udp":
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
                sock.bind((host, port))
            except OSError:
                sock.close()
                raise
            media = self

            class Protocol(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                    media.datagram(data)

            self._udp, _ = await loop.create_datagram_endpoint(Protocol, sock=sock)
            self.port = self._udp.get_extra_info("sockname")[1]
        elif self.plan.transport == "tcp-passive":
            self._server = await asyncio.start_server(self._accepted, host, port)
            self.port = self._server.sockets[0].getsockname()[1]
        else:
            self.port = 9  # tcp-active: we connect; RFC 4145 says the port is not used

    async def connect(self, host: str, port: int) -> None:
        """tcp-active: connect to where the device's answer said it listens."""
        try:
            async with asyncio.timeout(self.plan.no_media_s):
                reader, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "timed out"
            raise GbSourceError(f"cannot connect to the device's media at {host}:{port}: "
                                f"{why}") from None
        self._start_reading(reader, writer)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._writer is not None:
            writer.close()  # one stream per session: a second connection is not ours
            return
        self._start_reading(reader, writer)

    def _start_reading(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        task = asyncio.create_task(self._read(reader))
        self._readers.add(task)
        task.add_done_callback(self._readers.discard)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                self._bytes(data, stream=True)

    def datagram(self, data: bytes) -> None:
        self._bytes(data, stream=False)

    def start_receiving(self, receiver: RtpPsReceiver) -> None:
        """The device said yes: read its media with `receiver`, from what came early on."""
        self.receiver = receiver
        early, self._early, self._early_bytes = self._early, [], 0
        for data, stream in early:
            self._bytes(data, stream=stream)

    def _bytes(self, data: bytes, *, stream: bool) -> None:
        receiver = self.receiver
        if receiver is None:
            # A device streams once it has answered, and its answer reaches us through the
            # platform and the bus a moment later: those first packets carry the keyframe
            # a decoder starts from, without which the picture waits a whole GOP. Kept,
            # bounded; the receiver's SSRC filter drops what was not the device's.
            if self._early_bytes + len(data) <= EARLY_MEDIA_MAX_BYTES:
                self._early.append((data, stream))
                self._early_bytes += len(data)
            return
        self.received += 1
        self.last_received = time.monotonic()
        units = receiver.stream(data) if stream else receiver.datagram(data)
        if units:
            self.source._deliver(units)

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._server is not None:
            self._server.close()
        if self._writer is not None:
            self._writer.close()
        for task in list(self._readers):
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


class GbSource:
    """One channel of a GB/T 28181 device, invited while the source runs (and, with
    `linger_s`, while someone consumes it)."""

    def __init__(self, *, name: str, plan: PlanFn, invite: InviteFn, bye: ByeFn,
                 sink: AccessUnitSink, on_state: StateCallback | None = None,
                 retry_first_s: float = RETRY_FIRST_S, retry_max_s: float = RETRY_MAX_S,
                 waiting: str = WAITING, linger_s: float = 0.0,
                 keyframe: KeyframeFn | None = None, ended: EndedFn | None = None,
                 online: OnlineFn | None = None) -> None:
        self.name = name
        self.sink = sink
        self._plan = plan
        self._invite = invite
        self._bye = bye
        self._keyframe = keyframe
        self._ended = ended
        self._online = online
        self._on_state = on_state
        self.retry_first_s = retry_first_s
        self.retry_max_s = retry_max_s
        self._waiting = waiting
        self._state, self._reason = SourceState.CONNECTING, "not started"
        self._stats = StatsCollector()
        self._info: StreamInfo | None = None
        self._task: asyncio.Task[None] | None = None
        self._media: _Media | None = None
        self._need_keyframe = True
        self._been_live = False
        self._live_this_session = False
        self._last_unit = 0.0
        self._sequence = 0
        self._sink_failed = False
        self.session_id: str | None = None
        self.sessions = 0  # INVITEs the device accepted
        self.linger_s = linger_s  # 0: never released
        self.releases = 0  # sessions ended because nobody watched
        self._consumers = 0
        # Since when nobody has consumed the stream (monotonic); None while someone does.
        self._idle_since: float | None = time.monotonic()
        self._live_since = 0.0  # when the current session's first unit came
        self._wanted = asyncio.Event()  # set while someone consumes the stream

    # -- Source ----------------------------------------------------------------------------

    @property
    def stream_info(self) -> StreamInfo | None:
        return self._info

    @property
    def stats(self) -> SourceStats:
        return self._stats.snapshot(self._state, self._reason)

    async def start(self) -> None:
        if self._task is not None:
            return
        if not self._consumers:
            self._idle_since = time.monotonic()
        self._set_state(SourceState.CONNECTING, self._waiting)
        self._task = asyncio.create_task(self._run(), name=f"gb28181 {self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._set_state(SourceState.STOPPED, "stopped")

    def consumers_changed(self, count: int) -> None:
        """`count` consume the stream now; on the event loop (`OnDemandSource`)."""
        self._consumers = max(0, count)
        if self._consumers:
            self._idle_since = None
            self._wanted.set()
        else:
            if self._idle_since is None:
                self._idle_since = time.monotonic()
            self._wanted.clear()

    async def request_keyframe(self) -> str | None:
        if self._keyframe is None:
            return "a GB/T 28181 channel sends keyframes at its own interval (no way to ask)"
        if self.session_id is None:
            return "the channel is not invited: no stream to ask a keyframe of"
        try:
            await self._keyframe()
        except GbSourceError as exc:
            return str(exc)
        return None

    # -- sessions --------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = self.retry_first_s
        while True:
            try:
                plan = await self._plan()
                await self._session(plan)
                reason = "the session ended"
            except _Released:
                self._stats.connection_lost()
                # Not lost: coming back from standby is no reconnect.
                self._been_live = False
                delay = self.retry_first_s
                await self._wanted.wait()
                log.info("%s: someone watches; inviting the channel again", self.name)
                continue
            except GbSourceError as exc:
                reason = str(exc)
            except Exception as exc:  # a bug must not end the camera: say so and retry
                log.exception("%s: session failed", self.name)
                reason = f"internal error: {type(exc).__name__}"
            if self._live_this_session:
                delay = self.retry_first_s
            self._stats.connection_lost()
            # Down, as an RTSP camera that refuses or drops us is: retried with backoff.
            self._set_state(SourceState.DOWN, reason)
            log.info("%s: %s; inviting again in %.1f s", self.name, reason, delay)
            await self._retry_wait(delay)
            delay = min(delay * 2, self.retry_max_s)

    async def _retry_wait(self, delay: float) -> None:
        """`delay`, cut short when the device registers: a dome that powers up after the
        vehicle (or a demo's simulated one starting beside its camera) is invited at once
        instead of up to a backoff later."""
        if self._online is None:
            await asyncio.sleep(delay)
            return
        deadline = asyncio.get_running_loop().time() + delay
        try:
            async with asyncio.timeout_at(deadline):
                if await self._online():
                    log.info("%s: the device registered; inviting now", self.name)
                    return
        except TimeoutError:
            return
        await asyncio.sleep(max(0.0, deadline - asyncio.get_running_loop().time()))

    async def _session(self, plan: MediaPlan) -> None:
        media = _Media(self, plan)
        self._live_this_session = False
        self._need_keyframe = True
        await media.open()
        session_id: str | None = None
        try:
            self._stats.add(attempts=1)
            if self._state is not SourceState.DOWN:
                self._set_state(SourceState.CONNECTING, "inviting the channel")
            invited = await self._invite(plan, media.port)
            session_id = self.session_id = invited.session_id
            self.sessions += 1
            media.start_receiving(RtpPsReceiver(invited.ssrc))
            self._media = media
            if plan.transport == "tcp-active":
                await media.connect(invited.device_host, invited.device_port)
            await self._watch_until_ended(media, plan, session_id)
        finally:
            self._media = None
            await media.close()
            if session_id is not None:
                self.session_id = None
                await self._end(session_id)

    async def _end(self, session_id: str) -> None:
        # Shielded: a stop() cancelling us must still let the device know.
        task = asyncio.ensure_future(self._bye_quietly(session_id))
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, BYE_WITHIN_S)
            raise

    async def _bye_quietly(self, session_id: str) -> None:
        try:
            await asyncio.wait_for(self._bye(session_id), BYE_WITHIN_S)
        except Exception as exc:
            log.info("%s: BYE for session %s: %s", self.name, session_id, exc or "timed out")

    async def _watch_until_ended(self, media: _Media, plan: MediaPlan, session_id: str) -> None:
        """`_watch`, ended early with its reason if the platform says the device ended it."""
        if self._ended is None:
            await self._watch(media, plan)
            return
        watching = asyncio.ensure_future(self._watch(media, plan))
        told = asyncio.ensure_future(self._ended(session_id))
        try:
            await asyncio.wait({watching, told}, return_when=asyncio.FIRST_COMPLETED)
            if not watching.done() and told.done() and not told.cancelled() \
                    and told.exception() is None and (reason := told.result()) is not None:
                raise GbSourceError(reason)
            await watching  # its own end: silence, garbage, or linger's release
        finally:
            for task in (watching, told):
                task.cancel()
            await asyncio.gather(watching, told, return_exceptions=True)

    async def _watch(self, media: _Media, plan: MediaPlan) -> None:
        started = time.monotonic()
        while True:
            await asyncio.sleep(CHECK_EVERY_S)
            now = time.monotonic()
            receiver = media.receiver
            assert receiver is not None
            # Packets held behind a gap while the stream has gone quiet: give up on the gap.
            if now - media.last_received > CHECK_EVERY_S and media.received:
                units = receiver.skip_missing()
                if units:
                    self._deliver(units)
            if self._live_this_session and self._unwatched_long_enough(now):
                self._release()
            since = max(started, self._last_unit if self._live_this_session else started)
            if now - since < plan.no_media_s:
                continue
            raise GbSourceError(self._silence_reason(media, plan, now))

    def _unwatched_long_enough(self, now: float) -> bool:
        idle = self._idle_since
        if self.linger_s <= 0 or idle is None:
            return False
        # A session, once live, is kept `linger_s` whatever came before it.
        return now - max(idle, self._live_since) >= self.linger_s

    def _release(self) -> None:
        # Standby before the BYE, not after: the camera service clears its GOP cache on the
        # change, so a consumer subscribing while the BYE is under way is not handed a
        # picture from before the release (and brings the channel back at once).
        self.releases += 1
        reason = standby_reason(self.linger_s)
        log.info("%s: %s; ending the session", self.name, reason)
        self._set_state(SourceState.STANDBY, reason)
        raise _Released

    def _silence_reason(self, media: _Media, plan: MediaPlan, now: float) -> str:
        receiver = media.receiver
        assert receiver is not None
        quiet = now - media.last_received if media.received else None
        if quiet is None or quiet >= plan.no_media_s:
            if not self._live_this_session:
                return (f"the device accepted the INVITE but sent no media within "
                        f"{plan.no_media_s:g} s")
            return f"no media from the device for {plan.no_media_s:g} s"
        rtp, ps = receiver.stats, receiver.demuxer.stats
        if rtp.packets == 0:
            return (f"no usable RTP in {plan.no_media_s:g} s: "
                    f"{rtp.last_problem or 'nothing but malformed packets'} "
                    f"({rtp.malformed} malformed, {rtp.foreign_ssrc} of another SSRC, "
                    f"{rtp.wrong_payload_type} of another payload type)")
        return (f"PS garbage: no picture in {plan.no_media_s:g} s of media "
                f"({ps.last_problem or 'no video stream found'}; {ps.garbage_bytes} bytes "
                f"skipped, {ps.resyncs} resyncs, {ps.bad_headers} bad headers)")

    # -- access units ----------------------------------------------------------------------

    def _deliver(self, units: list[PsAccessUnit]) -> None:
        for unit in units:
            if self._need_keyframe:
                if not unit.keyframe:
                    self._stats.add(skipped=1)
                    continue
                self._need_keyframe = False
            if unit.keyframe:
                info = _stream_info(unit)
                if info is not None:
                    self._info = info
            received_ns = time.time_ns()
            self._last_unit = time.monotonic()
            self._sequence += 1
            self._stats.record(len(unit.data), unit.keyframe, received_ns,
                               None if unit.pts is None else unit.pts / 90000)
            au = AccessUnit(data=unit.data, pts=unit.pts, dts=unit.dts, time_base=TIME_BASE,
                            keyframe=unit.keyframe, codec=unit.codec, received_ns=received_ns,
                            sequence=self._sequence)
            if not self._live_this_session:
                self._live_this_session = True
                self._live_since = self._last_unit
                if self._been_live:
                    self._stats.add(reconnects=1)
                self._been_live = True
                self._set_state(SourceState.LIVE, "")
            try:
                self.sink(au)
            except Exception:
                if not self._sink_failed:
                    self._sink_failed = True
                    log.exception("%s: the sink failed; further failures are not logged",
                                  self.name)

    def _set_state(self, state: SourceState, reason: str) -> None:
        if (state, reason) == (self._state, self._reason):
            return
        self._state, self._reason = state, reason
        if self._on_state is not None:
            try:
                self._on_state(state, reason)
            except Exception:
                log.exception("%s: on_state callback failed", self.name)
