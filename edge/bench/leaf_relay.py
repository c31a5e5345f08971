"""A leaf link that can be cut: a TCP relay between a vehicle's leaf node and the centre's
leafnode port, for the sync bench (and the sync tests).

``cut()`` aborts every relayed connection and stops listening, so the vehicle's
reconnects are refused as they are when the satellite is gone (a refused connect, not
a silent one: the leaf node's ``reconnect: 1`` retries every second either way);
``restore()`` listens again on the same port. ``last_connected`` is when the vehicle's
latest leaf connection reached the centre through the relay, so a bench can time from
the link's return rather than from ``restore()``.

A relay alone does not cut a leaf link: the centre's INFO advertises its own leafnode
address, the vehicle adds it to its remote's URLs and, the relay gone, reconnects there
within a second. :func:`relayed_centre` makes the centre advertise nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import time

from edge.sync.nats_server import ServerSpec

CHUNK = 65536


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def relayed_centre(spec: ServerSpec) -> ServerSpec:
    """`spec` (a centre's) advertising no leafnode address: its leaf nodes know only the
    URL they were given, the relay's."""
    return dataclasses.replace(spec, leaf_advertise=False)


class LeafRelay:
    """Relays 127.0.0.1:`port` to 127.0.0.1:`target_port` while restored."""

    def __init__(self, target_port: int, port: int = 0) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self.connections = 0
        self.last_connected: float | None = None  # time.monotonic() of the latest
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pumps: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"nats-leaf://127.0.0.1:{self.port}"

    @property
    def up(self) -> bool:
        return self._server is not None

    async def restore(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()
        if server is not None:
            await server.wait_closed()

    async def close(self) -> None:
        """Cut, and wait for the relayed connections' tasks to end (the cut aborted their
        sockets; cancelling them would leave asyncio's server a cancelled callback)."""
        await self.cut()
        if self._pumps:
            await asyncio.wait(set(self._pumps), timeout=2.0)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        if self._server is None:  # cut while connecting upstream
            writer.transport.abort()
            up_w.transport.abort()
            return
        self._writers |= {writer, up_w}
        self.connections += 1
        self.last_connected = time.monotonic()
        task = asyncio.current_task()
        if task is not None:
            self._pumps.add(task)
        try:
            await asyncio.gather(self._pump(reader, up_w), self._pump(up_r, writer))
        finally:
            self._writers -= {writer, up_w}
            if task is not None:
                self._pumps.discard(task)

    @staticmethod
    async def _pump(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await r.read(CHUNK):
                w.write(data)
                await w.drain()
        w.transport.abort()
