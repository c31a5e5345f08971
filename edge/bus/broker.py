"""The bus broker: an XSUB/XPUB proxy with a last-value cache, and request routing.

Forwarding is libzmq's own proxy (``zmq_proxy``) in a thread of its own: the
bus's hot path runs in C without the GIL. The broker owns a private context so
that it can stop that thread the zguide way, by terminating the context (the
steerable proxy's TERMINATE proved unreliable with a capture socket in libzmq
4.3.5). Around it, one Python thread does the rest:

- XSUB (``pub`` endpoint) receives every publisher's messages; XPUB (``sub``
  endpoint) fans them out. The XSUB subscribes to everything, because the
  broker must see state messages that nobody is subscribed to yet.
- Last-value cache: the proxy copies all traffic, both directions, to a
  capture socket. From it the cache keeps the latest message of every state
  topic (:func:`edge.bus.topics.is_state`), and sees subscriptions arrive
  (XPUB is verbose, so repeats arrive too). For each, every cached message
  under the prefix is injected back into the proxy. Other subscribers of that
  prefix see it twice; the client marks such replays (their sequence number is
  not new) and does not count them as gaps. Under overload the capture drops
  rather than slow the proxy; the cache is then at most one update behind.
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

log = logging.getLogger(__name__)

REG, REQ, REP, ERR = b"REG", b"REQ", b"REP", b"ERR"
SERVICE_TTL_S = 3.0
MAX_CACHED_TOPICS = 20_000
_DRAIN = 1000  # messages forwarded per socket per poll round, so no side starves
# Queue depth per peer; bursts of control traffic fit, a stuck subscriber is cut off.
DEFAULT_HWM = 50_000


@dataclass
class BrokerStats:
    forwarded: int = 0
    subscriptions: int = 0
    replayed: int = 0
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
        self.services: dict[bytes, tuple[bytes, float]] = {}
        self._stop_addr = f"inproc://broker-stop-{id(self)}"
        self._logged_kinds: set[str] = set()
        self._bound = False

    def bind(self) -> None:
        """Bind all sockets; separate from run() so a caller knows binding succeeded."""
        self.endpoints.runtime_dir.mkdir(parents=True, exist_ok=True)
        tag = id(self)
        ctx = self.ctx
        self.xsub = ctx.socket(zmq.XSUB)
        self.xpub = ctx.socket(zmq.XPUB)
        self.xpub.setsockopt(zmq.XPUB_VERBOSE, 1)
        self.xsub.setsockopt(zmq.RCVHWM, self.hwm)
        self.xpub.setsockopt(zmq.SNDHWM, self.hwm)
        self.capture = ctx.socket(zmq.PUB)
        self.capture.setsockopt(zmq.SNDHWM, self.hwm)
        self.router = ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.captured = ctx.socket(zmq.SUB)
        self.captured.setsockopt(zmq.RCVHWM, self.hwm)
        self.inject = ctx.socket(zmq.PUB)
        self.stop_rx = ctx.socket(zmq.PAIR)
        self._proxy_sockets = [self.xsub, self.xpub, self.capture]
        self._sockets = [self.router, self.captured, self.inject, self.stop_rx]
        for sock in self._proxy_sockets + self._sockets:
            sock.setsockopt(zmq.LINGER, 0)
        self.xsub.bind(self.endpoints.pub)
        self.xsub.bind(f"inproc://broker-inject-{tag}")
        self.xpub.bind(self.endpoints.sub)
        self.router.bind(self.endpoints.router)
        self.capture.bind(f"inproc://broker-capture-{tag}")
        self.stop_rx.bind(self._stop_addr)
        self.captured.connect(f"inproc://broker-capture-{tag}")
        self.captured.setsockopt(zmq.SUBSCRIBE, b"")
        self.inject.connect(f"inproc://broker-inject-{tag}")
        self.xsub.send(b"\x01")  # subscribe upstream to everything (see module doc)
        self._bound = True

    def stop(self) -> None:
        """Thread-safe: ask run() to return."""
        s = self.ctx.socket(zmq.PAIR)
        s.setsockopt(zmq.LINGER, 200)
        s.connect(self._stop_addr)
        s.send(b"stop")
        s.close()

    def _proxy(self) -> None:
        try:
            zmq.proxy(self.xsub, self.xpub, self.capture)
        except zmq.ContextTerminated:
            pass
        finally:
            for sock in self._proxy_sockets:
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
        proxy = threading.Thread(target=self._proxy, name="bus-proxy", daemon=True)
        proxy.start()
        poller = zmq.Poller()
        for sock in (self.captured, self.router, self.stop_rx):
            poller.register(sock, zmq.POLLIN)
        try:
            while True:
                ready = dict(poller.poll(500))
                if self.stop_rx in ready:
                    return
                if self.captured in ready:
                    self._observe()
                if self.router in ready:
                    self._route()
        finally:
            for sock in self._sockets:
                sock.close(linger=0)
            self.ctx.term()  # ends the proxy thread (ETERM), which closes its sockets
            proxy.join(2.0)

    def _observe(self) -> None:
        """Keep state messages; answer subscriptions from the cache."""
        recv, cache, is_state = self.captured.recv_multipart, self.cache, topics.is_state
        for _ in range(_DRAIN):
            try:
                frames = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            first = frames[0]
            if len(frames) == 1 and first[:1] in (b"\x00", b"\x01"):
                if first[:1] == b"\x01":
                    self._replay(first[1:])
                continue
            if len(frames) < 3:
                self._malformed("too few frames", f"{len(frames)} frame(s)")
                continue
            self.stats.forwarded += 1
            if is_state(first) and (first in cache or len(cache) < MAX_CACHED_TOPICS):
                cache[first] = frames

    def _replay(self, prefix: bytes) -> None:
        self.stats.subscriptions += 1
        for topic, frames in list(self.cache.items()):
            if topic.startswith(prefix):
                self.inject.send_multipart(frames)
                self.stats.replayed += 1

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
            self._send(client, [ERR, reqid, f'no service "{name}" on the bus'.encode()])
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
