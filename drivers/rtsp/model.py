"""Value types the RTSP ingest hands to its users."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from drivers.rtsp.annexb import join_annexb

Codec = Literal["h264", "h265"]


@dataclass(frozen=True, slots=True)
class AccessUnit:
    """One encoded picture as demuxed, never decoded.

    `data` is Annex-B.  Keyframe access units always begin with the stream's
    parameter sets (VPS/)SPS/PPS: the ingest prepends the latest ones when the
    camera did not repeat them in-band, so a fresh decoder can start at any
    keyframe.  `pts`/`dts` are in `time_base` units (1/90000 for RTSP) and may
    be None for the first unit after a (re)connect.  `received_ns` is the wall
    clock (time.time_ns) when the demuxer returned it; `sequence` counts
    delivered-or-dropped units over the life of the ingest, so a gap means
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
    profile_level_id: str | None = None  # H.264 only, SDP form, e.g. "42c01f"

    @property
    def parameter_sets_annexb(self) -> bytes:
        return join_annexb(self.parameter_sets)


class IngestState(enum.StrEnum):
    CONNECTING = "connecting"  # never been live yet (includes a camera answering 5xx)
    LIVE = "live"
    DOWN = "down"  # was live or failed to connect; retrying with backoff
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class IngestStats:
    state: IngestState
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
    frames_dropped: int  # dropped because the consumer fell behind
    frames_skipped: int  # discarded while waiting for the first keyframe of a connection
