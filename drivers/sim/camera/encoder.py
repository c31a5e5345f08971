"""Encoding for the simulated camera (PyAV, libx264/libx265).

Everything here is blocking and CPU-bound: callers run it in a worker thread.

Two modes:

* `encode_loop` encodes a few seconds ONCE; the server replays those access units
  forever with live RTP timestamps.  `loop_cache.get_loop` keeps loops in
  memory and on disk, keyed by everything that changes the bitstream, so a
  camera restarted with the same settings pays for the encode only once.
* `LiveEncoder` encodes each frame as it is rendered, so the timestamp blocks
  carry the real encode time (for latency benchmarks).  It uses preset
  ultrafast so that one 720p30 stream fits on one core.

The encoders repeat parameter sets before every keyframe, as dome cameras do, and
use closed GOPs with a fixed length and no B-frames, so every keyframe is an
IDR that a fresh decoder can start from.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal, Protocol

import av
from av.video.frame import PictureType

from drivers.rtsp.annexb import (
    Codec,
    is_keyframe_nal,
    nal_type,
    parameter_set_types,
    split_annexb,
)

if TYPE_CHECKING:
    from drivers.sim.camera.scene import Frame

Profile = Literal["baseline", "main", "high"]


@dataclass(frozen=True, slots=True)
class EncoderSettings:
    """Everything that determines the encoded bitstream of one stream."""

    name: str
    width: int
    height: int
    fps: int = 30
    bitrate: int = 2_000_000
    gop: int = 30
    codec: Codec = "h264"
    profile: Profile = "baseline"
    preset: str = "veryfast"
    # Dome cameras repeat SPS/PPS before every IDR; off, only the first IDR has
    # them (like GStreamer's rtph264pay default), to test ingests that must cope.
    repeat_parameter_sets: bool = True
    # The picture is a PTZ camera's home view of the `viewport` world (ruler and
    # all) rather than the plain scene, so that leaving home and coming back match.
    viewport: bool = False


class Renderer(Protocol):
    """Draws frame `index` (a `Scene`, or a `ViewportScene` following a PTZ)."""

    def render(self, index: int, wall_ns: int | None = None) -> Frame: ...


def scene_for(settings: EncoderSettings) -> Renderer:
    """The picture these settings encode: the plain scene, or the viewport's home view."""
    # Here: drawing needs OpenCV and numpy, which a camera serving cached loops never does.
    from drivers.sim.camera.scene import Scene
    from drivers.sim.camera.viewport import ViewportScene

    if settings.viewport:
        return ViewportScene(settings.name, settings.width, settings.height, settings.fps)
    return Scene(settings.name, settings.width, settings.height, settings.fps)


@dataclass(frozen=True, slots=True)
class EncodedAU:
    """One access unit: its NAL units without start codes."""

    nals: tuple[bytes, ...]
    keyframe: bool

    @property
    def size(self) -> int:
        return sum(len(n) for n in self.nals)


@dataclass(frozen=True, slots=True)
class ParameterSets:
    """VPS (H.265 only), SPS and PPS NAL units, as the SDP advertises them."""

    codec: Codec
    vps: bytes | None
    sps: bytes
    pps: bytes


@dataclass(slots=True)
class EncodedLoop:
    settings: EncoderSettings
    aus: list[EncodedAU]
    params: ParameterSets
    keyframe_indices: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.keyframe_indices = [i for i, au in enumerate(self.aus) if au.keyframe]


def _open_codec(settings: EncoderSettings) -> av.VideoCodecContext:
    encoder = "libx264" if settings.codec == "h264" else "libx265"
    ctx = av.CodecContext.create(encoder, "w")
    assert isinstance(ctx, av.VideoCodecContext)
    ctx.width = settings.width
    ctx.height = settings.height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, settings.fps)
    ctx.framerate = Fraction(settings.fps, 1)
    ctx.bit_rate = settings.bitrate
    ctx.gop_size = settings.gop
    ctx.max_b_frames = 0
    # One thread: predictable CPU, and a single slice per picture.
    ctx.thread_count = 1
    kbps = settings.bitrate // 1000
    gop = settings.gop
    if settings.codec == "h264":
        ctx.options = {
            "preset": settings.preset,
            "tune": "zerolatency",
            "profile": settings.profile,
            "forced-idr": "1",
            "x264-params": (
                f"keyint={gop}:min-keyint={gop}:scenecut=0:repeat-headers=1:"
                f"vbv-maxrate={kbps}:vbv-bufsize={kbps}{_x264_profile_tools(settings.profile)}"
            ),
        }
    else:
        ctx.options = {
            "preset": settings.preset,
            "tune": "zerolatency",
            "forced-idr": "1",
            "x265-params": (
                f"keyint={gop}:min-keyint={gop}:scenecut=0:open-gop=0:bframes=0:"
                f"repeat-headers=1:info=0:log-level=error:pools=1:frame-threads=1:"
                f"vbv-maxrate={kbps}:vbv-bufsize={kbps}"
            ),
        }
    ctx.open()
    return ctx


def _x264_profile_tools(profile: Profile) -> str:
    # x264's profile is only a ceiling: faster presets turn off CABAC and 8x8
    # transforms and the stream silently comes out Constrained Baseline.  A
    # camera configured for High must really send High (WebRTC tests need it).
    if profile == "high":
        return ":cabac=1:8x8dct=1"
    if profile == "main":
        return ":cabac=1"
    return ""


def _to_aus(codec: Codec, packets: list[av.Packet[Any]]) -> list[EncodedAU]:
    aus = []
    for packet in packets:
        nals = tuple(split_annexb(bytes(packet)))
        aus.append(EncodedAU(nals, any(is_keyframe_nal(codec, n) for n in nals)))
    return aus


def _without_parameter_sets(codec: Codec, au: EncodedAU) -> EncodedAU:
    # The encoder always repeats them (so the first keyframe has them whatever
    # FFmpeg's global-header handling does); a camera that "does not repeat"
    # is made by removing them afterwards.
    types = parameter_set_types(codec)
    return EncodedAU(tuple(n for n in au.nals if nal_type(codec, n) not in types), au.keyframe)


def extract_parameter_sets(codec: Codec, au: EncodedAU) -> ParameterSets:
    found: dict[int, bytes] = {}
    for nal in au.nals:
        t = nal_type(codec, nal)
        if t in parameter_set_types(codec):
            found.setdefault(t, nal)
    types = parameter_set_types(codec)
    if any(t not in found for t in types):
        raise RuntimeError("encoder did not emit parameter sets with the keyframe")
    if codec == "h264":
        return ParameterSets(codec, None, found[types[0]], found[types[1]])
    return ParameterSets(codec, found[types[0]], found[types[1]], found[types[2]])


def _frame(scene: Renderer, index: int, wall_ns: int) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(scene.render(index, wall_ns), format="bgr24")
    frame.pts = index
    return frame


class EncodeCancelled(Exception):
    """`encode_loop` was asked to stop (its camera closed while encoding)."""


def encode_loop(
    settings: EncoderSettings, seconds: float, cancel: threading.Event | None = None
) -> EncodedLoop:
    """Encode `seconds` of the scene (uncached; see `loop_cache.get_loop`).

    Checks `cancel` between frames, so a camera closed during its start-up
    encode does not keep a core busy (or its process alive) for seconds.
    """
    ctx = _open_codec(settings)
    scene = scene_for(settings)
    count = max(1, round(seconds * settings.fps))
    start_ns = time.time_ns()
    packets: list[av.Packet[Any]] = []
    for index in range(count):
        if cancel is not None and cancel.is_set():
            raise EncodeCancelled(settings.name)
        wall_ns = start_ns + index * 1_000_000_000 // settings.fps
        packets.extend(ctx.encode(_frame(scene, index, wall_ns)))
    packets.extend(ctx.encode(None))
    aus = _to_aus(settings.codec, packets)
    if not aus or not aus[0].keyframe:
        raise RuntimeError("encoded loop does not start with a keyframe")
    if not settings.repeat_parameter_sets:
        aus = aus[:1] + [_without_parameter_sets(settings.codec, au) for au in aus[1:]]
    return loop_from_aus(settings, aus)


def loop_from_aus(settings: EncoderSettings, aus: list[EncodedAU]) -> EncodedLoop:
    """An `EncodedLoop` from its access units; the first must carry the parameter sets."""
    return EncodedLoop(settings, aus, extract_parameter_sets(settings.codec, aus[0]))


class LiveEncoder:
    """Renders and encodes frames on demand, stamping the current wall time.

    `scene` draws the pictures (default: `scene_for(settings)`).
    """

    def __init__(self, settings: EncoderSettings, scene: Renderer | None = None) -> None:
        self.settings = settings
        self._ctx = _open_codec(settings)
        self._scene = scene if scene is not None else scene_for(settings)
        self._index = 0

    def encode_next(self, force_keyframe: bool = False) -> list[EncodedAU]:
        frame = _frame(self._scene, self._index, time.time_ns())
        if force_keyframe or self._index == 0:
            frame.pict_type = PictureType.I
        first = self._index == 0
        self._index += 1
        aus = _to_aus(self.settings.codec, list(self._ctx.encode(frame)))
        if not self.settings.repeat_parameter_sets and not first:
            aus = [_without_parameter_sets(self.settings.codec, au) for au in aus]
        return aus

    def close(self) -> None:
        # Draining frees the encoder's lookahead; the packets are not wanted.
        try:
            list(self._ctx.encode(None))
        except av.FFmpegError:
            pass


def probe_parameter_sets(settings: EncoderSettings) -> ParameterSets:
    """Parameter sets a live encoder with these settings will emit.

    x264/x265 emit identical parameter sets for identical settings, so one
    throw-away frame tells the SDP what every later live encoder will send.
    """
    encoder = LiveEncoder(settings)
    try:
        aus = encoder.encode_next(force_keyframe=True)
        while not aus:
            aus = encoder.encode_next()
        return extract_parameter_sets(settings.codec, aus[0])
    finally:
        encoder.close()
