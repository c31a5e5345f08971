"""The simulated device's video: a short encoded loop per channel and PTZ view, sent as PS over RTP.

A channel's picture is a window onto a "world" twice the frame's width and
height (`drivers.sim.camera.viewport`, shared with the ONVIF camera): the camera
simulator's moving scene with a fixed ruler whose white block a test finds again
(`viewport.marker_x`). Pan and tilt move the window, zoom shrinks or grows it.

Each PTZ move command moves the view one step (pan a eighth of the frame width,
tilt a eighth of its height, zoom by 1.25x) whatever its speed, and stop does
nothing: the view is always one of a few quantised positions. Each position's
picture is a 1 s loop (one GOP, 320x180, 25 fps, libx264 ultrafast: about 0.1 s
of one core) made when first needed, in a worker thread: read from the camera
simulator's loop cache on disk (`drivers.sim.camera.loop_cache`, keyed by
everything that changes its bytes: `view_loop_key`), else drawn, encoded and
stored there; a channel keeps its last few in memory. Drawing needs OpenCV and
numpy (half of the 110 MB resident of a device that drew at start), so one whose
loops are all on disk never imports them; a move to a position never cached
does, then. A stream keeps sending the old loop until the new one is ready, then
switches to the new loop's first picture, an IDR, so the receiver never sees a
picture that refers to the old loop. An idle device encodes nothing after its
first loop per channel; a streaming one only packetises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from typing import Any, Literal

import av

from drivers.gb28181 import ptz_cmd
from drivers.gb28181.ps_mux import PsMuxer, RtpPacketizer, rfc4571_frame
from drivers.gb28181.ptz_cmd import PtzCmd
from drivers.rtsp.annexb import Codec, is_keyframe_nal, join_annexb, split_annexb
from drivers.sim.camera import loop_cache, viewport
from drivers.sim.camera.encoder import EncodedAU

log = logging.getLogger(__name__)

WIDTH, HEIGHT, FPS = 320, 180, 25
BITRATE = 400_000
PAN_STEPS = 8  # steps either side of the centre; the window is clamped inside the world anyway
TILT_STEPS = 8
ZOOM_STEPS = (-2, 4)  # 1.25**-2 = 0.64 (wider) .. 1.25**4 = 2.4 (closer)
CACHED_LOOPS = 16  # per channel: a few positions to go back and forth between
# Bump when this module changes a view loop's bytes in a way `view_loop_key` does not name
# (the drawing has `viewport.SCENE_VERSION`): the next start encodes every view again.
VIEW_LOOP_VERSION = 1
_CLOCK = 90_000


@dataclass(frozen=True, slots=True)
class View:
    """Where the PTZ points, in steps from home."""

    pan: int = 0
    tilt: int = 0
    zoom: int = 0

    def moved(self, command: PtzCmd) -> View:
        """The view after `command` (one step per direction named); self if it moves nothing."""
        if command.kind != "ptz":
            return self
        bits = command.instruction
        pan = self.pan + (bits & ptz_cmd.RIGHT != 0) - (bits & ptz_cmd.LEFT != 0)
        tilt = self.tilt + (bits & ptz_cmd.UP != 0) - (bits & ptz_cmd.DOWN != 0)
        zoom = self.zoom + (bits & ptz_cmd.ZOOM_IN != 0) - (bits & ptz_cmd.ZOOM_OUT != 0)
        return replace(self, pan=max(-PAN_STEPS, min(PAN_STEPS, pan)),
                       tilt=max(-TILT_STEPS, min(TILT_STEPS, tilt)),
                       zoom=max(ZOOM_STEPS[0], min(ZOOM_STEPS[1], zoom)))

    def window(self) -> viewport.View:
        """The viewport this many steps away from home."""
        return viewport.View(pan=self.pan / 8, tilt=self.tilt / 8, zoom=1.25 ** self.zoom)


@dataclass(frozen=True, slots=True)
class LoopPicture:
    """One encoded picture of a loop: Annex-B bytes (parameter sets before each IDR)."""

    data: bytes
    keyframe: bool


def _encoder_options(codec: Codec, fps: int) -> dict[str, str]:
    # One GOP per loop, closed, parameter sets with the IDR: every loop (and so every
    # switch to another PTZ view) starts where a fresh decoder can.
    if codec == "h264":
        return {"preset": "ultrafast", "tune": "zerolatency",
                "x264-params": f"keyint={fps}:min-keyint={fps}:scenecut=0:repeat-headers=1"}
    return {"preset": "ultrafast", "tune": "zerolatency",
            "x265-params": f"keyint={fps}:min-keyint={fps}:scenecut=0:open-gop=0:"
                           "bframes=0:repeat-headers=1:info=0:log-level=error:"
                           "pools=1:frame-threads=1"}


def _codec_context(codec: Codec, width: int, height: int, fps: int) -> av.VideoCodecContext:
    ctx = av.CodecContext.create("libx264" if codec == "h264" else "libx265", "w")
    assert isinstance(ctx, av.VideoCodecContext)
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, fps)
    ctx.framerate = Fraction(fps, 1)
    ctx.bit_rate = BITRATE
    ctx.gop_size = fps
    ctx.max_b_frames = 0
    ctx.thread_count = 1
    ctx.options = _encoder_options(codec, fps)
    ctx.open()
    return ctx


def _key_fields(name: str, view: View, codec: Codec, width: int, height: int,
                fps: int) -> dict[str, object]:
    # The window as well as the steps: a change to `View.window` changes the key by itself.
    return {"gb28181_view": {
        "version": VIEW_LOOP_VERSION, "name": name, "view": asdict(view),
        "window": asdict(view.window()), "codec": codec, "width": width, "height": height,
        "fps": fps, "frames": fps, "gop": fps, "bitrate": BITRATE,
        "options": _encoder_options(codec, fps)}}


def view_loop_key(name: str, view: View, *, codec: Codec = "h264", width: int = WIDTH,
                  height: int = HEIGHT, fps: int = FPS) -> str:
    """The loop cache's key for this view loop (`loop_cache.canonical_key`)."""
    return loop_cache.canonical_key(_key_fields(name, view, codec, width, height, fps), codec)


def view_loop(name: str, view: View, *, codec: Codec = "h264", width: int = WIDTH,
              height: int = HEIGHT, fps: int = FPS) -> list[LoopPicture]:
    """One second of channel `name` seen through `view`: from the loop cache on disk, else
    encoded now (`encode_view`) and stored. Blocking (CPU-bound on a miss): use a thread."""
    label = f"gb-{name}-p{view.pan}t{view.tilt}z{view.zoom}-{width}x{height}-{codec}"
    aus = loop_cache.cached_aus(
        label, _key_fields(name, view, codec, width, height, fps), codec,
        lambda: encode_view(name, view, codec=codec, width=width, height=height, fps=fps))
    return [LoopPicture(join_annexb(au.nals), au.keyframe) for au in aus]


def encode_view(name: str, view: View, *, codec: Codec = "h264", width: int = WIDTH,
                height: int = HEIGHT, fps: int = FPS) -> list[EncodedAU]:
    """Draw and encode `view_loop`'s pictures, uncached (imports OpenCV and numpy)."""
    window = view.window()
    scene = viewport.ViewportScene(name, width, height, fps, lambda: window)
    ctx = _codec_context(codec, width, height, fps)
    start_ns = time.time_ns()
    packets: list[av.Packet[Any]] = []
    for index in range(fps):
        frame = av.VideoFrame.from_ndarray(
            scene.render(index, start_ns + index * 1_000_000_000 // fps), format="bgr24")
        frame.pts = index
        packets.extend(ctx.encode(frame))
    packets.extend(ctx.encode(None))
    aus = []
    for packet in packets:
        nals = tuple(split_annexb(bytes(packet)))
        aus.append(EncodedAU(nals, any(is_keyframe_nal(codec, n) for n in nals)))
    if not aus or not aus[0].keyframe:
        raise RuntimeError(f"the {codec} loop of {name} does not start with a keyframe")
    return aus


class ChannelVideo:
    """One channel's picture: its PTZ view and the encoded loop for that view."""

    def __init__(self, name: str, *, codec: Codec = "h264") -> None:
        self.name = name
        self.codec: Codec = codec
        self.view = View()
        self.loop: list[LoopPicture] | None = None
        self.loop_view: View | None = None
        self.generation = 0
        """Bumped each time `loop` changes, so a stream knows to switch."""
        self.commands = 0
        self._cache: OrderedDict[View, list[LoopPicture]] = OrderedDict()
        self._lock = asyncio.Lock()
        self._ready = asyncio.Event()

    async def ready(self) -> list[LoopPicture]:
        """The loop for the current view (encoding the first one if needed)."""
        if self.loop is None:
            await self.refresh()
        await self._ready.wait()
        assert self.loop is not None
        return self.loop

    def apply(self, command: PtzCmd) -> View:
        """Take a PTZ command; the picture follows once its loop is encoded."""
        self.commands += 1
        self.view = self.view.moved(command)
        return self.view

    async def refresh(self) -> None:
        """Take the loop for the current view from memory, disk or an encode, until it is
        current."""
        async with self._lock:
            while self.loop_view != self.view:
                view = self.view
                pictures = self._cache.get(view)
                if pictures is None:
                    pictures = await asyncio.to_thread(view_loop, self.name, view,
                                                       codec=self.codec)
                    self._cache[view] = pictures
                    while len(self._cache) > CACHED_LOOPS:
                        self._cache.popitem(last=False)
                self._cache.move_to_end(view)
                self.loop, self.loop_view = pictures, view
                self.generation += 1
                self._ready.set()


MediaTransport = Literal["udp", "tcp-passive", "tcp-active"]
Send = Callable[[list[bytes]], Awaitable[None]]


class MediaStream:
    """One INVITE's stream: the channel's loop as PS over RTP, paced in real time."""

    def __init__(self, video: ChannelVideo, ssrc: int, *, fps: int = FPS) -> None:
        self.video = video
        self.fps = fps
        self.packetizer = RtpPacketizer(ssrc)
        self.muxer = PsMuxer(video.codec)
        self.frames_sent = 0
        self.packets_sent = 0
        self.keyframes_forced = 0  # out of the GOP's turn, asked by IFameCmd
        self._keyframe_asked = False

    def force_keyframe(self) -> None:
        """The next picture is a keyframe: the loop starts again at its IDR (each loop is
        one closed GOP, so a decoder takes it as it would a new stream)."""
        self._keyframe_asked = True

    async def run(self, send: Send) -> None:
        """Send pictures until cancelled (BYE) or `send` raises (the receiver went away)."""
        loop = asyncio.get_running_loop()
        pictures = await self.video.ready()
        generation = self.video.generation
        index = 0
        start = loop.time()
        ts0 = secrets.randbits(32)
        n = 0
        while True:
            if self.video.generation != generation and self.video.loop is not None:
                pictures, generation, index = self.video.loop, self.video.generation, 0
            if self._keyframe_asked:
                self._keyframe_asked = False
                if index % len(pictures):
                    index = 0
                    self.keyframes_forced += 1
            picture = pictures[index % len(pictures)]
            index += 1
            stamp = ts0 + n * _CLOCK // self.fps
            ps = self.muxer.mux(picture.data, stamp & ((1 << 33) - 1), keyframe=picture.keyframe)
            packets = self.packetizer.packetize(ps, stamp)
            await send(packets)
            self.frames_sent += 1
            self.packets_sent += len(packets)
            n += 1
            wait = start + n / self.fps - loop.time()
            if wait < -1.0:
                # A stalled loop (a loaded machine, a slow TCP peer) resumes at real time
                # rather than bursting the backlog out.
                start = loop.time() - n / self.fps
                wait = 0.0
            await asyncio.sleep(max(0.0, wait))


class MediaEndpoint:
    """The device's side of one media session, prepared before the 200 so its port is known.

    udp: a bound UDP socket sending to the offer's address. tcp-passive (the platform
    listens): a bound TCP socket that connects to the offer's address when media starts.
    tcp-active (the platform connects): a listener; media goes on the first connection.
    """

    def __init__(self, transport: MediaTransport, local_host: str) -> None:
        self.transport = transport
        self.local_host = local_host
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._sock: socket.socket | None = None
        self._server: asyncio.Server | None = None
        self._accepted: asyncio.Future[asyncio.StreamWriter] | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.local_host else socket.AF_INET
        if self.transport == "udp":
            self._udp, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=(self.local_host, 0), family=family)
            self.port = self._udp.get_extra_info("sockname")[1]
        elif self.transport == "tcp-passive":
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.bind((self.local_host, 0))
            self._sock = sock
            self.port = sock.getsockname()[1]
        else:
            self._accepted = loop.create_future()
            accepted = self._accepted

            async def on_connect(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                if accepted.done():
                    writer.close()  # one receiver per session
                else:
                    accepted.set_result(writer)

            self._server = await asyncio.start_server(on_connect, self.local_host, 0)
            self.port = self._server.sockets[0].getsockname()[1]

    async def connect(self, host: str, port: int, timeout: float = 10.0) -> Send:
        """Ready to send to the offer's `host:port`; a `send` for `MediaStream.run`."""
        if self._udp is not None:
            udp = self._udp

            async def send_udp(packets: list[bytes]) -> None:
                for packet in packets:
                    udp.sendto(packet, (host, port))

            return send_udp
        if self._sock is not None:
            loop = asyncio.get_running_loop()
            sock, self._sock = self._sock, None
            try:
                await asyncio.wait_for(loop.sock_connect(sock, (host, port)), timeout)
            except BaseException:
                sock.close()
                raise
            _, self._writer = await asyncio.open_connection(sock=sock)
        else:
            assert self._accepted is not None
            self._writer = await asyncio.wait_for(asyncio.shield(self._accepted), timeout)
        writer = self._writer

        async def send_tcp(packets: list[bytes]) -> None:
            writer.write(b"".join(rfc4571_frame(p) for p in packets))
            await writer.drain()

        return send_tcp

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._sock is not None:
            self._sock.close()
        if self._server is not None:
            self._server.close()
        if self._accepted is not None and self._accepted.done() \
                and not self._accepted.cancelled():
            self._writer = self._writer or self._accepted.result()
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
