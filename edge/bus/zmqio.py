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


# pyzmq's multipart calls cost more than libzmq's work on small frames: send_multipart
# combines enum flags in Python per frame, recv_multipart asks RCVMORE through an option
# lookup per frame. These helpers take int flags and read a frame's `more` as libzmq set it.
NOBLOCK = int(zmq.NOBLOCK)
SNDMORE = int(zmq.SNDMORE)


def recv_frames(sock: zmq.Socket[bytes], flags: int = NOBLOCK) -> list[bytes]:
    """One whole multipart message (raises zmq.Again with NOBLOCK when none is queued)."""
    recv = sock.recv
    frame = recv(flags, copy=False)
    parts = [frame.bytes]
    while frame.more:
        # The rest of a multipart message is queued with its first frame (atomic delivery).
        frame = recv(flags, copy=False)
        parts.append(frame.bytes)
    return parts


# The socket's own send, less the Python layer pyzmq puts over it for draft options.
_send = zmq.backend.Socket.send


def send_frames(sock: zmq.Socket[bytes], frames: list[bytes]) -> None:
    """Send `frames` (bytes we built: every part is known to be sendable) as one message."""
    last = len(frames) - 1
    for i in range(last):
        _send(sock, frames[i], SNDMORE)
    _send(sock, frames[last], 0)


def drain(sock: zmq.Socket[bytes], into: deque[list[bytes]], limit: int) -> None:
    """Move up to `limit` queued messages into `into` without blocking."""
    # One zmq.Again ends the batch: dearer than asking EVENTS once, cheaper than asking
    # it before every message of a batch.
    append = into.append
    try:
        for _ in range(limit):
            append(recv_frames(sock))
    except zmq.Again:
        return
