"""What arrives in a centre stream, as a centre client sees it: an ordered push consumer
from the stream's first message, every message's bridge headers and when it came.

From it the sync benches count delivered (distinct ``Nats-Msg-Id``), duplicates (a
second copy of an id) and order (``Edge-Seq`` per source, epoch and topic), and take the
end-to-end delay: arrival (wall clock) minus ``Edge-Ts``, the producer's stamp on the
same host's clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext


@dataclass(slots=True)
class Arrival:
    msg_id: str
    at: float  # time.monotonic()
    delay_ms: float | None  # arrival minus Edge-Ts; None without the header


@dataclass
class StreamTap:
    stream: str
    arrivals: list[Arrival] = field(default_factory=list)
    first_at: dict[str, float] = field(default_factory=dict)  # msg id -> monotonic
    duplicates: int = 0
    out_of_order: int = 0
    unlabelled: int = 0  # without a Nats-Msg-Id: not the bridge's
    _last_seq: dict[tuple[str, str, str], int] = field(default_factory=dict)
    _sub: Subscription | None = None

    async def start(self, js: JetStreamContext, subject: str) -> None:
        self._sub = await js.subscribe(subject, stream=self.stream, ordered_consumer=True,
                                       cb=self._on_msg)

    async def stop(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            await sub.unsubscribe()

    @property
    def delivered(self) -> int:
        return len(self.first_at)

    def has(self, msg_id: str) -> bool:
        return msg_id in self.first_at

    def delays_ms(self, since: float, until: float) -> list[float]:
        return [a.delay_ms for a in self.arrivals
                if a.delay_ms is not None and since <= a.at < until]

    def arrived_between(self, since: float, until: float) -> int:
        return sum(1 for a in self.arrivals if since <= a.at < until)

    async def _on_msg(self, msg: Msg) -> None:
        at, now_ns = time.monotonic(), time.time_ns()
        h = msg.headers or {}
        msg_id = h.get("Nats-Msg-Id")
        if msg_id is None:
            self.unlabelled += 1
            return
        try:
            delay: float | None = (now_ns - int(h["Edge-Ts"])) / 1e6
        except (KeyError, ValueError):
            delay = None
        self.arrivals.append(Arrival(msg_id, at, delay))
        if msg_id in self.first_at:
            self.duplicates += 1
            return
        self.first_at[msg_id] = at
        key = (h.get("Edge-Source", ""), h.get("Edge-Epoch", ""), h.get("Edge-Topic", ""))
        try:
            seq = int(h.get("Edge-Seq", ""))
        except ValueError:
            return
        if seq <= self._last_seq.get(key, 0):
            self.out_of_order += 1
        self._last_seq[key] = seq


def percentile(values: list[float], p: float) -> float | None:
    xs = sorted(values)
    return round(xs[min(len(xs) - 1, int(p / 100 * len(xs)))], 1) if xs else None
