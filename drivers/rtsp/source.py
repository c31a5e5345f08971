"""The RTSP source: one camera stream, demuxed (never decoded) in its own reader thread.

The PyAV read loop blocks, so it runs in its own thread and hands every access
unit to the `sink` right there, in order: no event-loop hop and no queue, since
waking the loop 30 times a second per stream costs a camera process more CPU
than anything else it does. Only state changes (and stream parameters) go to
the event loop, with `call_soon_threadsafe`; the reader never waits for it.

Stopping: PyAV checks an interrupt deadline while FFmpeg blocks, so reads use a
short timeout (`POLL_S`) and the thread re-checks its stop flag after each
one; a quiet source is only declared stalled after `stall_timeout`.  Opening
cannot be interrupted early: if `stop()` arrives during `av.open`, the thread
is abandoned (it is a daemon) and closes its container itself once the open
returns, at most `open_timeout` later.

Note on latency: FFmpeg's H.264/H.265 parser, which the RTSP demuxer always
uses, emits an access unit when it sees the start of the next one, so each unit
leaves the demuxer about one frame interval after it arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable

import av
from av.video.stream import VideoStream

from drivers.rtsp.demux import AccessUnitAssembler, SourceError, Transport, open_source, redact_url
from drivers.rtsp.errors import describe_error, describe_open_error
from drivers.rtsp.renew_stream import RenewFailed, RenewUnsupported, renew_stream
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

POLL_S = 0.5
BACKOFF_INITIAL_S = 0.5
# Small on purpose: a camera that comes back after any outage is live again
# within ~2.5 s plus its open time (the requirement is 5 s), and an attempt
# every 2 s at a dead camera costs one TCP connect.
BACKOFF_MAX_S = 2.0
# A connection that stayed live this long resets the backoff.
BACKOFF_RESET_AFTER_S = 10.0
# Packets but never a keyframe: the consumer could never start, so reconnect.
NO_KEYFRAME_S = 10.0
# A 5xx on open means "starting or busy, try again soon" (cameras send 503 with
# Retry-After: 1 while booting); growing the backoff would only delay the
# moment it comes live.
RETRY_BUSY_S = 1.0


def _discard(au: AccessUnit) -> None:
    pass


class RtspSource:
    """Pulls one RTSP URL, reconnecting until stopped: a :class:`drivers.source.Source`.

    `sink` gets every access unit in the reader thread (quick, non-blocking,
    thread-safe); `on_state` is called on the event loop at every state or
    reason change.
    """

    def __init__(
        self,
        url: str,
        *,
        transport: Transport = "tcp",
        name: str | None = None,
        open_timeout: float = 5.0,
        stall_timeout: float = 3.0,
        sink: AccessUnitSink = _discard,
        on_state: StateCallback | None = None,
        stats_window_s: float = 5.0,
    ) -> None:
        if transport not in ("tcp", "udp"):
            raise ValueError(f"transport must be 'tcp' or 'udp', not {transport!r}")
        self.url = url
        self.transport: Transport = transport
        self.name = name or redact_url(url)
        self.open_timeout = open_timeout
        self.stall_timeout = stall_timeout
        self.sink = sink
        self._on_state = on_state
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._stats = StatsCollector(stats_window_s)
        self._state = SourceState.CONNECTING
        self._reason = "not started"
        self._state_changed: asyncio.Event | None = None  # needs the running loop
        self._thread_exited: asyncio.Event | None = None
        self._stream_info: StreamInfo | None = None
        # Counted by the reader thread (one at a time; an abandoned one never
        # delivers), so a gap in `AccessUnit.sequence` means units were dropped.
        self._sequence = 0
        # Bumped by start() and stop(): news from an older reader thread (one
        # abandoned while opening) is recognised and ignored.
        self._generation = 0
        # Why the camera cannot make keyframes on request, once it said so.
        self._no_renew: str | None = None

    # -- public -------------------------------------------------------------

    async def request_keyframe(self) -> str | None:
        """``SET_PARAMETER Renew-Stream`` (:mod:`drivers.rtsp.renew_stream`), if it takes it."""
        if self._no_renew is not None:
            return self._no_renew
        try:
            await renew_stream(self.url)
        except RenewUnsupported as e:
            self._no_renew = str(e)
            log.info("%s: %s; recovery waits for its next keyframe", self.name, e)
            return self._no_renew
        except RenewFailed as e:
            return str(e)
        return None

    @property
    def state(self) -> SourceState:
        return self._state

    @property
    def reason(self) -> str:
        return self._reason

    @property
    def stream_info(self) -> StreamInfo | None:
        """Parameters of the current (or last) connection; set before LIVE."""
        return self._stream_info

    @property
    def stats(self) -> SourceStats:
        return self._stats.snapshot(self._state, self._reason)

    async def start(self) -> None:
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._state_changed = asyncio.Event()
        self._generation += 1
        self._set_state(SourceState.CONNECTING, f"connecting to {self.name}")
        self._stopping = threading.Event()
        self._thread_exited = asyncio.Event()
        self._thread = threading.Thread(
            target=self._run,
            args=(self._generation, self._stopping, self._thread_exited),
            name=f"rtsp-ingest {self.name}",
            daemon=True,
        )
        self._thread.start()

    async def stop(self) -> None:
        """Stop reading and close the connection; returns within ~1 s."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        self._generation += 1
        exited = self._thread_exited
        if exited is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_S + 0.5):
                    await exited.wait()
        # Not `thread.is_alive()`: the thread announces its exit just before it
        # ends, so a thread that has finished its work can still be alive here.
        if exited is None or not exited.is_set():
            # Opening cannot be interrupted, and a busy machine can delay the
            # thread's exit; either way it closes its connection by itself.
            log.warning(
                "%s: reader thread still busy (opening?); it will close itself within %.0f s",
                self.name,
                self.open_timeout,
            )
        self._set_state(SourceState.STOPPED, "stopped")

    async def __aenter__(self) -> RtspSource:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_for_state(self, *states: SourceState) -> SourceState:
        """Wait until the state is one of `states` (wrap in `asyncio.timeout`)."""
        while self._state not in states:
            assert self._state_changed is not None
            await self._state_changed.wait()
        return self._state

    # -- event-loop side -----------------------------------------------------

    def _from_reader(self, generation: int, callback: Callable[..., None], *args: object) -> None:
        if generation == self._generation:
            callback(*args)

    def _set_state(self, state: SourceState, reason: str) -> None:
        if (state, reason) == (self._state, self._reason):
            return
        if state is not self._state:
            log.info("%s: %s (%s)", self.name, state.value, reason)
        self._state, self._reason = state, reason
        if self._state_changed is not None:
            self._state_changed.set()
            self._state_changed = asyncio.Event()
        if self._on_state is not None:
            try:
                self._on_state(state, reason)
            except Exception:
                log.exception("%s: on_state callback failed", self.name)

    def _set_stream_info(self, info: StreamInfo) -> None:
        self._stream_info = info

    # -- reader thread ---------------------------------------------------------

    def _post(self, callback: Callable[..., None], *args: object) -> bool:
        """Run `callback(*args)` on the event loop; never blocks, False if the loop is gone."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return False
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            return False  # loop closed between the check and the call
        return True

    def _run(self, generation: int, stopping: threading.Event, exited: asyncio.Event) -> None:
        try:
            self._run_until_stopped(generation, stopping)
        except Exception:
            log.exception("%s: reader thread failed", self.name)
        finally:
            self._post(exited.set)

    def _run_until_stopped(self, generation: int, stopping: threading.Event) -> None:
        backoff = BACKOFF_INITIAL_S
        was_live = False
        while not stopping.is_set():
            self._stats.add(attempts=1)
            live_since: float | None = None
            busy = False
            opening = time.monotonic()
            try:
                container = open_source(
                    self.url,
                    self.transport,
                    self.open_timeout,
                    POLL_S,
                    io_timeout=max(self.open_timeout, self.stall_timeout) + 2.0,
                )
            except SourceError as exc:
                reason = str(exc)
            except Exception as exc:
                reason = describe_open_error(exc, time.monotonic() - opening, self.open_timeout)
                busy = isinstance(exc, av.error.HTTPServerError)
            else:
                try:
                    reason, live_since = self._read(container, was_live, generation, stopping)
                finally:
                    with contextlib.suppress(Exception):
                        container.close()
                self._stats.connection_lost()
            if stopping.is_set():
                return
            if live_since is not None:
                was_live = True
                if time.monotonic() - live_since >= BACKOFF_RESET_AFTER_S:
                    backoff = BACKOFF_INITIAL_S
            # A camera still starting that has never been live is connecting, not down.
            state = SourceState.CONNECTING if busy and not was_live else SourceState.DOWN
            self._post(self._from_reader, generation, self._set_state, state, reason)
            delay = RETRY_BUSY_S if busy else backoff
            log.debug("%s: %s (%s), retry in %.1f s", self.name, state.value, reason, delay)
            # Jitter keeps a vehicle's cameras from reconnecting in lock-step
            # after a shared network blip.
            stopping.wait(delay * random.uniform(0.8, 1.2))
            if not busy:
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _read(
        self,
        container: av.container.InputContainer,
        was_live: bool,
        generation: int,
        stopping: threading.Event,
    ) -> tuple[str, float | None]:
        """Read until the connection fails; (reason, monotonic time it went live or None)."""
        stream = container.streams.video[0]
        try:
            assembler = AccessUnitAssembler(stream)
        except SourceError as exc:
            return str(exc), None
        live_since: float | None = None
        connected = last_packet = time.monotonic()
        skipped_reported = 0
        sink_failed = False
        tb_s = float(assembler.time_base)  # Fraction arithmetic per frame is not free
        while True:
            try:
                for packet in container.demux(stream):
                    if stopping.is_set():
                        return "stopped", live_since
                    au = assembler.push(packet, self._sequence + 1)
                    if assembler.skipped != skipped_reported:
                        self._stats.add(skipped=assembler.skipped - skipped_reported)
                        skipped_reported = assembler.skipped
                        last_packet = time.monotonic()
                        if last_packet - connected > NO_KEYFRAME_S:
                            return f"no keyframe from source in {NO_KEYFRAME_S:g} s", live_since
                    if au is None:
                        continue
                    self._sequence += 1
                    last_packet = time.monotonic()
                    pts_s = au.pts * tb_s if au.pts is not None else None
                    self._stats.record(
                        len(au.data), au.keyframe, au.received_ns, pts_s, last_packet
                    )
                    if live_since is None:
                        live_since = last_packet
                        assert assembler.stream_info is not None
                        self._post(
                            self._from_reader,
                            generation,
                            self._set_stream_info,
                            assembler.stream_info,
                        )
                        if was_live:
                            self._stats.add(reconnects=1)
                        live = f"{self.transport} from {self.name}"
                        self._post(
                            self._from_reader, generation, self._set_state, SourceState.LIVE, live
                        )
                    elif au.keyframe and assembler.stream_info is not self._stream_info:
                        assert assembler.stream_info is not None
                        self._post(
                            self._from_reader,
                            generation,
                            self._set_stream_info,
                            assembler.stream_info,
                        )
                    try:
                        self.sink(au)
                    except Exception:
                        if not sink_failed:  # once a connection, not 30 times a second
                            log.exception("%s: sink failed", self.name)
                        sink_failed = True
                return _no_video_reason(stream, live_since) or "closed by source", live_since
            except av.error.ExitError:
                # Our own short read deadline: check for stop and stall, then resume.
                if stopping.is_set():
                    return "stopped", live_since
                quiet = time.monotonic() - last_packet
                if quiet >= self.stall_timeout:
                    reason = f"stalled: no packet for {self.stall_timeout:g} s"
                    return _no_video_reason(stream, live_since) or reason, live_since
            except Exception as exc:
                return _no_video_reason(stream, live_since) or describe_error(exc), live_since


def _no_video_reason(stream: VideoStream, live_since: float | None) -> str | None:
    """Name the real cause when a connection ends before any video came through.

    FFmpeg drops what it cannot parse, so a source that sends junk shows up as
    an early end or a stall; that FFmpeg never learnt the picture size tells
    the two apart from a source that merely went quiet.
    """
    if live_since is None and not stream.codec_context.width:
        return "invalid data from source"
    return None

