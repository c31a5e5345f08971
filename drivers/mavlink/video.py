"""Find the video streams a vehicle's cameras offer (MAVLink camera protocol v2).

A camera is a component with id MAV_COMP_ID_CAMERA..CAMERA6 (100..105) or any
component whose HEARTBEAT says MAV_TYPE_CAMERA. For each we ask, with
MAV_CMD_REQUEST_MESSAGE, for CAMERA_INFORMATION and then for
VIDEO_STREAM_INFORMATION of all streams (param2 = 0), and report every
stream's URI. Cameras may also send VIDEO_STREAM_INFORMATION unasked (after
a change); those are taken too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from drivers.mavlink.commands import CommandResult, RequestMessage
from drivers.mavlink.dialect import enum_name, mavlink
from drivers.mavlink.events import LinkEvent, VideoStreamFound
from drivers.mavlink.framing import Frame

log = logging.getLogger(__name__)

CAMERA_COMPIDS = frozenset(range(mavlink.MAV_COMP_ID_CAMERA, mavlink.MAV_COMP_ID_CAMERA6 + 1))

RequestFn = Callable[[int, RequestMessage], Awaitable[CommandResult]]


@dataclass(frozen=True, slots=True)
class VideoStream:
    sysid: int
    compid: int
    stream_id: int
    name: str
    uri: str
    #: ``H264``, ``H265`` or ``UNKNOWN`` (VIDEO_STREAM_ENCODING)
    encoding: str
    #: (width, height) in pixels; (0, 0) when the camera does not say
    resolution: tuple[int, int]
    framerate: float
    #: ``RTSP``, ``RTPUDP``, ``TCP_MPEG``, ``MPEG_TS_H264`` (VIDEO_STREAM_TYPE)
    stream_type: str = "RTSP"
    #: "vendor model" from CAMERA_INFORMATION, when it arrived
    camera: str = ""


def _text(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).split(b"\x00", 1)[0].decode("utf-8", errors="replace")
    if isinstance(value, list):  # uint8_t[32] vendor/model arrays
        return bytes(v for v in value if v).decode("utf-8", errors="replace")
    return str(value).split("\x00", 1)[0]


class VideoDiscovery:
    """Keeps the stream list of every camera on one link."""

    def __init__(
        self,
        request: RequestFn,
        emit: Callable[[LinkEvent], None],
        *,
        attempts: int = 3,
        answer_wait_s: float = 1.0,
    ) -> None:
        self._request = request
        self._emit = emit
        self._attempts = attempts
        self._answer_wait_s = answer_wait_s
        self.streams: dict[tuple[int, int, int], VideoStream] = {}
        self._cameras: dict[tuple[int, int], str] = {}
        self._seen: set[tuple[int, int]] = set()
        self._answered: dict[tuple[int, int, int], asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._locks: dict[int, asyncio.Lock] = {}

    def on_frame(self, frame: Frame) -> None:
        msg = frame.msg
        if msg is None:
            return
        key = (frame.sysid, frame.compid)
        if frame.msg_id == mavlink.MAVLINK_MSG_ID_HEARTBEAT:
            if key in self._seen:
                return
            if frame.compid in CAMERA_COMPIDS or msg.type == mavlink.MAV_TYPE_CAMERA:
                self._seen.add(key)
                task = asyncio.get_running_loop().create_task(
                    self._discover(frame.sysid, frame.compid), name=f"video discovery {key}"
                )
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        elif frame.msg_id == mavlink.MAVLINK_MSG_ID_CAMERA_INFORMATION:
            self._cameras[key] = f"{_text(msg.vendor_name)} {_text(msg.model_name)}".strip()
            self._answer(frame).set()
        elif frame.msg_id == mavlink.MAVLINK_MSG_ID_VIDEO_STREAM_INFORMATION:
            self._stream(frame.sysid, frame.compid, msg)
            self._answer(frame).set()

    def _answer(self, frame: Frame) -> asyncio.Event:
        return self._answered.setdefault((frame.sysid, frame.compid, frame.msg_id), asyncio.Event())

    def _stream(self, sysid: int, compid: int, m: Any) -> None:
        stream = VideoStream(
            sysid=sysid,
            compid=compid,
            stream_id=int(m.stream_id),
            name=_text(m.name),
            uri=_text(m.uri),
            encoding=enum_name(
                "VIDEO_STREAM_ENCODING",
                int(getattr(m, "encoding", 0)),
                strip="VIDEO_STREAM_ENCODING_",
            ),
            resolution=(int(m.resolution_h), int(m.resolution_v)),
            framerate=float(m.framerate),
            stream_type=enum_name("VIDEO_STREAM_TYPE", int(m.type), strip="VIDEO_STREAM_TYPE_"),
            camera=self._cameras.get((sysid, compid), ""),
        )
        key = (sysid, compid, stream.stream_id)
        if self.streams.get(key) != stream:
            self.streams[key] = stream
            self._emit(
                VideoStreamFound(
                    sysid=sysid,
                    compid=compid,
                    stream_id=stream.stream_id,
                    name=stream.name,
                    uri=stream.uri,
                )
            )

    async def _ask(self, sysid: int, compid: int, msg_id: int, param2: float) -> bool:
        event = self._answered.setdefault((sysid, compid, msg_id), asyncio.Event())
        lock = self._locks.setdefault(sysid, asyncio.Lock())
        for _ in range(self._attempts):
            if event.is_set():
                return True
            # one REQUEST_MESSAGE per vehicle at a time (the command engine's rule)
            async with lock:
                result = await self._request(
                    sysid, RequestMessage(msg_id, param2, target_component=compid)
                )
            if result.status == "rejected":
                log.info(
                    "camera %d/%d refused request for %d: %s", sysid, compid, msg_id, result.result
                )
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._answer_wait_s):
                    await event.wait()
        return event.is_set()

    async def _discover(self, sysid: int, compid: int) -> None:
        await self._ask(sysid, compid, mavlink.MAVLINK_MSG_ID_CAMERA_INFORMATION, 0)
        await self._ask(sysid, compid, mavlink.MAVLINK_MSG_ID_VIDEO_STREAM_INFORMATION, 0)

    def forget(self, sysid: int) -> None:
        """Rediscover this vehicle's cameras when they are next heard (after a reboot)."""
        self._seen = {k for k in self._seen if k[0] != sysid}
        self._answered = {k: v for k, v in self._answered.items() if k[0] != sysid}

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
