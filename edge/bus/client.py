"""The bus client every process uses: publish, subscribe by prefix, request, serve.

One ZeroMQ context per process (:func:`context`). Publishing is a plain
non-blocking call, safe from async code: a PUB socket never waits (at its high
water mark it drops), so there is nothing to await and no future to allocate on
the hot path. Subscriptions, requests and serving are asyncio.

Every client has a random *epoch*, sent in each header, so that subscribers
tell a restarted publisher from a replay (:mod:`edge.bus.sequence`).

State survives a broker restart: the client keeps the last message it
published on each state topic and, whenever its PUB socket completes a new
connection to the broker (a ZeroMQ monitor event), sends those messages again,
byte for byte. A restarted broker's cache thus fills up again within a moment
with everything the vehicle's services hold, including what they announce only
once (a camera's stream, a drone's video URL); subscribers that already had a
message see the same (epoch, seq, stamp) and take it as a replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.asyncio

from edge.bus import envelope, topics
from edge.bus.broker import ERR, NO_SERVICE, REG, REP, REQ
from edge.bus.endpoints import Endpoints
from edge.bus.envelope import Envelope, MalformedFrame
from edge.bus.messages import Message, Reply
from edge.bus.sequence import SequenceTracker
from edge.bus.zmqio import Readable, drain, send_frames

log = logging.getLogger(__name__)

REGISTER_EVERY_S = 1.0
NO_SERVICE_RETRY_FIRST_S = 0.05
NO_SERVICE_RETRY_MAX_S = 0.5
SUB_HWM = 50_000
RECV_BATCH = 256
# After a new connection to the broker, state is sent again at these delays: the
# broker's upstream subscription reaches our PUB socket a moment after the
# handshake, and anything sent before it is dropped (ZeroMQ's slow joiner).
REASSERT_AFTER_S = (0.05, 0.5, 2.0)


def context() -> zmq.asyncio.Context:
    """The process's one ZeroMQ context (asyncio flavour; sync sockets shadow it)."""
    return zmq.asyncio.Context.instance()


class RequestError(Exception):
    """A request that got no reply: the broker said why, or time ran out."""


class RequestTimeout(RequestError):
    pass


@dataclass
class ClientStats:
    published: int = 0
    received: int = 0
    gaps: int = 0
    missed: int = 0
    malformed: Counter[str] = field(default_factory=Counter)


class Subscription:
    """Messages under one topic prefix, in order, malformed ones dropped and counted."""

    def __init__(self, client: BusClient, prefixes: tuple[str, ...], raw: bool) -> None:
        self._client = client
        self._raw = raw
        self._sequence = SequenceTracker()
        # A plain socket driven by our own readiness wait: zmq.asyncio costs a
        # future per message and, with its edge-triggered fd, let messages sit
        # queued for milliseconds at a few thousand a second.
        self.socket: zmq.Socket[bytes] = client.sync_ctx.socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.RCVHWM, SUB_HWM)
        self.socket.connect(client.endpoints.sub)
        for p in prefixes:
            self.socket.setsockopt(zmq.SUBSCRIBE, p.encode())
        self._readable = Readable(self.socket)
        self._batch: deque[list[bytes]] = deque()

    async def recv(self) -> Envelope:
        while True:
            while not self._batch:
                await self._readable.wait()
                drain(self.socket, self._batch, RECV_BATCH)
            frames = self._batch.popleft()
            try:
                env = envelope.decode(frames, raw=self._raw)
            except MalformedFrame as e:
                self._client.note_malformed(e)
                continue
            self._client.stats.received += 1
            verdict = self._sequence.classify(env.topic, env.header)
            if verdict.replayed:
                env.replayed = True
            elif verdict.gap:
                env.gap = verdict.gap
                self._client.stats.gaps += 1
                self._client.stats.missed += verdict.gap
            return env

    def __aiter__(self) -> AsyncIterator[Envelope]:
        return self

    async def __anext__(self) -> Envelope:
        return await self.recv()

    def close(self) -> None:
        self._readable.close()
        self.socket.close(linger=0)
        self._client._subscriptions.discard(self)


Handler = Callable[[Envelope], Awaitable[Message]]


class BusClient:
    def __init__(self, endpoints: Endpoints, source: str) -> None:
        self.endpoints = endpoints
        self.source = source
        self.epoch = secrets.randbits(32)
        self.ctx = context()
        # The same context, for sockets we drive without zmq.asyncio.
        self.sync_ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.shadow(self.ctx.underlying)
        self.stats = ClientStats()
        self._pub: zmq.Socket[bytes] = self.sync_ctx.socket(zmq.PUB)
        self._pub.setsockopt(zmq.LINGER, 0)
        self._pub.setsockopt(zmq.SNDHWM, 10_000)
        self._pub.connect(endpoints.pub)
        self._seq: dict[str, int] = {}
        self._state: dict[str, list[bytes]] = {}  # last message per state topic we publish
        self._reasserting: asyncio.Task[None] | None = None
        self._subscriptions: set[Subscription] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dealer: zmq.asyncio.Socket | None = None
        self._pending: dict[bytes, asyncio.Future[list[bytes]]] = {}
        self._reqids = itertools.count(1)
        self._servers: list[zmq.asyncio.Socket] = []
        self._logged_kinds: set[str] = set()
        self.closed = False

    # -- publishing --------------------------------------------------------------
    def publish(self, topic: str, message: Message, *blobs: bytes) -> None:
        seq = self._seq.get(topic, 0) + 1
        self._seq[topic] = seq
        frames = envelope.encode(topic, message, self.source, seq, blobs, self.epoch)
        if topics.is_state(frames[0]):
            self._state[topic] = frames
            if self._reasserting is None:
                self._start_reasserting()
        if blobs:
            # A caller's blobs: checked before the first frame goes, and not copied.
            self._pub.send_multipart(frames, copy=False)
        else:
            send_frames(self._pub, frames)
        self.stats.published += 1

    def _start_reasserting(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # publishing outside asyncio (a benchmark thread): nothing to watch with
        self._reasserting = self._spawn(self._reassert_state(), "bus-reassert")

    async def _reassert_state(self) -> None:
        monitor = self._pub.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        readable = Readable(monitor)
        events: deque[list[bytes]] = deque()
        # The first round needs no event: the handshake may have come before this
        # monitor existed (a state published a moment after connecting), and then
        # that first send could have met no subscription upstream yet.
        first_round = True
        try:
            while True:
                if not first_round:
                    await readable.wait()
                first_round = False
                drain(monitor, events, RECV_BATCH)
                events.clear()
                done = 0.0
                for at in REASSERT_AFTER_S:
                    await asyncio.sleep(at - done)
                    done = at
                    for frames in list(self._state.values()):
                        self._pub.send_multipart(frames, copy=False)
        finally:
            readable.close()
            with contextlib.suppress(zmq.ZMQError):
                self._pub.disable_monitor()
            monitor.close(linger=0)

    # -- subscribing -------------------------------------------------------------
    def subscribe(self, *prefixes: str, raw: bool = False) -> Subscription:
        """Everything under any of `prefixes` ("" is everything). `raw` skips typing bodies."""
        sub = Subscription(self, prefixes or ("",), raw)
        self._subscriptions.add(sub)
        return sub

    def note_malformed(self, err: MalformedFrame) -> None:
        self.stats.malformed[err.kind] += 1
        if err.kind not in self._logged_kinds:
            self._logged_kinds.add(err.kind)
            log.warning("dropped malformed bus message (%s); further ones are only counted", err)

    # -- requests ----------------------------------------------------------------
    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def request(
        self, service: str, message: Message, timeout: float | None = None
    ) -> Envelope:
        """Send `message` to the service registered as `service`; its reply, or an error."""
        timeout = self.endpoints.request_timeout_s if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = NO_SERVICE_RETRY_FIRST_S
        while True:
            frames = await self._ask(service, message, max(0.0, deadline - loop.time()), timeout)
            if frames[0] != ERR:
                break
            # A service that has just started serving is heard by the broker within a
            # moment (its registration crosses our request): ask again until the deadline
            # rather than fail a console's first command during a start.
            if not frames[1].startswith(NO_SERVICE) or loop.time() + delay >= deadline:
                raise RequestError(frames[1].decode(errors="replace"))
            await asyncio.sleep(delay)
            delay = min(delay * 2, NO_SERVICE_RETRY_MAX_S)
        try:
            return envelope.decode([b"", *frames[1:]])
        except MalformedFrame as e:
            raise RequestError(f"malformed reply from {service}: {e}") from None

    async def _ask(self, service: str, message: Message, timeout: float,
                   asked: float) -> list[bytes]:
        """One request and its reply's frames (`[REP|ERR, ...]`), or RequestTimeout
        (naming `asked`, the caller's whole timeout)."""
        if self._dealer is None:
            self._dealer = self.ctx.socket(zmq.DEALER)
            self._dealer.setsockopt(zmq.LINGER, 0)
            self._dealer.connect(self.endpoints.router)
            self._spawn(self._read_replies(self._dealer), "bus-replies")
        reqid = next(self._reqids).to_bytes(8, "big")
        fut: asyncio.Future[list[bytes]] = asyncio.get_running_loop().create_future()
        self._pending[reqid] = fut
        topic, header, body = envelope.encode("", message, self.source, int(reqid.hex(), 16))
        try:
            await self._dealer.send_multipart([b"", REQ, service.encode(), reqid, header, body])
            # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancel that
            # lands as the reply does, and the caller runs on as if never cancelled.
            async with asyncio.timeout(timeout):
                frames = await fut
        except TimeoutError:
            raise RequestTimeout(f"no reply from {service} within {asked:g} s") from None
        finally:
            self._pending.pop(reqid, None)
        return frames

    async def _read_replies(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            frames = await sock.recv_multipart()
            # [b"", REP|ERR, reqid, ...]
            if len(frames) < 4 or frames[1] not in (REP, ERR):
                self.note_malformed(MalformedFrame("bad reply", f"{len(frames)} frame(s)"))
                continue
            fut = self._pending.get(frames[2])
            if fut is not None and not fut.done():
                fut.set_result([frames[1], *frames[3:]])

    # -- serving -----------------------------------------------------------------
    def serve(self, name: str, handler: Handler) -> None:
        """Answer requests addressed to `name` until the client closes."""
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoints.router)
        self._servers.append(sock)
        self._spawn(self._register(sock, name), f"bus-register-{name}")
        self._spawn(self._serve(sock, handler), f"bus-serve-{name}")

    async def _register(self, sock: zmq.asyncio.Socket, name: str) -> None:
        # Repeated so a restarted broker learns us again without anyone noticing.
        while True:
            await sock.send_multipart([b"", REG, name.encode()])
            await asyncio.sleep(REGISTER_EVERY_S)

    async def _serve(self, sock: zmq.asyncio.Socket, handler: Handler) -> None:
        while True:
            frames = await sock.recv_multipart()
            if len(frames) < 6 or frames[1] != REQ:
                self.note_malformed(MalformedFrame("bad request", f"{len(frames)} frame(s)"))
                continue
            self._spawn(self._answer(sock, handler, frames[2], frames[3], frames[4:]), "bus-answer")

    async def _answer(
        self, sock: zmq.asyncio.Socket, handler: Handler, client: bytes, reqid: bytes,
        payload: list[bytes],
    ) -> None:
        try:
            req = envelope.decode([b"", *payload])
            reply = await handler(req)
        except MalformedFrame as e:
            self.note_malformed(e)
            reply = Reply(status="error", detail=f"malformed request: {e}")
        except Exception as e:  # a handler's bug must not end serving; the caller learns of it
            log.exception("request handler failed")
            reply = Reply(status="error", detail=f"{type(e).__name__}: {e}")
        _, header, body = envelope.encode("", reply, self.source, 0)
        await sock.send_multipart([b"", REP, client, reqid, header, body])

    # -- lifecycle ---------------------------------------------------------------
    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for sub in list(self._subscriptions):
            sub.close()
        for sock in [self._dealer, *self._servers]:
            if sock is not None:
                sock.close(linger=0)
        self._pub.close(linger=0)

