"""`edge camera probe URL`: connect once, measure, report, disconnect."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from fractions import Fraction

import av

from drivers.rtsp.demux import (
    NO_CODEC,
    AccessUnitAssembler,
    SourceError,
    Transport,
    open_source,
    redact_url,
)
from drivers.rtsp.diagnose import diagnose
from drivers.rtsp.errors import (
    INVALID_DATA,
    UNREADABLE_REPLY,
    ProbeError,
    describe_error,
    describe_open_error,
)
from drivers.source import Codec

_READ_POLL_S = 0.5
_DIAGNOSE_S = 3.0
# FFmpeg's reasons that say something was wrong but not what: the probe then
# replays the handshake itself to name it.
_VAGUE = frozenset({INVALID_DATA, UNREADABLE_REPLY, NO_CODEC})


@dataclass(frozen=True, slots=True)
class ProbeResult:
    url: str  # password redacted
    transport: Transport
    codec: Codec
    profile: str
    level: str
    width: int
    height: int
    fps: float | None  # measured over the probe; the SPS/SDP value if too few frames
    kbps: float
    gop: int | None  # frames between the last two keyframes seen
    first_keyframe_ms: float  # from connect start to the first keyframe
    frames: int
    profile_level_id: str | None


async def probe(
    url: str,
    seconds: float = 3.0,
    transport: Transport = "tcp",
    *,
    open_timeout: float = 5.0,
) -> ProbeResult:
    """Read `url` for `seconds` and describe the stream; raises ProbeError.

    Runs in a worker thread; the whole call is bounded by roughly
    `open_timeout + seconds`.
    """
    return await asyncio.to_thread(_probe_blocking, url, seconds, transport, open_timeout)


def _probe_blocking(
    url: str, seconds: float, transport: Transport, open_timeout: float
) -> ProbeResult:
    started = time.monotonic()
    try:
        container = open_source(url, transport, open_timeout, _READ_POLL_S)
    except SourceError as exc:
        raise ProbeError(str(exc)) from None
    except Exception as exc:
        elapsed = time.monotonic() - started
        reason = describe_open_error(exc, elapsed, open_timeout)
        raise ProbeError(_explained(url, reason, open_timeout)) from None
    try:
        return _measure(container, url, transport, seconds, started, open_timeout)
    finally:
        container.close()


def _explained(url: str, reason: str, open_timeout: float) -> str:
    """`reason`, or what the camera got wrong when FFmpeg's reason does not say."""
    if reason not in _VAGUE:
        return reason
    return diagnose(url, min(open_timeout, _DIAGNOSE_S)) or reason


def _measure(
    container: av.container.InputContainer,
    url: str,
    transport: Transport,
    seconds: float,
    started: float,
    open_timeout: float,
) -> ProbeResult:
    stream = container.streams.video[0]
    try:
        assembler = AccessUnitAssembler(stream)
    except SourceError as exc:
        raise ProbeError(_explained(url, str(exc), open_timeout)) from None
    first_key: float | None = None
    keyframe_positions: list[int] = []
    frames = 0
    # Rates come from presentation timestamps, not arrival times: probing makes
    # the first frames arrive in a burst, which would inflate a wall-clock rate.
    first_pts: int | None = None
    last_pts: int | None = None
    timed_frames = 0
    timed_bytes = 0
    time_base: Fraction = Fraction(1, 90_000)
    deadline = started + open_timeout + seconds
    end: float | None = None
    while True:
        try:
            for packet in container.demux(stream):
                now = time.monotonic()
                au = assembler.push(packet)
                if au is not None:
                    if first_key is None:
                        first_key = now
                        end = now + seconds
                    if au.keyframe:
                        keyframe_positions.append(frames)
                    frames += 1
                    if au.pts is not None:
                        if first_pts is None:
                            first_pts, time_base = au.pts, au.time_base
                        else:
                            timed_frames += 1
                            timed_bytes += len(au.data)
                        last_pts = au.pts
                if (end is not None and now >= end) or now >= deadline:
                    break
            else:
                if first_key is None:
                    raise ProbeError("closed by source before the first keyframe")
            break
        except av.error.ExitError:
            if time.monotonic() >= (end if end is not None else deadline):
                break
        except ProbeError:
            raise
        except Exception as exc:
            raise ProbeError(describe_error(exc)) from None
    info = assembler.stream_info
    if first_key is None or info is None:
        raise ProbeError(f"no keyframe within {open_timeout + seconds:g} s")
    duration = (
        float((last_pts - first_pts) * time_base)
        if first_pts is not None and last_pts is not None
        else 0.0
    )
    fps = round(timed_frames / duration, 2) if timed_frames >= 2 and duration > 0 else info.fps
    kbps = round(timed_bytes * 8 / 1000 / duration, 1) if duration > 0 else 0.0
    gop = None
    if len(keyframe_positions) >= 2:
        gop = keyframe_positions[-1] - keyframe_positions[-2]
    return ProbeResult(
        url=redact_url(url),
        transport=transport,
        codec=info.codec,
        profile=info.profile,
        level=info.level,
        width=info.width,
        height=info.height,
        fps=fps,
        kbps=kbps,
        gop=gop,
        first_keyframe_ms=round((first_key - started) * 1000, 1),
        frames=frames,
        profile_level_id=info.profile_level_id,
    )
