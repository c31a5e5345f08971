"""Thread-safe ingest counters with a sliding window for bitrate and frame rate."""

from __future__ import annotations

import threading
import time
from collections import deque

from drivers.source import SourceState, SourceStats

# Rates need units spread over at least this long (by arrival or by timestamps).
MIN_RATE_SPAN_S = 0.1


class StatsCollector:
    """Written by the reader thread and the event loop, read by either."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._lock = threading.Lock()
        # (arrival monotonic time, size, presentation time in seconds or None)
        self._window: deque[tuple[float, int, float | None]] = deque()
        self._window_bytes = 0
        self.packets = 0
        self.bytes = 0
        self.keyframes = 0
        self.gop: int | None = None
        self._since_keyframe: int | None = None
        self.last_packet_ns: int | None = None
        self.reconnects = 0
        self.connect_attempts = 0
        self.frames_dropped = 0
        self.frames_skipped = 0

    def record(
        self,
        size: int,
        keyframe: bool,
        received_ns: int,
        pts_s: float | None = None,
        now: float | None = None,
    ) -> None:
        """One unit; `now` is its arrival (monotonic), if the caller read the clock already."""
        if now is None:
            now = time.monotonic()
        with self._lock:
            self.packets += 1
            self.bytes += size
            self.last_packet_ns = received_ns
            if keyframe:
                self.keyframes += 1
                if self._since_keyframe is not None:
                    self.gop = self._since_keyframe
                self._since_keyframe = 1
            elif self._since_keyframe is not None:
                self._since_keyframe += 1
            self._window.append((now, size, pts_s))
            self._window_bytes += size
            self._trim(now)

    def connection_lost(self) -> None:
        with self._lock:
            # A GOP that spans a reconnect is not a GOP.
            self._since_keyframe = None

    def add(
        self, *, dropped: int = 0, skipped: int = 0, attempts: int = 0, reconnects: int = 0
    ) -> None:
        with self._lock:
            self.frames_dropped += dropped
            self.frames_skipped += skipped
            self.connect_attempts += attempts
            self.reconnects += reconnects

    def _trim(self, now: float) -> None:
        while self._window and now - self._window[0][0] > self.window_s:
            _, size, _ = self._window.popleft()
            self._window_bytes -= size

    def _pts_span(self, count: int) -> float:
        """Presentation time the window's units cover (0.0 if unknown); lock held.

        The first unit of a connection has no timestamp, so the span is
        scaled from the units that have one.
        """
        window = self._window
        first = next(((i, p) for i, (_, _, p) in enumerate(window) if p is not None), None)
        last = window[-1][2]
        if first is None or last is None or count - 1 <= first[0]:
            return 0.0
        span = (last - first[1]) * (count - 1) / (count - 1 - first[0])
        return span if 0 < span <= 2 * self.window_s else 0.0  # ignore timestamp jumps

    def snapshot(self, state: SourceState, reason: str) -> SourceStats:
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            count = len(self._window)
            span = 0.0
            if count >= 2:
                # Rates over [first sample, now]: they are right while the window
                # fills and decay to zero when the source stalls.  The first
                # sample only marks the start of the interval.  Units that
                # arrive in a burst (the demuxer's probe, a network hiccup)
                # span their presentation times, not their arrival times.
                span = max(now - self._window[0][0], self._pts_span(count))
            if count >= 2 and span >= MIN_RATE_SPAN_S:
                kbps = (self._window_bytes - self._window[0][1]) * 8 / 1000 / span
                fps = (count - 1) / span
            else:
                # Too little to measure (two units of a burst, without timestamps that
                # span them): 0 is "not measured yet", never a claim of 1,000 fps.
                kbps = fps = 0.0
            return SourceStats(
                state=state,
                reason=reason,
                packets=self.packets,
                bytes=self.bytes,
                keyframes=self.keyframes,
                kbps=round(kbps, 1),
                fps=round(fps, 2),
                gop=self.gop,
                last_packet_ns=self.last_packet_ns,
                reconnects=self.reconnects,
                connect_attempts=self.connect_attempts,
                frames_dropped=self.frames_dropped,
                frames_skipped=self.frames_skipped,
            )
