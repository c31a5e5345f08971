"""Telling a new message from a replay, and counting what was missed.

A subscriber sees a message again when the broker's last-value cache replays
it to a newer subscription of the same prefix, or when a publisher re-asserts
its state after a broker restart. Such a message is the very one already seen:
same publisher epoch, same sequence number, same wall-clock stamp.

Per (source, topic) the tracker keeps the last (epoch, seq, ts) it took:

- another epoch: the publisher restarted (or another instance took the name):
  new, never a gap, whatever its sequence number;
- same epoch, seq above the last: new; a jump is a gap;
- same epoch, seq not above the last and a stamp not newer: a replay;
- same epoch, seq not above the last but a newer stamp: not a replay. Only a
  forged or corrupted sequence can do this; taking it as new and starting
  over from it means no sequence number, however large, can silence a
  genuine source for longer than its next message.

The table is bounded: a flood of made-up sources evicts the oldest entries,
which at worst makes one later replay look new.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.bus.envelope import Header

MAX_TRACKED = 50_000


@dataclass(slots=True)
class Verdict:
    replayed: bool = False
    gap: int = 0  # messages of this (source, topic) missed just before this one
    restarted: bool = False  # first message of a new publisher epoch


_REPLAY = Verdict(replayed=True)
_NEW = Verdict()
_RESTART = Verdict(restarted=True)


class SequenceTracker:
    def __init__(self, max_tracked: int = MAX_TRACKED) -> None:
        self.max_tracked = max_tracked
        self._last: dict[tuple[str, str], tuple[int, int, int]] = {}

    def classify(self, topic: str, header: Header) -> Verdict:
        key = (header.source, topic)
        last = self._last.get(key)
        now = (header.epoch, header.seq, header.ts_ns)
        if last is None:
            self._remember(key, now)
            return _NEW
        epoch, seq, ts = last
        if header.epoch != epoch:
            self._last[key] = now
            return _RESTART
        if header.seq > seq:
            self._last[key] = now
            return _NEW if header.seq == seq + 1 else Verdict(gap=header.seq - seq - 1)
        if header.ts_ns <= ts:
            return _REPLAY
        self._last[key] = now
        return _NEW

    def _remember(self, key: tuple[str, str], value: tuple[int, int, int]) -> None:
        if len(self._last) >= self.max_tracked:
            # dicts keep insertion order: drop the oldest tenth in one go.
            for old in list(self._last)[: self.max_tracked // 10 or 1]:
                del self._last[old]
        self._last[key] = value
