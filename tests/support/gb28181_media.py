"""The platform's media side for simulator tests: RTP/PS in over UDP or TCP, pictures out.

RtpPsReceiver and PsDemuxer (the library under test elsewhere) make access units;
PyAV decodes them here, in the test only, so a test can look at the picture.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import av
import numpy as np
import numpy.typing as npt

from drivers.gb28181.gb_sdp import MediaTransport
from drivers.gb28181.ps_demux import PsAccessUnit
from drivers.gb28181.rtp_ps import RtpPsReceiver
from drivers.sim.camera.viewport import marker_x


class PictureSink:
    """Access units to decoded pictures; `pictures` counts them, `last` is the newest (BGR)."""

    def __init__(self, ssrc: int | None = None) -> None:
        self.receiver = RtpPsReceiver(ssrc)
        self.units: list[PsAccessUnit] = []
        self.pictures = 0
        self.packets = 0
        self.last: npt.NDArray[np.uint8] | None = None
        self._decoder: av.VideoCodecContext | None = None

    def take(self, units: list[PsAccessUnit]) -> None:
        for unit in units:
            self.units.append(unit)
            if self._decoder is None:
                ctx = av.CodecContext.create("h264" if unit.codec == "h264" else "hevc", "r")
                assert isinstance(ctx, av.VideoCodecContext)
                self._decoder = ctx
            for frame in self._decoder.decode(av.Packet(unit.data)):
                self.last = np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)
                self.pictures += 1

    def marker_x(self) -> float | None:
        """Where the simulator's ruler mark is in the newest picture (None: no picture yet)."""
        return None if self.last is None else marker_x(self.last)

    def datagram(self, data: bytes) -> None:
        self.packets += 1
        self.take(self.receiver.datagram(data))

    def stream(self, data: bytes) -> None:
        self.packets += 1
        self.take(self.receiver.stream(data))


class MediaPort:
    """Where the platform receives: a UDP socket or a TCP listener, or (tcp-active) nothing
    until `connect()` to the device's answer."""

    def __init__(self, transport: MediaTransport, ssrc: int | None = None) -> None:
        self.transport = transport
        self.sink = PictureSink(ssrc)
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        sink = self.sink
        if self.transport == "udp":
            class Protocol(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                    sink.datagram(data)

            self._udp, _ = await loop.create_datagram_endpoint(
                Protocol, local_addr=("127.0.0.1", 0))
            self.port = self._udp.get_extra_info("sockname")[1]
        elif self.transport == "tcp-passive":
            self._server = await asyncio.start_server(self._read, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
        else:
            self.port = 9  # RFC 4145: an active end's port is not used

    async def connect(self, host: str, port: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        self._tasks.add(asyncio.create_task(self._read(reader, writer)))

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                self.sink.stream(data)

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@asynccontextmanager
async def media_port(transport: MediaTransport,
                     ssrc: int | None = None) -> AsyncIterator[MediaPort]:
    """Only packets of `ssrc` (the INVITE's y=) count; None takes the first heard."""
    port = MediaPort(transport, ssrc)
    await port.open()
    try:
        yield port
    finally:
        await port.close()
