"""One RTSP session: a viewer of one stream over TCP-interleaved or UDP RTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from drivers.sim.camera.rtp import rtcp_sender_report, rtp_header
from drivers.sim.camera.sdp import PAYLOAD_TYPE
from drivers.sim.camera.source import StreamSource

log = logging.getLogger(__name__)

RTCP_INTERVAL_S = 2.0
# RTP timestamps in the PLAY answer refer to this long before PLAY, so a live
# frame captured just before the viewer subscribed still gets a later timestamp.
_TS_LEAD_S = 0.2
# Together about one second of the main stream: enough to ride out jitter, and
# no more, so a slow viewer is resynchronised instead of watching old video.
# The kernel's own autotuned send buffer would otherwise grow to megabytes.
TCP_WRITE_HIGH_WATER = 128 * 1024
TCP_SNDBUF = 64 * 1024


class Sink:
    """Where a session's packets go."""

    transport_name: str

    async def send(self, packets: list[bytes]) -> None:
        raise NotImplementedError

    async def send_raw(self, data: bytes) -> None:
        raise NotImplementedError

    def send_rtcp(self, packet: bytes) -> None:
        raise NotImplementedError


class TcpInterleavedSink(Sink):
    transport_name = "tcp"

    def __init__(self, writer: asyncio.StreamWriter, rtp_channel: int, rtcp_channel: int) -> None:
        self.writer = writer
        self.rtp_channel = rtp_channel
        self.rtcp_channel = rtcp_channel

    def _frame(self, channel: int, packet: bytes) -> bytes:
        return struct.pack("!cBH", b"$", channel, len(packet)) + packet

    async def send(self, packets: list[bytes]) -> None:
        # One write per access unit: fewer syscalls, and RTSP replies written by
        # the connection task can only fall between whole access units.
        self.writer.write(b"".join(self._frame(self.rtp_channel, p) for p in packets))
        await self.writer.drain()

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def send_rtcp(self, packet: bytes) -> None:
        self.writer.write(self._frame(self.rtcp_channel, packet))


class UdpSink(Sink):
    transport_name = "udp"

    def __init__(
        self,
        rtp: asyncio.DatagramTransport,
        rtcp: asyncio.DatagramTransport,
        rtp_addr: tuple[str, int],
        rtcp_addr: tuple[str, int],
    ) -> None:
        self.rtp = rtp
        self.rtcp = rtcp
        self.rtp_addr = rtp_addr
        self.rtcp_addr = rtcp_addr

    async def send(self, packets: list[bytes]) -> None:
        for packet in packets:
            self.rtp.sendto(packet, self.rtp_addr)

    async def send_raw(self, data: bytes) -> None:
        for offset in range(0, len(data), 1200):
            self.rtp.sendto(data[offset : offset + 1200], self.rtp_addr)

    def send_rtcp(self, packet: bytes) -> None:
        self.rtcp.sendto(packet, self.rtcp_addr)


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """Snapshot of a session, for tests and diagnostics."""

    session_id: str
    stream: str
    transport: Literal["tcp", "udp"]
    playing: bool
    frames_sent: int
    frames_dropped: int
    packets_sent: int
    octets_sent: int


class Session:
    def __init__(
        self,
        *,
        stream: str,
        control_url: str,
        source: StreamSource,
        sink: Sink,
        cname: str,
        garbage: bool = False,
        close_after_s: float | None = None,
        stall_after_s: float | None = None,
        on_fault_close: Callable[[], None] | None = None,
    ) -> None:
        self.session_id = secrets.token_hex(8)
        self.stream = stream
        self.control_url = control_url
        self.source = source
        self.sink = sink
        self.cname = cname
        self.garbage = garbage
        self.close_after_s = close_after_s
        self.stall_after_s = stall_after_s
        self._on_fault_close = on_fault_close
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)
        self.ts_base = random.getrandbits(32)
        self.frames_sent = 0
        self.frames_dropped = 0
        self.packets_sent = 0
        self.octets_sent = 0
        self.last_activity = asyncio.get_running_loop().time()
        self._play_mono = 0.0
        self._task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    @property
    def playing(self) -> bool:
        return self._task is not None and not self._task.done()

    def touch(self) -> None:
        self.last_activity = asyncio.get_running_loop().time()

    def play(self) -> tuple[int, int]:
        """Start sending; returns (seq, rtptime) for the RTP-Info header."""
        if self._task is None:
            self._play_mono = asyncio.get_running_loop().time() - _TS_LEAD_S
            self._task = asyncio.create_task(self._run(), name=f"sim-session-{self.session_id}")
        return self.seq & 0xFFFF, self.ts_base

    def rtp_timestamp(self, mono: float) -> int:
        return (self.ts_base + round((mono - self._play_mono) * 90_000)) & 0xFFFFFFFF

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        next_report = started
        frames = self.source.frames(self)
        try:
            async with contextlib.aclosing(frames):
                async for frame in frames:
                    if (
                        self.close_after_s is not None
                        and loop.time() - started >= self.close_after_s
                    ):
                        if self._on_fault_close is not None:
                            self._on_fault_close()
                        return
                    if (
                        self.stall_after_s is not None
                        and loop.time() - started >= self.stall_after_s
                    ):
                        # Keep the connection and session, send nothing: a hung encoder.
                        await asyncio.Event().wait()
                    if self.garbage:
                        await self.sink.send_raw(
                            os.urandom(sum(len(p.data) for p in frame.payloads))
                        )
                        continue
                    ts = self.rtp_timestamp(frame.mono)
                    packets = []
                    for payload in frame.payloads:
                        packets.append(
                            rtp_header(payload.marker, PAYLOAD_TYPE, self.seq, ts, self.ssrc)
                            + payload.data
                        )
                        self.seq = (self.seq + 1) & 0xFFFF
                        self.octets_sent += len(payload.data)
                    await self.sink.send(packets)
                    self.packets_sent += len(packets)
                    self.frames_sent += 1
                    if frame.mono >= next_report:
                        report = rtcp_sender_report(
                            self.ssrc,
                            frame.wall_ns,
                            ts,
                            self.packets_sent,
                            self.octets_sent,
                            self.cname,
                        )
                        self.sink.send_rtcp(report)
                        next_report = frame.mono + RTCP_INTERVAL_S
        except (ConnectionError, OSError) as exc:
            log.debug("session %s: viewer gone (%s)", self.session_id, exc)
        finally:
            self.closed.set()

    async def close(self) -> None:
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.closed.set()

    def info(self) -> SessionInfo:
        transport: Literal["tcp", "udp"] = "tcp" if self.sink.transport_name == "tcp" else "udp"
        return SessionInfo(
            self.session_id,
            self.stream,
            transport,
            self.playing,
            self.frames_sent,
            self.frames_dropped,
            self.packets_sent,
            self.octets_sent,
        )
