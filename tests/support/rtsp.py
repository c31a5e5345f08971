"""Helpers the camera driver tests share; their fixtures are in tests/drivers/conftest.py."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import re
import socket
import struct
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import av

from drivers.rtsp import RtspSource
from drivers.rtsp.annexb import split_annexb
from drivers.sim.camera import SimCamera
from drivers.source import AccessUnit, SourceState

CAMERA_NAME = "cam"
# Short loops keep the one-off encode cheap on a shared 2-core machine.
LOOP_SECONDS = 2.0
# x265 is slow: one GOP is enough for the H.265 tests.
HEVC_CAMERA = {
    "name": "hevc",
    "codec": "h265",
    "main": (640, 360),
    "sub": None,
    "loop_seconds": 1.0,
}

CameraFactory = Callable[..., Awaitable[SimCamera]]
IngestFactory = Callable[..., Awaitable[RtspSource]]


async def wait_state(ingest: RtspSource, *states: SourceState, within: float) -> SourceState:
    async with asyncio.timeout(within):
        return await ingest.wait_for_state(*states)


class Units:
    """A sink that keeps every unit it is handed (in the source's thread) for a test to take."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[AccessUnit] = asyncio.Queue()
        self.threads: set[str] = set()  # where the sink was called from

    def __call__(self, au: AccessUnit) -> None:
        self.threads.add(threading.current_thread().name)
        with contextlib.suppress(RuntimeError):  # the test's loop is gone: nobody to tell
            self._loop.call_soon_threadsafe(self._queue.put_nowait, au)

    async def take(self, count: int, within: float) -> list[AccessUnit]:
        """The next `count` units, in the order the source handed them on."""
        async with asyncio.timeout(within):
            return [await self._queue.get() for _ in range(count)]


async def take(ingest: RtspSource, count: int, within: float) -> list[AccessUnit]:
    """The next `count` access units from the ingest's sink (a :class:`Units`)."""
    assert isinstance(ingest.sink, Units), "make the ingest with sink=Units()"
    return await ingest.sink.take(count, within)


async def poll_until(predicate: Callable[[], bool], within: float, every: float = 0.05) -> None:
    """Wait for a condition that has no event to wait on (e.g. server-side cleanup)."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - nothing to await but time
            await asyncio.sleep(every)


def h264_nal_types(data: bytes) -> list[int]:
    """NAL unit types of an Annex-B H.264 buffer, in order."""
    return [nal[0] & 0x1F for nal in split_annexb(data)]


def decode_access_units(codec: str, aus: list[AccessUnit]) -> list[av.VideoFrame]:
    """Decode with a fresh decoder, as a consumer joining at the first unit would."""
    decoder = av.CodecContext.create("h264" if codec == "h264" else "hevc", "r")
    frames: list[av.VideoFrame] = []
    for au in aus:
        for frame in decoder.decode(av.Packet(au.data)):
            assert isinstance(frame, av.VideoFrame)
            frames.append(frame)
    return frames


# -- a raw RTSP client, to check the wire format the simulator produces ---------


@dataclass
class RtspReply:
    status: int
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class RtpPacket:
    channel: int
    marker: bool
    payload_type: int
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes
    size: int


def parse_rtp(data: bytes, channel: int = 0) -> RtpPacket:
    b0, b1, seq, ts, ssrc = struct.unpack_from("!BBHII", data)
    assert b0 >> 6 == 2, "RTP version must be 2"
    csrc = b0 & 0x0F
    return RtpPacket(
        channel, bool(b1 & 0x80), b1 & 0x7F, seq, ts, ssrc, data[12 + 4 * csrc :], len(data)
    )


@dataclass
class RawRtspClient:
    """Just enough RTSP to drive the simulator by hand (TCP interleaved)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    cseq: int = 0
    auth: str | None = None
    session: str = ""
    pending: list[tuple[int, bytes]] = field(default_factory=list)

    @classmethod
    async def connect(cls, host: str, port: int, *, rcvbuf: int | None = None) -> RawRtspClient:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        reader, writer = await asyncio.open_connection(sock=sock)
        return cls(reader, writer)

    async def request(
        self, method: str, url: str, headers: dict[str, str] | None = None
    ) -> RtspReply:
        self.cseq += 1
        lines = [f"{method} {url} RTSP/1.0", f"CSeq: {self.cseq}", "User-Agent: raw-test"]
        if self.auth:
            lines.append(f"Authorization: {self.auth}")
        lines.extend(f"{k}: {v}" for k, v in (headers or {}).items())
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await self.writer.drain()
        while True:
            first = await self.reader.readexactly(1)
            if first == b"$":
                channel, length = struct.unpack("!BH", await self.reader.readexactly(3))
                self.pending.append((channel, await self.reader.readexactly(length)))
                continue
            head = first + await self.reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode().strip().split("\r\n")
            reply_headers = {}
            for line in header_lines:
                key, _, value = line.partition(":")
                reply_headers[key.strip().lower()] = value.strip()
            body = b""
            if "content-length" in reply_headers:
                body = await self.reader.readexactly(int(reply_headers["content-length"]))
            assert reply_headers.get("cseq") == str(self.cseq)
            return RtspReply(int(status_line.split()[1]), reply_headers, body)

    async def read_interleaved(self) -> tuple[int, bytes]:
        if self.pending:
            return self.pending.pop(0)
        first = await self.reader.readexactly(1)
        assert first == b"$", f"expected interleaved data, got {first!r}"
        channel, length = struct.unpack("!BH", await self.reader.readexactly(3))
        return channel, await self.reader.readexactly(length)

    def set_digest(self, user: str, password: str, challenge: str, method: str, uri: str) -> None:
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        ha1 = hashlib.md5(f"{user}:{params['realm']}:{password}".encode()).hexdigest()
        ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()
        response = hashlib.md5(f"{ha1}:{params['nonce']}:{ha2}".encode()).hexdigest()
        self.auth = (
            f'Digest username="{user}", realm="{params["realm"]}", nonce="{params["nonce"]}", '
            f'uri="{uri}", response="{response}"'
        )

    def set_basic(self, user: str, password: str) -> None:
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
