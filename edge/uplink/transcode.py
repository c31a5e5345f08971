"""H.265 to H.264 for viewers: the one place the uplink decodes video.

aiortc cannot packetise H.265, and browsers' WebRTC support for it is
patchy, so an H.265 camera reaches the centre as H.264: its sub stream
(small, cheap to decode) is decoded, scaled to fit 640x360 and encoded with
libx264 (constrained baseline, which every WebRTC decoder takes). One
:class:`Transcoder` serves every viewer of a stream (it is a
:class:`~edge.uplink.fanout.FrameSource` under a fanout), and the session
manager allows at most ``uplink.max_transcodes`` at once.

The decode and encode run in a worker thread. Units reach it through a
bounded queue; when it falls behind, units are dropped up to the next keyframe
(the decoder can only restart there), so the event loop and the camera never
wait for it. Output keyframes follow the camera's (an IDR is forced wherever
the input has one), so viewers join and resynchronise exactly as they would
on the camera's own H.264, and each output keyframe carries SPS/PPS in-band.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from fractions import Fraction
from typing import Any

import av
from av.video.frame import PictureType

from edge.media.gop import KeyframeGate
from edge.media.wire import MediaFrame
from edge.uplink.fanout import FrameSource
from edge.uplink.sdp import profile_level_id_from_annexb

log = logging.getLogger(__name__)

MAX_SIZE = (640, 360)
BITRATE = 800_000
IN_QUEUE = 30  # a second at 30 fps
OUT_TIME_BASE = Fraction(1, 90_000)


class TranscodeError(Exception):
    pass


def fit(width: int, height: int, box: tuple[int, int] = MAX_SIZE) -> tuple[int, int]:
    """The largest even size within `box` with the aspect of width x height (never upscaled)."""
    scale = min(box[0] / width, box[1] / height, 1.0)
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def _encoder(width: int, height: int, fps: float, bitrate: int) -> av.VideoCodecContext:
    ctx = av.CodecContext.create("libx264", "w")
    assert isinstance(ctx, av.VideoCodecContext)
    ctx.width, ctx.height = width, height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = OUT_TIME_BASE
    ctx.framerate = Fraction(round(fps or 30), 1)
    ctx.bit_rate = bitrate
    ctx.max_b_frames = 0
    ctx.thread_count = 1  # one core at most, and no frame of delay from frame threads
    kbps = bitrate // 1000
    ctx.options = {
        "preset": "superfast",
        "tune": "zerolatency",
        "profile": "baseline",
        "forced-idr": "1",
        # Keyframes come when the camera's do (forced); keyint is only a backstop.
        "x264-params": f"keyint=300:min-keyint=1:scenecut=0:repeat-headers=1:"
                       f"vbv-maxrate={kbps}:vbv-bufsize={kbps}",
    }
    ctx.open()
    return ctx


class Transcoder:
    """A FrameSource of H.264 made from a FrameSource of H.265."""

    def __init__(self, source: FrameSource, name: str = "", fps: float = 30.0,
                 max_size: tuple[int, int] = MAX_SIZE, bitrate: int = BITRATE) -> None:
        self.name = name
        self._source = source
        self._fps = fps
        self._max_size = max_size
        self._bitrate = bitrate
        self._loop = asyncio.get_running_loop()
        self._in: queue.Queue[MediaFrame | None] = queue.Queue(maxsize=IN_QUEUE)
        self._out: asyncio.Queue[MediaFrame | BaseException] = asyncio.Queue()
        # Open: the source starts at a keyframe. Closed by a full queue (the
        # worker fell behind) or by a unit that does not decode (from the worker).
        self._gate = KeyframeGate(waiting=False)
        self.profile_level_id: str | None = None
        self.size: tuple[int, int] | None = None
        self.first_keyframe = asyncio.Event()
        self.dropped = 0
        self.decode_errors = 0
        self.encoded = 0
        self._closed = False
        self._force_idr = False  # a viewer asked for a keyframe: the next picture is one
        self._thread = threading.Thread(target=self._work, name=f"transcode-{name}", daemon=True)
        self._thread.start()
        self._feeder = asyncio.create_task(self._feed(), name=f"transcode-feed-{name}")

    async def recv(self) -> MediaFrame:
        item = await self._out.get()
        if isinstance(item, BaseException):
            raise TranscodeError(str(item)) from item
        return item

    def request_keyframe(self) -> None:
        """Encode the next picture as an IDR (a viewer lost one): ours to give at once."""
        self._force_idr = True

    def close(self) -> None:
        self._closed = True
        self._feeder.cancel()
        # Also here: a feeder cancelled before it first ran never reaches its finally.
        self._source.close()
        with contextlib.suppress(queue.Full):
            # Wake the worker so it ends; if the queue is full it sees _closed next.
            self._in.put_nowait(None)

    # -- event loop side ---------------------------------------------------------------
    async def _feed(self) -> None:
        try:
            while True:
                frame = await self._source.recv()
                if frame.codec != "h265":
                    raise TranscodeError(f"expected h265 units, got {frame.codec}")
                if not self._gate.passes(frame.keyframe):
                    self.dropped += 1
                    continue
                try:
                    self._in.put_nowait(frame)
                except queue.Full:
                    # The worker fell a second behind: restart it at the next keyframe.
                    self.dropped += 1
                    self._gate.lose()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._out.put_nowait(e)
        finally:
            self._source.close()
            with contextlib.suppress(queue.Full):
                self._in.put_nowait(None)

    def _deliver(self, frame: MediaFrame) -> None:
        if frame.keyframe and self.profile_level_id is None:
            self.profile_level_id = profile_level_id_from_annexb(frame.data)
            self.first_keyframe.set()
        self._out.put_nowait(frame)

    # -- worker thread -------------------------------------------------------------------
    def _work(self) -> None:
        try:
            self._transcode()
        except Exception as e:  # reported to the fanout, which logs it and tells the viewers
            log.exception("transcoder %s failed", self.name)
            with contextlib.suppress(RuntimeError):  # the loop may be gone at shutdown
                self._loop.call_soon_threadsafe(self._out.put_nowait, e)

    def _transcode(self) -> None:
        decoder = av.CodecContext.create("hevc", "r")
        assert isinstance(decoder, av.VideoCodecContext)
        decoder.thread_count = 1
        encoder: av.VideoCodecContext | None = None
        pending: dict[int, MediaFrame] = {}
        counter = 0
        while True:
            item = self._in.get()
            if item is None or self._closed:
                return
            try:
                pictures = decoder.decode(av.Packet(item.data))
            except av.FFmpegError:
                # A unit that does not decode: start again at the next keyframe.
                self.decode_errors += 1
                self._gate.lose()
                continue
            for picture in pictures:
                size = fit(picture.width, picture.height, self._max_size)
                if encoder is None or (encoder.width, encoder.height) != size:
                    encoder = _encoder(*size, self._fps, self._bitrate)
                    self.size = size
                out = picture.reformat(width=size[0], height=size[1], format="yuv420p")
                counter += 1
                out.pts = counter
                out.time_base = OUT_TIME_BASE
                force, self._force_idr = self._force_idr, False
                out.pict_type = PictureType.I if item.keyframe or force else PictureType.NONE
                pending[counter] = item
                for packet in encoder.encode(out):
                    self._emit(packet, pending)

    def _emit(self, packet: av.Packet[Any], pending: dict[int, MediaFrame]) -> None:
        source = pending.pop(packet.pts, None) if packet.pts is not None else None
        for stale in [k for k in pending if packet.pts is not None and k < packet.pts]:
            del pending[stale]
        if source is None:
            return
        self.encoded += 1
        frame = MediaFrame(source.epoch, source.seq, bool(packet.is_keyframe), source.pts,
                           source.dts, source.time_base, "h264", source.received_ns,
                           bytes(packet))
        with contextlib.suppress(RuntimeError):  # the loop may be gone at shutdown
            self._loop.call_soon_threadsafe(self._deliver, frame)
