"""The bus broker: an XSUB/XPUB proxy with a last-value cache, and request routing.

Forwarding is libzmq's own proxy (``zmq_proxy``), in two threads of their own:
the bus's hot path runs in C without the GIL. The broker owns a private context
so that it can stop those threads the zguide way, by terminating the context
(the steerable proxy's TERMINATE proved unreliable with a capture socket in
libzmq 4.3.5). Around them, one Python thread does the rest:

- *Intake*: an XSUB (``pub`` endpoint) receives every publisher's messages and
  a one-way proxy passes them to an in-process PUB. Its subscription upstream
  is fixed: every topic, spelled as every first byte but ``\x00`` and ``\x01``,
  so a publisher's own PUB socket drops a one-frame message that would look
  like a subscription. Being one-way, it never forwards subscribers'
  subscriptions to publishers (a single proxy would: one subscriber of
  everything and every publisher sends everything, forged subscriptions too).
  It also subscribes to everything the broker must see, state that nobody
  is subscribed to yet included.
- *Fan-out*: an XSUB on that in-process PUB and an XPUB (``sub`` endpoint),
  the classic proxy, fan messages out to subscribers.
- Last-value cache: the fan-out proxy copies all its traffic, both
  directions, to a capture socket. From it the cache keeps the latest message of every state
  topic (:func:`edge.bus.topics.is_state`), and sees subscriptions arrive
  (XPUB is verbose, so repeats arrive too). For each, every cached message
  under the prefix is injected back into the proxy. Other subscribers of that
  prefix see it twice; the client marks such replays (same publisher epoch,
  sequence and stamp) and does not count them as gaps. Under overload the
  capture drops rather than slow the proxy; the cache is then at most one
  update behind.
- Busy event topics pass the cache thread by: Python costs more per message
  than the two proxies together, so a topic the cache has no use for must not
  reach it at a high rate. The capture socket inverts its matching
  (``ZMQ_INVERT_MATCHING``): the cache thread's subscriptions are topics it
  does *not* want, and libzmq drops those in the proxy's thread. An event topic
  seen :data:`HOT_EVENTS` times within one :data:`HOT_WINDOW_S` is excluded so
  until the window ends; then every exclusion is lifted and the topics are
  counted afresh. State is never excluded. An exclusion is a prefix, so it also
  hides longer topics: a topic is not excluded while a cached state topic
  begins with it, and one that begins with a busy event topic's name is seen
  between windows only (:mod:`edge.bus.topics` spells none: events live under
  ``alert/`` and ``event/``). ``stats.forwarded`` counts what the cache thread
  saw; ``stats.bypassed`` how often a topic was excluded.
- The capture cannot tell the two directions apart: a one-frame message
  starting with ``\x01`` is a subscription whichever side sent it. Publishers
  cannot send one (the intake's fixed subscription, above), and what does
  reach the cache is bounded anyway: a state message is cached only with a well-formed
  header and at most :data:`MAX_STATE_BYTES`, the cache holds at most
  :data:`MAX_CACHED_TOPICS` topics and :data:`MAX_CACHE_BYTES`, and a prefix is
  replayed at most once per :data:`REPLAY_EVERY_S` (a repeat within that time
  is answered once, when it is up), within :data:`REPLAY_BYTES_PER_S` in all.
- ROUTER (``router`` endpoint): services register a name with a heartbeat;
  clients send requests to a name; the broker forwards and routes replies back.
  A request to a name nobody answers for gets an immediate error; a service that
  stays silent is the client's timeout.

Router frames (after the ROUTER identity and an empty delimiter):
  service → broker  ``REG name``                       (every second)
  client  → broker  ``REQ service reqid header body *blobs``
  broker  → service ``REQ client-id reqid header body *blobs``
  service → broker  ``REP client-id reqid header body *blobs``
  broker  → client  ``REP reqid header body *blobs``  or  ``ERR reqid text``
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import zmq

from edge.bus import topics
from edge.bus.endpoints import Endpoints
from edge.bus.envelope import MalformedFrame, decode_header
from edge.bus.zmqio import recv_frames

log = logging.getLogger(__name__)

REG, REQ, REP, ERR = b"REG", b"REQ", b"REP", b"ERR"
# How an ERR reply for a service nobody has registered begins.
NO_SERVICE = b"no service "
SERVICE_TTL_S = 3.0
MAX_CACHED_TOPICS = 20_000
# A thumbnail is tens of kB; nothing that is state needs more than this.
MAX_STATE_BYTES = 1 << 20
MAX_CACHE_BYTES = 64 << 20
REPLAY_EVERY_S = 0.25
REPLAY_BYTES_PER_S = 32 << 20
# An event topic this busy within one window passes the cache thread by until it ends.
HOT_EVENTS = 200
HOT_WINDOW_S = 1.0
MAX_COUNTED_TOPICS = 20_000  # event topics counted per window; a flood of names starts over
# Every first byte a topic may start with: all but the two that mark subscriptions.
UPSTREAM_PREFIXES = tuple(b"\x01" + bytes([b]) for b in range(2, 256))
_DRAIN = 1000  # messages forwarded per socket per poll round, so no side starves
# Queue depth per peer; bursts of control traffic fit, a stuck subscriber is cut off.
DEFAULT_HWM = 50_000


@dataclass
class BrokerStats:
    forwarded: int = 0  # messages the cache thread saw (busy event topics pass it by)
    bypassed: int = 0  # times an event topic was excluded from the cache thread for a window
    subscriptions: int = 0
    replayed: int = 0
    replays_deferred: int = 0
    not_cached: int = 0
    requests: int = 0
    replies: int = 0
    unroutable: int = 0
    malformed: Counter[str] = field(default_factory=Counter)


class Broker:
    def __init__(self, endpoints: Endpoints, hwm: int = DEFAULT_HWM) -> None:
        self.endpoints = endpoints
        self.hwm = hwm
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.stats = BrokerStats()
        self.cache: dict[bytes, list[bytes]] = {}
        self.cache_bytes = 0
        self._replayed_at: dict[bytes, float] = {}  # prefix → when it was last replayed
        self._replay_due: dict[bytes, float] = {}  # prefix → when its deferred replay is due
        self._replay_budget = float(REPLAY_BYTES_PER_S)
        self._budget_at = time.monotonic()
        self.services: dict[bytes, tuple[bytes, float]] = {}
        self._stop_addr = f"inproc://broker-stop-{id(self)}"
        self._logged_kinds: set[str] = set()
        self._bound = False
        self._event_counts: dict[bytes, int] = {}  # event topic → messages seen this window
        self._excluded: set[bytes] = set()
        self._window_ends = 0.0

    def bind(self) -> None:
        """Bind all sockets; separate from run() so a caller knows binding succeeded."""
        self.endpoints.runtime_dir.mkdir(parents=True, exist_ok=True)
        tag = id(self)
        ctx = self.ctx
        self.intake = ctx.socket(zmq.XSUB)
        self.intake_out = ctx.socket(zmq.PUB)
        self.intake_out.setsockopt(zmq.SNDHWM, self.hwm)
        self.intake.setsockopt(zmq.RCVHWM, self.hwm)
        self.xsub = ctx.socket(zmq.XSUB)
        self.xpub = ctx.socket(zmq.XPUB)
        self.xpub.setsockopt(zmq.XPUB_VERBOSE, 1)
        self.xsub.setsockopt(zmq.RCVHWM, self.hwm)
        self.xpub.setsockopt(zmq.SNDHWM, self.hwm)
        self.capture = ctx.socket(zmq.PUB)
        self.capture.setsockopt(zmq.SNDHWM, self.hwm)
        self.capture.setsockopt(zmq.INVERT_MATCHING, 1)  # subscriptions are exclusions
        self.router = ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.captured = ctx.socket(zmq.SUB)
        self.captured.setsockopt(zmq.RCVHWM, self.hwm)
        self.captured.setsockopt(zmq.INVERT_MATCHING, 1)  # no exclusion yet: everything
        self.inject = ctx.socket(zmq.PUB)
        self.stop_rx = ctx.socket(zmq.PAIR)
        self._proxy_sockets = [self.intake, self.intake_out, self.xsub, self.xpub, self.capture]
        self._sockets = [self.router, self.captured, self.inject, self.stop_rx]
        for sock in self._proxy_sockets + self._sockets:
            sock.setsockopt(zmq.LINGER, 0)
        self.intake.bind(self.endpoints.pub)
        self.intake.bind(f"inproc://broker-inject-{tag}")
        self.intake_out.bind(f"inproc://broker-intake-{tag}")
        self.xsub.connect(f"inproc://broker-intake-{tag}")
        self.xsub.send(b"\x01")  # the fan-out sees all the intake passes
        self.xpub.bind(self.endpoints.sub)
        self.router.bind(self.endpoints.router)
        self.capture.bind(f"inproc://broker-capture-{tag}")
        self.stop_rx.bind(self._stop_addr)
        self.captured.connect(f"inproc://broker-capture-{tag}")
        self.inject.connect(f"inproc://broker-inject-{tag}")
        for prefix in UPSTREAM_PREFIXES:  # every topic, and nothing else (see module doc)
            self.intake.send(prefix)
        self._bound = True

    def stop(self) -> None:
        """Thread-safe: ask run() to return."""
        s = self.ctx.socket(zmq.PAIR)
        s.setsockopt(zmq.LINGER, 200)
        s.connect(self._stop_addr)
        s.send(b"stop")
        s.close()

    def _proxy(self, *sockets: zmq.Socket[bytes]) -> None:
        try:
            zmq.proxy(*sockets)
        except zmq.ContextTerminated:
            pass
        finally:
            for sock in sockets:
                sock.close(linger=0)

    def _malformed(self, kind: str, detail: str) -> None:
        self.stats.malformed[kind] += 1
        if kind not in self._logged_kinds:
            self._logged_kinds.add(kind)
            log.warning("dropped malformed message (%s): %s; further ones are only counted",
                        kind, detail)

    def run(self) -> None:
        if not self._bound:
            self.bind()
        proxies = [
            threading.Thread(target=self._proxy, args=(self.intake, self.intake_out),
                             name="bus-intake", daemon=True),
            threading.Thread(target=self._proxy, args=(self.xsub, self.xpub, self.capture),
                             name="bus-fanout", daemon=True)]
        for proxy in proxies:
            proxy.start()
        poller = zmq.Poller()
        for sock in (self.captured, self.router, self.stop_rx):
            poller.register(sock, zmq.POLLIN)
        try:
            while True:
                due = min(self._replay_due.values(), default=float("inf"))
                if self._excluded:
                    due = min(due, self._window_ends)
                wait_ms = 500 if due == float("inf") else max(
                    0, min(500, int((due - time.monotonic()) * 1000) + 1))
                ready = dict(poller.poll(wait_ms))
                if self.stop_rx in ready:
                    return
                if time.monotonic() >= self._window_ends:
                    self._new_window()
                if self.captured in ready:
                    self._observe()
                if self.router in ready:
                    self._route()
                if self._replay_due:
                    self._replay_deferred()
        finally:
            for sock in self._sockets:
                sock.close(linger=0)
            self.ctx.term()  # ends the proxy threads (ETERM), which close their sockets
            for proxy in proxies:
                proxy.join(2.0)

    def _observe(self) -> None:
        """Keep state messages; answer subscriptions from the cache; exclude busy events."""
        sock, is_state, counts = self.captured, topics.is_state, self._event_counts
        for _ in range(_DRAIN):
            try:
                frames = recv_frames(sock)
            except zmq.Again:
                return
            first = frames[0]
            if len(frames) == 1 and first[:1] in (b"\x00", b"\x01"):
                if first[:1] == b"\x01":
                    self._subscribed(first[1:])
                continue
            if len(frames) < 3:
                self._malformed("too few frames", f"{len(frames)} frame(s)")
                continue
            self.stats.forwarded += 1
            if is_state(first):
                self._keep(first, frames)
                continue
            seen = counts.get(first, 0) + 1
            counts[first] = seen
            if seen == HOT_EVENTS:
                self._exclude(first)
            elif len(counts) > MAX_COUNTED_TOPICS:
                counts.clear()

    def _exclude(self, topic: bytes) -> None:
        """Have libzmq keep `topic`, and every topic it begins, from the cache thread."""
        for cached in self.cache:
            if cached.startswith(topic):
                return  # it would hide state we keep
        self._excluded.add(topic)
        self.captured.setsockopt(zmq.SUBSCRIBE, topic)
        self.stats.bypassed += 1

    def _new_window(self) -> None:
        """Lift every exclusion and count afresh: a topic may have quietened, or hidden state."""
        for topic in self._excluded:
            self.captured.setsockopt(zmq.UNSUBSCRIBE, topic)
        self._excluded.clear()
        self._event_counts.clear()
        self._window_ends = time.monotonic() + HOT_WINDOW_S

    def _keep(self, topic: bytes, frames: list[bytes]) -> None:
        size = sum(len(f) for f in frames)
        if size > MAX_STATE_BYTES:
            self.stats.not_cached += 1
            self._malformed("state too large", f"{topic[:80]!r}: {size} bytes")
            return
        try:
            decode_header(frames)
        except MalformedFrame as e:
            self._malformed(e.kind, f"state message on {topic[:80]!r} not cached: {e}")
            return
        old = self.cache.get(topic)
        grown = size - (sum(len(f) for f in old) if old is not None else 0)
        if (old is None and len(self.cache) >= MAX_CACHED_TOPICS) or \
                self.cache_bytes + grown > MAX_CACHE_BYTES:
            self.stats.not_cached += 1
            self._malformed("cache full", f"{topic[:80]!r} not cached")
            return
        self.cache[topic] = frames
        self.cache_bytes += grown

    def _subscribed(self, prefix: bytes) -> None:
        self.stats.subscriptions += 1
        now = time.monotonic()
        last = self._replayed_at.get(prefix)
        if last is not None and now - last < REPLAY_EVERY_S:
            # A repeat (or a flood): the subscriber still gets its replay, once, shortly.
            if prefix not in self._replay_due and len(self._replay_due) < MAX_CACHED_TOPICS:
                self.stats.replays_deferred += 1
                self._replay_due[prefix] = last + REPLAY_EVERY_S
            return
        self._replay(prefix, now)

    def _replay_deferred(self) -> None:
        now = time.monotonic()
        for prefix, due in list(self._replay_due.items()):
            if due <= now:
                del self._replay_due[prefix]
                self._replay(prefix, now)

    def _replay(self, prefix: bytes, now: float) -> None:
        self._replay_budget = min(float(REPLAY_BYTES_PER_S), self._replay_budget
                                  + (now - self._budget_at) * REPLAY_BYTES_PER_S)
        self._budget_at = now
        if self._replay_budget <= 0:
            self.stats.replays_deferred += 1
            self._replay_due[prefix] = now + -self._replay_budget / REPLAY_BYTES_PER_S
            return
        if len(self._replayed_at) > 4 * MAX_CACHED_TOPICS:
            self._replayed_at = {p: t for p, t in self._replayed_at.items()
                                 if now - t < REPLAY_EVERY_S}
        self._replayed_at[prefix] = now
        for topic, frames in list(self.cache.items()):
            if topic.startswith(prefix):
                self.inject.send_multipart(frames)
                self.stats.replayed += 1
                self._replay_budget -= sum(len(f) for f in frames)

    def _route(self) -> None:
        for _ in range(_DRAIN):
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) < 3 or frames[1] != b"":
                self._malformed("bad router frame", f"{len(frames)} frame(s)")
                continue
            sender, kind, rest = frames[0], frames[2], frames[3:]
            if kind == REG and len(rest) == 1:
                self.services[rest[0]] = (sender, time.monotonic() + SERVICE_TTL_S)
            elif kind == REQ and len(rest) >= 4:
                self.stats.requests += 1
                self._request(sender, rest[0], rest[1], rest[2:])
            elif kind == REP and len(rest) >= 4:
                self.stats.replies += 1
                self._send(rest[0], [REP, *rest[1:]])
            else:
                self._malformed("bad router frame", f"kind {kind[:8]!r} with {len(rest)} part(s)")

    def _request(self, client: bytes, service: bytes, reqid: bytes, payload: list[bytes]) -> None:
        entry = self.services.get(service)
        if entry is None or entry[1] < time.monotonic():
            self.services.pop(service, None)
            self.stats.unroutable += 1
            name = service.decode(errors="replace")
            self._send(client, [ERR, reqid, NO_SERVICE + f'"{name}" on the bus'.encode()])
            return
        if not self._send(entry[0], [REQ, client, reqid, *payload]):
            self.services.pop(service, None)
            self._send(client, [ERR, reqid, b"service went away"])

    def _send(self, identity: bytes, parts: list[bytes]) -> bool:
        try:
            self.router.send_multipart([identity, b"", *parts], zmq.NOBLOCK)
            return True
        except zmq.ZMQError:
            # The peer is gone (EHOSTUNREACH) or full: the requester's timeout covers it.
            self.stats.unroutable += 1
            return False
