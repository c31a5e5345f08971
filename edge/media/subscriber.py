"""A consumer's side of the media plane: access units in order, from a keyframe.

The subscriber starts at a keyframe (the publisher replays its cached GOP on
subscription), skips replays of what it already has, notices lost units by
sequence number and then drops everything up to the next keyframe, so what it
hands on is always decodable. Its queue is bounded: a consumer that cannot keep
up loses units (and resynchronises) instead of slowing the camera or anyone else.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

import zmq

from edge.media.wire import MediaFormatError, MediaFrame, decode

RCVHWM = 60
BATCH = 64


@dataclass
class SubscriberStats:
    received: int = 0
    delivered: int = 0
    replays_skipped: int = 0
    gaps: int = 0
    missed: int = 0
    dropped_to_keyframe: int = 0
    malformed: int = 0
    restarts: int = 0  # the publisher's epoch changed


class MediaSubscriber:
    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str,
                 *, hwm: int = RCVHWM) -> None:
        self.endpoint = endpoint
        self.sock: zmq.Socket[bytes] = ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, hwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.stats = SubscriberStats()
        self._batch: deque[list[bytes]] = deque()
        self._epoch: int | None = None
        self._last_seq = 0
        self._need_keyframe = True
        # The socket's fd stays registered with the loop for the subscriber's
        # life: registering and unregistering it around every wait (two
        # epoll_ctl calls per frame) cost more than the rest of receiving.
        self._fd = int(self.sock.getsockopt(zmq.FD))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[None] | None = None

    def _wake(self) -> None:
        # ZMQ_FD signals "look at EVENTS", not "readable": reading EVENTS
        # processes the socket's commands and clears the signal, so the
        # level-triggered registration cannot spin while nobody waits.
        if int(self.sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _drain(self) -> None:
        # EVENTS before each recv: cheaper than the zmq.Again a last recv would raise.
        sock, batch = self.sock, self._batch
        while len(batch) < BATCH and int(sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            batch.append(sock.recv_multipart(zmq.NOBLOCK))

    async def _wait_readable(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(self._fd, self._wake)
        # EVENTS before waiting: a message that arrived since the last look
        # would not signal the fd again.
        while not int(self.sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _accept(self, frame: MediaFrame) -> bool:
        s = self.stats
        if frame.epoch != self._epoch:
            if self._epoch is not None:
                s.restarts += 1
            self._epoch, self._last_seq, self._need_keyframe = frame.epoch, 0, True
        if not self._last_seq:
            # Nothing taken from this publisher yet. Live units can arrive before
            # the GOP replay (the subscription reaches the socket before the
            # publisher reads it), so sequence numbers mean nothing until the
            # first keyframe: wait for one, replayed or live, without counting a gap.
            if not frame.keyframe:
                s.dropped_to_keyframe += 1
                return False
            self._last_seq, self._need_keyframe = frame.seq, False
            return True
        if frame.seq <= self._last_seq:
            s.replays_skipped += 1
            return False
        if frame.seq > self._last_seq + 1:
            s.gaps += 1
            s.missed += frame.seq - self._last_seq - 1
            self._need_keyframe = True
        self._last_seq = frame.seq
        if self._need_keyframe:
            if not frame.keyframe:
                s.dropped_to_keyframe += 1
                return False
            self._need_keyframe = False
        return True

    async def recv(self) -> MediaFrame:
        while True:
            while not self._batch:
                await self._wait_readable()
                self._drain()
            try:
                frame = decode(self._batch.popleft())
            except MediaFormatError:
                self.stats.malformed += 1
                continue
            self.stats.received += 1
            if self._accept(frame):
                self.stats.delivered += 1
                return frame

    def __aiter__(self) -> MediaSubscriber:
        return self

    async def __anext__(self) -> MediaFrame:
        return await self.recv()

    def close(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        self._loop = None
        self.sock.close(linger=0)
