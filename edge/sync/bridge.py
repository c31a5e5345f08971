"""The bus → NATS bridge: what of the bus goes to the centre, thinned, queued, published.

**What goes.** Every state topic when its body changes (service health, whose uptime
changes every second, when its state changes or every ``health_every_s``); drone
telemetry at most ``telemetry_hz`` per drone, or ``telemetry_hz_by_link[<id>]`` while
the WAN carrying the tunnel is link ``<id>`` (the links service's
``link/<id>/status`` says which is ``active``); every alert, mark and command event.
Thumbnails stay on the vehicle (their JPEG is a blob, and the thin link has better
uses). Replay and benchmark topics are not the vehicle's state.

**Subject.** ``veh.<vehicle>.`` + the topic, ``/`` → ``.``; a character NATS gives a
meaning to (``.``, ``*``, ``>``, white space) or anything else outside
``[A-Za-z0-9_@-]`` becomes ``_`` (the exact topic rides in the ``Edge-Topic`` header).

**Payload.** The message body as JSON (bytes as base64), the bus header as NATS
headers (``Edge-Type``, ``Edge-Source``, ``Edge-Seq``, ``Edge-Epoch``, ``Edge-Ts``):
any NATS client, the ``nats`` CLI and a browser read it without our Python or our
header's positional layout. ``Nats-Msg-Id`` is (source, epoch, topic, seq), so a
publish retried after a lost ack is stored once.

**Back-pressure.** The bus reader only appends to an in-memory :class:`Outbox`; one
publisher takes from it, waits for each JetStream ack and retries the same message
until it is acked (in order, per subject and overall). While the local NATS is away
the outbox grows to ``queue_limit``; past it the oldest telemetry goes first, then
the oldest other state; alerts, marks and commands are never dropped (they are few),
so the outbox may exceed its limit by them. Every drop is counted by class.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import re
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from edge.bus import topics
from edge.bus.client import Subscription
from edge.bus.envelope import Envelope
from edge.config.sync import SyncConfig
from edge.sync.streams import SUBJECT_ROOT, ensure_vehicle_stream

log = logging.getLogger(__name__)

Kind = Literal["telemetry", "state", "keep"]
# Dropped first to last when the outbox is over its limit; "keep" never.
SHED_ORDER: tuple[Kind, ...] = ("telemetry", "state")
KINDS: tuple[Kind, ...] = ("telemetry", "state", "keep")
PUBLISH_TIMEOUT_S = 2.0
RETRY_AFTER_S = 0.5
_UNSAFE = re.compile(r"[^A-Za-z0-9_@-]")
_KEEP_TOPICS = frozenset({topics.EVENT_MARK, topics.EVENT_COMMAND})
_SKIPPED_LEAVES = frozenset({"thumbnail"})


def subject_for(vehicle: str, topic: str) -> str:
    """The NATS subject of a bus topic on `vehicle`: every token non-empty and plain."""
    tokens = [_UNSAFE.sub("_", t) or "_" for t in topic.split(topics.SEP)]
    return ".".join([SUBJECT_ROOT, vehicle, *tokens])


def classify(topic: str) -> Kind | None:
    """The class a topic is bridged as, or None when it stays on the vehicle."""
    if topic.startswith(topics.ALERT) or topic in _KEEP_TOPICS:
        return "keep"
    if topic.startswith(topics.REPLAY):
        return None
    leaf = topic.rpartition(topics.SEP)[2]
    if leaf in _SKIPPED_LEAVES or not topics.is_state(topic.encode()):
        return None
    if topic.startswith(topics.DRONE) and leaf == "telemetry":
        return "telemetry"
    return "state"


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    raise TypeError(f"{type(value).__name__} has no JSON form")


class Unencodable(ValueError):
    pass


def encode_body(body: dict[str, Any]) -> bytes:
    """The body as compact JSON; :class:`Unencodable` for what JSON cannot say (NaN)."""
    try:
        return json.dumps(body, separators=(",", ":"), allow_nan=False,
                          default=_json_default).encode()
    except (TypeError, ValueError) as e:
        raise Unencodable(str(e)) from None


@dataclass(slots=True)
class Outgoing:
    order: int
    kind: Kind
    subject: str
    payload: bytes
    headers: dict[str, str]


class Thinner:
    """Which bus messages go: state on change, telemetry and health at their rates."""

    def __init__(self, telemetry_hz: float, health_every_s: float,
                 clock: Callable[[], float] = time.monotonic,
                 telemetry_hz_by_link: dict[str, float] | None = None) -> None:
        self.default_telemetry_hz = telemetry_hz
        self.telemetry_hz_by_link = dict(telemetry_hz_by_link or {})
        self.telemetry_every_s = 1.0 / telemetry_hz
        self.active_link: str | None = None
        self.health_every_s = health_every_s
        self.clock = clock
        self._last_body: dict[str, dict[str, Any]] = {}
        self._last_sent: dict[str, float] = {}
        self._last_health_state: dict[str, Any] = {}

    @property
    def telemetry_hz(self) -> float:
        return 1.0 / self.telemetry_every_s

    def follow_link(self, topic: str, body: dict[str, Any]) -> None:
        """A link's status: while it carries the tunnel, its telemetry rate applies."""
        link_id = topic[len(topics.LINK):].partition(topics.SEP)[0]
        if body.get("active") is True:
            self.active_link = link_id
        elif self.active_link == link_id:
            self.active_link = None  # no WAN carries it now, as far as we know
        else:
            return
        hz = self.telemetry_hz_by_link.get(self.active_link or "", self.default_telemetry_hz)
        self.telemetry_every_s = 1.0 / hz

    def admit(self, topic: str, kind: Kind, body: dict[str, Any]) -> bool:
        if kind == "keep":
            return True
        now = self.clock()
        if kind == "telemetry":
            return self._due(topic, now, self.telemetry_every_s)
        if topic.startswith(topics.SVC) and topic.endswith("/health"):
            state = body.get("state")
            changed = self._last_health_state.get(topic) != state
            self._last_health_state[topic] = state
            return self._due(topic, now, self.health_every_s, force=changed)
        if self._last_body.get(topic) == body:
            return False
        self._last_body[topic] = body
        return True

    def _due(self, topic: str, now: float, every: float, force: bool = False) -> bool:
        last = self._last_sent.get(topic)
        if force or last is None or now - last >= every:
            self._last_sent[topic] = now
            return True
        return False


class Outbox:
    """What waits for the local JetStream: bounded, oldest telemetry shed first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._queues: dict[Kind, deque[Outgoing]] = {k: deque() for k in KINDS}
        self._order = itertools.count()
        self._nonempty = asyncio.Event()
        self.dropped: Counter[Kind] = Counter()
        self.peak = 0

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def next_order(self) -> int:
        return next(self._order)

    def put(self, item: Outgoing) -> None:
        self._queues[item.kind].append(item)
        size = len(self)
        if size > self.limit:
            for kind in SHED_ORDER:
                if self._queues[kind]:
                    self._queues[kind].popleft()
                    self.dropped[kind] += 1
                    size -= 1
                    break
        self.peak = max(self.peak, size)
        self._nonempty.set()

    def take(self) -> Outgoing | None:
        """The oldest item of any class (a subject is always one class: its order holds)."""
        heads = [q for q in self._queues.values() if q]
        if not heads:
            return None
        return min(heads, key=lambda q: q[0].order).popleft()

    async def get(self) -> Outgoing:
        while (item := self.take()) is None:
            self._nonempty.clear()
            await self._nonempty.wait()
        return item


@dataclass
class BridgeStats:
    received: int = 0
    thinned: int = 0  # left out by the thinner (on change, rates)
    skipped: int = 0  # topics that stay on the vehicle
    unencodable: int = 0
    published: int = 0  # acknowledged by the local JetStream
    retried: int = 0
    rejected: int = 0  # refused by JetStream for good (too big): dropped, counted


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


class Bridge:
    """Bus subscription in, the vehicle's JetStream out (see the module's description)."""

    def __init__(self, vehicle: str, config: SyncConfig, sub: Subscription,
                 clock: Callable[[], float] = time.monotonic, *,
                 nkey_seed: str | None = None) -> None:
        self.vehicle = vehicle
        self.config = config
        self.sub = sub
        self.nkey_seed = nkey_seed
        self.thinner = Thinner(config.telemetry_hz, config.health_every_s, clock,
                               config.telemetry_hz_by_link)
        self.outbox = Outbox(config.queue_limit)
        self.stats = BridgeStats()
        self.connected = False
        self.last_error = ""
        self.nc: NatsClient | None = None
        self._reconnected = asyncio.Event()
        self._logged: set[str] = set()

    # -- bus side ----------------------------------------------------------------------
    async def read_bus(self) -> None:
        while True:
            env = await self.sub.recv()
            self.offer(env)

    def offer(self, env: Envelope) -> None:
        """One bus message: into the outbox, or counted as left out."""
        self.stats.received += 1
        if env.topic.startswith(topics.LINK) and env.topic.endswith("/status"):
            self.thinner.follow_link(env.topic, env.body)
        kind = classify(env.topic)
        if kind is None:
            self.stats.skipped += 1
            return
        if not self.thinner.admit(env.topic, kind, env.body):
            self.stats.thinned += 1
            return
        try:
            payload = encode_body(env.body)
        except Unencodable as e:
            self.stats.unencodable += 1
            self._log_once("unencodable", "a %s body has no JSON form (%s); such messages "
                           "are only counted from now on", env.topic, e)
            return
        h = env.header
        headers = {
            "Nats-Msg-Id": f"{h.source}:{h.epoch}:{env.topic}:{h.seq}",
            "Edge-Topic": env.topic, "Edge-Type": h.type, "Edge-Source": h.source,
            "Edge-Seq": str(h.seq), "Edge-Epoch": str(h.epoch), "Edge-Ts": str(h.ts_ns),
        }
        self.outbox.put(Outgoing(self.outbox.next_order(), kind,
                                 subject_for(self.vehicle, env.topic), payload, headers))

    # -- NATS side ---------------------------------------------------------------------
    async def _on_error(self, e: Exception) -> None:
        self.last_error = f"local NATS {self.config.nats_url} unreachable: {one_line(e)}"

    async def _on_disconnected(self) -> None:
        self.connected = False
        if not self.last_error:
            self.last_error = f"local NATS {self.config.nats_url}: disconnected"

    async def _on_reconnected(self) -> None:
        self.connected, self.last_error = True, ""
        self._reconnected.set()

    async def connect(self) -> NatsClient:
        # With no limit on attempts, connect() itself keeps trying (and reports each
        # failure to _on_error) until the server answers.
        nc = await nats.connect(
            self.config.nats_url, name=f"edge-sync-{self.vehicle}", allow_reconnect=True,
            nkeys_seed_str=self.nkey_seed,
            max_reconnect_attempts=-1, reconnect_time_wait=1, connect_timeout=2,
            error_cb=self._on_error, disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected)
        self.nc = nc
        return nc

    async def _prepare(self, nc: NatsClient) -> JetStreamContext:
        await ensure_vehicle_stream(nc.jsm(), self.vehicle, self.config.max_age_hours * 3600,
                                    self.config.max_mb * 1024 * 1024)
        return nc.jetstream(timeout=PUBLISH_TIMEOUT_S)

    async def publish_loop(self) -> None:
        nc = await self.connect()
        self.connected, self.last_error = True, ""
        js: JetStreamContext | None = None
        item: Outgoing | None = None
        while True:
            if item is None:
                item = await self.outbox.get()
            try:
                if not nc.is_connected:
                    self.connected = False
                    await asyncio.sleep(RETRY_AFTER_S)
                    continue
                if js is None or self._reconnected.is_set():
                    # A restarted server may have lost its store: the stream again.
                    self._reconnected.clear()
                    js = await self._prepare(nc)
                await js.publish(item.subject, item.payload, headers=item.headers)
            except (nats.errors.MaxPayloadError, nats.js.errors.BadRequestError) as e:
                self.stats.rejected += 1
                self._log_once("rejected", "JetStream refused %s for good (%s); dropped, "
                               "and further ones only counted", item.subject, one_line(e))
                item = None
                continue
            except (nats.errors.Error, OSError, TimeoutError) as e:
                # Not acked: the same message again (its id makes a late ack harmless).
                self.stats.retried += 1
                self.connected = False
                self.last_error = f"local NATS {self.config.nats_url}: {one_line(e)}"
                js = None
                await asyncio.sleep(RETRY_AFTER_S)
                continue
            self.stats.published += 1
            self.connected = True
            self.last_error = ""
            item = None

    async def close(self) -> None:
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
            self.nc = None

    def _log_once(self, key: str, fmt: str, *args: object) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.warning(fmt, *args)
