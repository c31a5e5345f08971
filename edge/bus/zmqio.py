"""Driving a plain ZeroMQ socket from asyncio, without zmq.asyncio.

zmq.asyncio costs a future and a loop round trip per message. For sockets
that carry many messages (subscriptions, the media plane) we wait for
readiness ourselves and then take whatever is queued in one synchronous batch.

ZMQ_FD does not mean "readable": it signals "look at EVENTS", and reading
EVENTS (which processes the socket's pending commands) clears it. So EVENTS
is checked before every wait (a message that arrived since the last look does
not signal the fd again), and the loop's level-triggered registration cannot
spin while nobody waits: the wake-up reads EVENTS too.
"""

from __future__ import annotations

import asyncio
from collections import deque

import zmq


class Readable:
    """Waits until a socket has a message; its fd is registered with the loop once.

    Registering and unregistering the fd around every wait (two epoll_ctl
    calls per message on a busy socket) cost more than the rest of receiving.
    The registration lasts until :meth:`close`, which must come before the
    socket is closed: a registration left behind on a closed fd would swallow
    the next socket that reuses the number.
    """

    def __init__(self, sock: zmq.Socket[bytes]) -> None:
        self.sock = sock
        self._fd = int(sock.getsockopt(zmq.FD))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[None] | None = None

    def ready(self) -> bool:
        """A message can be read now, without blocking."""
        return bool(int(self.sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN)

    def _wake(self) -> None:
        if self.sock.closed:
            self.close()
            return
        if self.ready():
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    async def wait(self) -> None:
        """Return once the socket has a message to read."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self.close()  # a socket outliving its loop (tests run one loop each)
            loop.add_reader(self._fd, self._wake)
            self._loop = loop
        while not self.ready():
            self._waiter = loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def close(self) -> None:
        """Unregister the fd; a later wait registers it again."""
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            loop.remove_reader(self._fd)


def drain(sock: zmq.Socket[bytes], into: deque[list[bytes]], limit: int) -> None:
    """Move up to `limit` queued messages into `into` without blocking."""
    # EVENTS before each recv: cheaper than the zmq.Again a last recv would raise.
    recv, events = sock.recv_multipart, sock.getsockopt
    for _ in range(limit):
        if not int(events(zmq.EVENTS)) & zmq.POLLIN:
            return
        into.append(recv(zmq.NOBLOCK))
