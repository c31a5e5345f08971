"""A consumer's side of the media plane: access units in order, from a keyframe.

The subscriber starts at a keyframe (the publisher replays its cached GOP on
subscription), skips replays of what it already has, notices lost units by
sequence number and then drops everything up to the next keyframe, so what it
hands on is always decodable. Its queue is bounded: a consumer that cannot keep
up loses units (and resynchronises) instead of slowing the camera or anyone else.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import zmq

from edge.bus.zmqio import Readable, drain
from edge.media.gop import KeyframeGate
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
        self._gate = KeyframeGate()
        self._readable = Readable(self.sock)

    def _accept(self, frame: MediaFrame) -> bool:
        s = self.stats
        if frame.epoch != self._epoch:
            if self._epoch is not None:
                s.restarts += 1
            self._epoch, self._last_seq = frame.epoch, 0
            self._gate.lose()
        if not self._last_seq:
            # Nothing taken from this publisher yet. Live units can arrive before
            # the GOP replay (the subscription reaches the socket before the
            # publisher reads it), so sequence numbers mean nothing until the
            # first keyframe: wait for one, replayed or live, without counting a gap.
            if not self._gate.passes(frame.keyframe):
                s.dropped_to_keyframe += 1
                return False
            self._last_seq = frame.seq
            return True
        if frame.seq <= self._last_seq:
            s.replays_skipped += 1
            return False
        if frame.seq > self._last_seq + 1:
            s.gaps += 1
            s.missed += frame.seq - self._last_seq - 1
            self._gate.lose()
        self._last_seq = frame.seq
        if not self._gate.passes(frame.keyframe):
            s.dropped_to_keyframe += 1
            return False
        return True

    async def recv(self) -> MediaFrame:
        while True:
            while not self._batch:
                await self._readable.wait()
                drain(self.sock, self._batch, BATCH)
            frame = self._next()
            if frame is not None:
                return frame

    def _next(self) -> MediaFrame | None:
        """The next batched unit if it is one to hand on (decoded, accepted), else None."""
        try:
            frame = decode(self._batch.popleft())
        except MediaFormatError:
            self.stats.malformed += 1
            return None
        self.stats.received += 1
        if not self._accept(frame):
            return None
        self.stats.delivered += 1
        return frame

    def take(self, timeout_s: float) -> list[MediaFrame]:
        """Blocking, for a consumer with a thread of its own (the recorder's writers): the
        units that arrived, waiting up to `timeout_s` for the first; empty if none came.

        One wake-up per batch instead of an event-loop round and a queue hand-off per
        unit. Do not mix with :meth:`recv` on one subscriber.
        """
        if not self._batch and self.sock.poll(int(timeout_s * 1000)):
            drain(self.sock, self._batch, BATCH)
        taken: list[MediaFrame] = []
        while self._batch:
            frame = self._next()
            if frame is not None:
                taken.append(frame)
        return taken

    def __aiter__(self) -> MediaSubscriber:
        return self

    async def __anext__(self) -> MediaFrame:
        return await self.recv()

    def close(self) -> None:
        self._readable.close()
        self.sock.close(linger=0)
