"""Groups of pictures: what a consumer needs to start decoding, and how it recovers.

A decoder can only start at a keyframe, and after losing a unit it can only
start again at one. Two rules follow, used wherever units are passed on (the
camera's publisher, the media subscriber, the uplink's fanout and each
viewer's sink, the transcoder):

- :class:`GopCache` keeps the current group of pictures (everything since
  the last keyframe), so a consumer that joins late starts at once;
- :class:`KeyframeGate` drops to the next keyframe: once a unit is lost
  (a gap, a full queue, a consumer fallen behind) nothing passes until a
  keyframe does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

# A camera with a silly GOP (or none) must not grow memory without bound.
MAX_GOP_UNITS = 600

T = TypeVar("T")


class GopCache(Generic[T]):
    """The current GOP, as whatever the holder sends on (units, or their encoded frames).

    A keyframe starts it anew; units before the first keyframe are not kept
    (they cannot be decoded); past `limit` units it stops growing, keeping the
    keyframe and what follows it, until the next keyframe.
    """

    def __init__(self, limit: int = MAX_GOP_UNITS) -> None:
        self.limit = limit
        self._units: list[T] = []

    def add(self, unit: T, keyframe: bool) -> None:
        if keyframe:
            self._units = [unit]
        elif self._units and len(self._units) < self.limit:
            self._units.append(unit)

    def reset(self) -> None:
        """Forget it: what follows belongs to another stream (a reconnect, a restart)."""
        self._units = []

    def __iter__(self) -> Iterator[T]:
        # A copy: a consumer replaying it may cause units to be added meanwhile.
        return iter(list(self._units))

    def __len__(self) -> int:
        return len(self._units)


class KeyframeGate:
    """Lets units through until one is lost, then nothing but the next keyframe.

    `waiting` is where it starts: a consumer that has nothing yet waits for a
    keyframe; one handed a stream that already starts at one does not.
    """

    def __init__(self, waiting: bool = True) -> None:
        self.waiting = waiting

    def lose(self) -> None:
        """A unit was lost (or the stream started over): wait for the next keyframe."""
        self.waiting = True

    def passes(self, keyframe: bool) -> bool:
        """Whether the next unit may go on; a keyframe opens the gate."""
        if self.waiting:
            if not keyframe:
                return False
            self.waiting = False
        return True
