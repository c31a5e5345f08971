"""A WHEP viewer on aiortc: the latency benchmark's viewers and the tests' second opinion.

Deliberately its own code path: it uses nothing of the uplink, only aiortc as
any Python WHEP player would (a recvonly video transceiver, a full offer in
the POST, the answer from the 201, DELETE on the Location), so a server bug
cannot hide behind a shared helper.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urljoin

import aiohttp
import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket

from edge.uplink.consent import sustain_consent

FrameCallback = Callable[[av.VideoFrame], None]


class MarkerJitterBuffer(JitterBuffer):
    """aiortc's video jitter buffer, but a frame leaves when its last packet arrives.

    aiortc's own buffer hands a frame on only once the *next* frame's first
    packet arrives, which holds every frame one frame interval (33 ms at
    30 fps) that browsers do not add (they use the RTP marker bit). The
    latency benchmark measures the uplink, not that, so its viewers use this.
    """

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        pli, frame = super().add(packet)
        if frame is not None or not packet.marker or self._origin is None:
            return pli, frame
        packets: list[RtpPacket] = []
        for count in range(self.capacity):
            p = self._packets[(self._origin + count) % self.capacity]
            if p is None or p.timestamp != packet.timestamp:
                return pli, None  # a hole, or an older frame still incomplete
            packets.append(p)
            if p is packet:
                self.remove(count + 1)
                data = b"".join(x._data for x in packets)  # type: ignore[attr-defined]
                return pli, JitterFrame(data=data, timestamp=packet.timestamp)
        return pli, None


class WhepRefused(Exception):
    """The server answered the POST with something other than 201."""

    def __init__(self, status: int, text: str, headers: dict[str, str]) -> None:
        super().__init__(f"{status}: {text.strip()}")
        self.status = status
        self.text = text
        self.headers = headers


@dataclass
class ViewerStats:
    post_started: float = 0.0  # monotonic
    answered: float | None = None
    first_frame: float | None = None
    frames: int = 0
    width: int = 0
    height: int = 0
    frame_times: list[float] = field(default_factory=list)

    @property
    def first_frame_ms(self) -> float | None:
        if self.first_frame is None:
            return None
        return (self.first_frame - self.post_started) * 1000

    def fps(self, seconds: float) -> float:
        """Frames per second over the last `seconds`."""
        now = time.monotonic()
        return sum(1 for t in self.frame_times if now - t <= seconds) / seconds


class WhepViewer:
    """One WHEP session: `await start()`, frames arrive at `on_frame`, `await close()`."""

    def __init__(self, endpoint: str, token: str, on_frame: FrameCallback | None = None,
                 http: aiohttp.ClientSession | None = None, marker_frames: bool = False) -> None:
        self.endpoint = endpoint
        self.token = token
        self.on_frame = on_frame
        self.stats = ViewerStats()
        self.location: str | None = None
        self.answer: str = ""
        self.response_headers: dict[str, str] = {}
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._http = http
        self._own_http = http is None
        self._reader: asyncio.Task[None] | None = None
        self.ended = asyncio.Event()
        self.marker_frames = marker_frames

    async def start(self, timeout: float = 10.0) -> None:
        transceiver = self.pc.addTransceiver("video", direction="recvonly")
        # Browsers keep RFC 7675 consent over any round trip; aioice alone drops a
        # session beyond 500 ms after ~30 s (edge.uplink.consent): behave as they do.
        sustain_consent(getattr(getattr(transceiver.receiver.transport, "transport", None),
                                "_connection", None))
        if self.marker_frames:
            # A private attribute of aiortc's receiver: only this measuring client touches it.
            transceiver.receiver._RTCRtpReceiver__jitter_buffer = (  # type: ignore[attr-defined]
                MarkerJitterBuffer(capacity=512, is_video=True))
        self.pc.on("track", self._on_track)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        if self._http is None:
            self._http = aiohttp.ClientSession()
        self.stats.post_started = time.monotonic()
        async with self._http.post(
                self.endpoint, data=self.pc.localDescription.sdp,
                headers={"Content-Type": "application/sdp",
                         "Authorization": f"Bearer {self.token}"},
                timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            text = await resp.text()
            self.response_headers = dict(resp.headers)
            if resp.status != 201:
                raise WhepRefused(resp.status, text, self.response_headers)
            self.location = urljoin(self.endpoint, resp.headers["Location"])
        self.stats.answered = time.monotonic()
        self.answer = text
        await self.pc.setRemoteDescription(RTCSessionDescription(text, "answer"))

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video" and self._reader is None:
            self._reader = asyncio.create_task(self._read(track), name="whep-viewer-read")

    async def _read(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                assert isinstance(frame, av.VideoFrame)
                now = time.monotonic()
                s = self.stats
                if s.first_frame is None:
                    s.first_frame = now
                s.frames += 1
                s.width, s.height = frame.width, frame.height
                s.frame_times.append(now)
                if len(s.frame_times) > 600:
                    del s.frame_times[:300]
                if self.on_frame is not None:
                    self.on_frame(frame)
        except MediaStreamError:
            pass
        finally:
            self.ended.set()

    async def wait_frames(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.stats.frames < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.stats.frames} of {n} frames within {timeout:g} s")
            await asyncio.sleep(0.02)

    async def close(self, delete: bool = True) -> int | None:
        """End the session; the DELETE's status (None when not sent)."""
        status = None
        if delete and self.location and self._http is not None and not self._http.closed:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self._http.delete(
                        self.location, headers={"Authorization": f"Bearer {self.token}"},
                        timeout=aiohttp.ClientTimeout(total=5)) as resp:
                    status = resp.status
        await self.pc.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._own_http and self._http is not None:
            await self._http.close()
        return status
