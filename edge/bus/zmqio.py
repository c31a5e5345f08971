"""Driving a plain ZeroMQ socket from asyncio, without zmq.asyncio.

zmq.asyncio costs a future and a loop round trip per message. For sockets
that carry many messages (subscriptions, the media plane) we wait for
readiness ourselves and then take whatever is queued in one synchronous batch.
"""

from __future__ import annotations

import asyncio
from collections import deque

import zmq


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def wait_readable(sock: zmq.Socket[bytes]) -> None:
    """Return once `sock` has a message to read.

    ZMQ_FD is an edge signal: EVENTS must be checked (which also re-arms it)
    before waiting, or a message that arrived in between would wait forever.
    """
    while not int(sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        fd = int(sock.getsockopt(zmq.FD))
        loop.add_reader(fd, _resolve, ready)
        try:
            await ready
        finally:
            loop.remove_reader(fd)


def drain(sock: zmq.Socket[bytes], into: deque[list[bytes]], limit: int) -> None:
    """Move up to `limit` queued messages into `into` without blocking."""
    recv = sock.recv_multipart
    for _ in range(limit):
        try:
            into.append(recv(zmq.NOBLOCK))
        except zmq.Again:
            return
