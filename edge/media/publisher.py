"""A camera's side of the media plane: publish access units, serve late joiners.

An XPUB socket, so the publisher sees each new subscription. It keeps the
current group of pictures (:class:`~edge.media.gop.GopCache`, everything since
the last keyframe) and sends it to a subscriber as soon as it subscribes: a
new consumer can start decoding at once instead of waiting up to a GOP for
the next keyframe. Existing consumers receive that replay too and skip it by
sequence number.

A slow consumer never slows the camera: each subscriber's queue is bounded
(:data:`SNDHWM`) and PUB drops for that subscriber alone when it is full; the
consumer sees the gap and resynchronises at the next keyframe.

It counts its consumers: XPUB_VERBOSER hands over every subscription and every
unsubscription (a subscriber that closes or goes away unsubscribes too), and a
media-plane subscriber subscribes to everything once, so the count is the number
of subscribers connected. A source that is let go while nobody watches (a
GB/T 28181 channel) publishes nothing meanwhile, so the (un)subscriptions that
`publish` would serve are served by :meth:`watch` on the event loop instead.

Threads: the camera service publishes from the RTSP reader thread (no event
loop hop per frame) while `reset()` and `close()` come from the event loop; a
lock makes that safe. It is never contended for longer than one send.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import zmq

from edge.media.gop import GopCache
from edge.media.wire import encode_parts

SNDHWM = 60  # about 2 s of 30 fps video per subscriber
# `watch` looks at the socket at least this often, should a wake-up of its fd be missed
# (another thread reading the socket's events clears it).
WATCH_BACKSTOP_S = 1.0


@dataclass
class PublisherStats:
    published: int = 0
    bytes: int = 0
    subscriptions: int = 0
    unsubscriptions: int = 0
    replayed: int = 0


class MediaPublisher:
    """`on_consumers()` is called, in whichever thread served the change, after
    :attr:`consumers` changed; it must be quick and thread-safe (read the count there)."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str,
                 on_consumers: Callable[[], None] | None = None) -> None:
        if endpoint.startswith("ipc://"):
            Path(endpoint.removeprefix("ipc://")).parent.mkdir(parents=True, exist_ok=True)
        self.endpoint = endpoint
        self.sock: zmq.Socket[bytes] = ctx.socket(zmq.XPUB)
        # Every subscribe (each gets the GOP) and every unsubscribe (to count consumers).
        self.sock.setsockopt(zmq.XPUB_VERBOSER, 1)
        self.sock.setsockopt(zmq.SNDHWM, SNDHWM)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)
        self._lock = threading.Lock()
        self.closed = False
        self.epoch = random.getrandbits(31)
        self.seq = 0
        # Kept encoded: a replay sends the very frames the live subscribers got.
        self.gop: GopCache[list[bytes]] = GopCache()
        self.stats = PublisherStats()
        self.consumers = 0
        self._on_consumers = on_consumers

    def publish(self, data: bytes, *, keyframe: bool, pts: int | None, dts: int | None,
                time_base: Fraction, codec: str, received_ns: int | None = None) -> None:
        """Send one access unit to every subscriber; never blocks. Any one thread."""
        changed = False
        with self._lock:
            if self.closed:
                return
            # Checking EVENTS is far cheaper than a recv that raises zmq.Again
            # on every frame.
            if int(self.sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                changed = self._serve_subscriptions()
            self.seq += 1
            frames = encode_parts(self.epoch, self.seq, keyframe, pts, dts, time_base, codec,
                                  received_ns or time.time_ns(), data)
            self.gop.add(frames, keyframe)
            self.sock.send_multipart(frames)
            self.stats.published += 1
            self.stats.bytes += len(data)
        if changed:
            self._tell_consumers()

    def reset(self) -> None:
        """Forget the cached GOP (the source reconnected; what follows starts anew)."""
        with self._lock:
            self.gop.reset()

    def serve(self) -> bool:
        """Take the (un)subscriptions queued now, replaying the GOP to each new one; any
        thread. False once closed."""
        with self._lock:
            if self.closed:
                return False
            changed = self._serve_subscriptions()
        if changed:
            self._tell_consumers()
        return True

    async def watch(self) -> None:
        """Serve (un)subscriptions as they come, on the event loop, until cancelled or closed.

        Cancel it before :meth:`close`: its fd is registered with the loop, and a
        registration left on a closed fd would catch the next socket given that number.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            if self.closed:
                return
            fd = int(self.sock.getsockopt(zmq.FD))
        wake = asyncio.Event()
        # ZMQ_FD signals "look at EVENTS"; serve() reads EVENTS, which clears it, so the
        # level-triggered reader cannot spin while this waits.
        loop.add_reader(fd, wake.set)
        try:
            while True:
                wake.clear()
                if not self.serve():
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(WATCH_BACKSTOP_S):
                        await wake.wait()
        finally:
            loop.remove_reader(fd)

    def _serve_subscriptions(self) -> bool:
        """Under the lock: whether the consumer count changed."""
        before = self.consumers
        while int(self.sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            msg = self.sock.recv(zmq.NOBLOCK)
            if msg[:1] == b"\x00":
                self.stats.unsubscriptions += 1
                self.consumers = max(0, self.consumers - 1)
                continue
            if msg[:1] != b"\x01":
                continue
            self.stats.subscriptions += 1
            self.consumers += 1
            for frames in self.gop:
                self.sock.send_multipart(frames)
                self.stats.replayed += 1
        return self.consumers != before

    def _tell_consumers(self) -> None:
        # Outside the lock: the callback may hop threads, and must never wait on a send.
        if self._on_consumers is not None:
            self._on_consumers()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self.sock.close(linger=0)
