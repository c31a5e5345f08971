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

Threads: the camera service publishes from the RTSP reader thread (no event
loop hop per frame) while `reset()` and `close()` come from the event loop; a
lock makes that safe. It is never contended for longer than one send.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import zmq

from edge.media.gop import GopCache
from edge.media.wire import encode_parts

SNDHWM = 60  # about 2 s of 30 fps video per subscriber


@dataclass
class PublisherStats:
    published: int = 0
    bytes: int = 0
    subscriptions: int = 0
    replayed: int = 0


class MediaPublisher:
    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> None:
        if endpoint.startswith("ipc://"):
            Path(endpoint.removeprefix("ipc://")).parent.mkdir(parents=True, exist_ok=True)
        self.endpoint = endpoint
        self.sock: zmq.Socket[bytes] = ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.XPUB_VERBOSE, 1)
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

    def publish(self, data: bytes, *, keyframe: bool, pts: int | None, dts: int | None,
                time_base: Fraction, codec: str, received_ns: int | None = None) -> None:
        """Send one access unit to every subscriber; never blocks. Any one thread."""
        with self._lock:
            if self.closed:
                return
            # Checking EVENTS is far cheaper than a recv that raises zmq.Again
            # on every frame.
            if int(self.sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                self._serve_new_subscribers()
            self.seq += 1
            frames = encode_parts(self.epoch, self.seq, keyframe, pts, dts, time_base, codec,
                                  received_ns or time.time_ns(), data)
            self.gop.add(frames, keyframe)
            self.sock.send_multipart(frames)
            self.stats.published += 1
            self.stats.bytes += len(data)

    def reset(self) -> None:
        """Forget the cached GOP (the source reconnected; what follows starts anew)."""
        with self._lock:
            self.gop.reset()

    def _serve_new_subscribers(self) -> None:
        while True:
            try:
                msg = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if msg[:1] != b"\x01":
                continue
            self.stats.subscriptions += 1
            for frames in self.gop:
                self.sock.send_multipart(frames)
                self.stats.replayed += 1

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self.sock.close(linger=0)
