"""What every camera source gives the camera service, whatever its protocol.

A source pulls one stream (RTSP today; GB/T 28181, ONVIF and replay later)
and hands out encoded access units, never decoded. The camera service knows
only this interface; each protocol implements it in its own driver package
(`drivers.rtsp.RtspSource`), and a source whose address is learnt at run
time wraps one (`drivers.resolved_source.ResolvedSource`).

A source is constructed with the two callbacks it reports through:

* ``sink(au)``: every access unit, in order, called in the source's own
  thread (the hot path: 30 a second per stream, no event-loop hop). It must
  be quick, non-blocking and thread-safe. The first unit of each connection
  is a keyframe, and a keyframe begins with its parameter sets.
* ``on_state(state, reason)``: on the event loop, at every change of state
  or reason.

A source whose camera costs something while it sends (a GB/T 28181 device
streams over its SIM's data) may let it go while nobody consumes the stream:
it is an :class:`OnDemandSource`, told how many consume it and for how long
an unwatched stream is kept.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, Protocol, runtime_checkable

Codec = Literal["h264", "h265"]


@dataclass(frozen=True, slots=True)
class AccessUnit:
    """One encoded picture as demuxed, never decoded.

    `data` is Annex-B.  Keyframe access units always begin with the stream's
    parameter sets (VPS/)SPS/PPS: the source prepends the latest ones when the
    camera did not repeat them in-band, so a fresh decoder can start at any
    keyframe.  `pts`/`dts` are in `time_base` units (1/90000 for RTSP) and may
    be None for the first unit after a (re)connect.  `received_ns` is the wall
    clock (time.time_ns) when the demuxer returned it; `sequence` counts
    delivered-or-dropped units over the life of the source, so a gap means
    frames were dropped.
    """

    data: bytes
    pts: int | None
    dts: int | None
    time_base: Fraction
    keyframe: bool
    codec: Codec
    received_ns: int
    sequence: int = 0


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What a consumer needs to set up a decoder or an SDP offer."""

    codec: Codec
    profile: str  # e.g. "Constrained Baseline", "High", "Main"
    level: str  # e.g. "3.1", "4"
    width: int
    height: int
    fps: float | None  # from the SPS timing info or the SDP; None if unknown
    extradata: bytes  # as the demuxer gave it (Annex-B for RTSP)
    parameter_sets: tuple[bytes, ...]  # (VPS,) SPS, PPS NAL units, no start codes
    profile_level_id: str | None = None  # H.264 only, SDP form from the SPS, e.g. "42c01f"

    @property
    def parameter_sets_annexb(self) -> bytes:
        # Imported on use: the RTSP package, home of the Annex-B helpers, imports this module.
        from drivers.rtsp.annexb import join_annexb

        return join_annexb(self.parameter_sets)


class SourceState(enum.StrEnum):
    CONNECTING = "connecting"  # never been live yet (includes a camera answering 5xx)
    LIVE = "live"
    DOWN = "down"  # was live or failed to connect; retrying with backoff
    STANDBY = "standby"  # let go while nobody consumes the stream; fetched again when one does
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class SourceStats:
    state: SourceState
    reason: str
    packets: int
    bytes: int
    keyframes: int
    kbps: float  # over the sliding window
    fps: float  # measured over the sliding window
    gop: int | None  # frames between the last two keyframes
    last_packet_ns: int | None  # wall clock of the last access unit
    reconnects: int  # times the source came back after being lost
    connect_attempts: int
    frames_dropped: int  # units the source discarded rather than hand on
    frames_skipped: int  # discarded while waiting for the first keyframe of a connection

    @classmethod
    def idle(cls, state: SourceState, reason: str) -> SourceStats:
        """The figures of a source that has not connected to anything yet."""
        return cls(state=state, reason=reason, packets=0, bytes=0, keyframes=0, kbps=0.0,
                   fps=0.0, gop=None, last_packet_ns=None, reconnects=0, connect_attempts=0,
                   frames_dropped=0, frames_skipped=0)


AccessUnitSink = Callable[[AccessUnit], None]
StateCallback = Callable[[SourceState, str], None]


class Source(Protocol):
    """One stream from a camera, reconnecting by itself until stopped."""

    name: str  # for logs and reasons; never holds a password
    sink: AccessUnitSink

    @property
    def stream_info(self) -> StreamInfo | None:
        """Codec parameters of the current (or last) connection; set before it is live."""

    @property
    def stats(self) -> SourceStats:
        """Counters and rates, with the current state and reason."""

    async def start(self) -> None:
        """Begin connecting (returns at once; progress is reported through `on_state`)."""

    async def stop(self) -> None:
        """Stop and let go of the camera; returns within about a second."""

    async def request_keyframe(self) -> str | None:
        """Ask the camera for a keyframe now: None once asked, else why it cannot be."""


@runtime_checkable
class OnDemandSource(Protocol):
    """A source that lets its camera go while nobody consumes its stream (`STANDBY`).

    `linger_s` is how long an unwatched stream is kept before it is let go (0: never);
    set before `start`. `consumers_changed` is called on the event loop whenever the
    number of consumers changes, and once a consumer comes the camera is fetched at once.
    """

    linger_s: float

    def consumers_changed(self, count: int) -> None:
        """`count` consumers now (0: nobody watches, and the linger time runs)."""
