"""Which WAN carries the tunnel to the centre: the links service's choice, as a pure rule.

Deterministic: every call takes ``now`` (seconds on any monotonic clock) and the links'
states, so the rules are tested without sockets or sleeps. The rules, in order:

1. **A commander's force holds** until released, whatever the link's state: the
   commander may know what the probes do not (the 4G mast is about to be switched
   off). If the forced link is down the choice says so (``forced_down``), and the
   service puts it in the link's status and an alert; it does not move the tunnel.
2. **Stay** on the active link while it is ``up`` or ``degraded``: every move costs the
   centre a moment of video, so a worse link that still works is kept.
3. **Fail over at once** when the active link is ``down`` (or not measured): to the
   most preferred link that is up, else the most preferred that is degraded. With
   none, the tunnel stays where it is (nothing better to go to).
4. **Fail back** to a more preferred link only once it has been ``up`` without a break
   for ``failback_after_s``: a flapping 4G link must not drag the centre's video with
   it. A link that has never been down since the service started is taken at once
   instead: it was slower to answer its first probes, not unreliable (at start the
   satellite may answer before the 4G link, and waiting 30 s for the preferred link
   would be a failback nobody needs).

Preference: ``link_policy.prefer``, then the other links in config order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edge.bus.messages import LinkStateName

_USABLE: tuple[LinkStateName, ...] = ("up", "degraded")


@dataclass(frozen=True, slots=True)
class Choice:
    """The WAN to carry the tunnel (None: none is usable yet) and why, in one line."""

    link: str | None
    reason: str
    forced: bool = False
    #: the forced link is not up or degraded (the commander should hear of it)
    forced_down: bool = False


def preference(links: Sequence[str], prefer: Sequence[str] = ()) -> list[str]:
    """`prefer`'s links first (in its order), then the others in `links`' order."""
    known = set(links)
    unknown = [p for p in prefer if p not in known]
    if unknown:
        raise ValueError(f"preferred link {unknown[0]!r} is not one of the links "
                         f"({', '.join(links) or 'none'})")
    first = list(dict.fromkeys(prefer))
    return first + [link for link in links if link not in first]


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s".replace(".0 s", " s")


class LinkPolicy:
    """Chooses among `links` (ids of the links that can carry the tunnel)."""

    def __init__(self, links: Sequence[str], *, prefer: Sequence[str] = (),
                 failback_after_s: float = 30.0) -> None:
        if not failback_after_s >= 0:
            raise ValueError(f"failback_after_s = {failback_after_s}: expected 0 or more")
        if len(set(links)) != len(links):
            raise ValueError(f"link ids must differ, got {', '.join(links)}")
        self.order = preference(links, prefer)
        self.failback_after_s = failback_after_s
        self.active: str | None = None
        self.forced: str | None = None
        self.forced_by = ""
        self._up_since: dict[str, float] = {}  # links up now: since when, without a break
        self._was_down: set[str] = set()  # links seen down (or failed) since the start

    def force(self, link: str, by: str) -> None:
        """Hold the tunnel on `link` until :meth:`release`. `by` names who asked."""
        if link not in self.order:
            raise ValueError(f"no link {link!r} can carry the tunnel "
                             f"(links: {', '.join(self.order) or 'none'})")
        self.forced, self.forced_by = link, by

    def release(self) -> str | None:
        """Drop the force; the link that was forced, if any."""
        was, self.forced, self.forced_by = self.forced, None, ""
        return was

    def choose(self, states: Mapping[str, LinkStateName], now: float) -> Choice:
        """The link for the tunnel now. `states`: each link's state (a missing one is
        ``unknown``). The choice becomes :attr:`active`."""
        self._note(states, now)
        choice = self._decide(states, now)
        self.active = choice.link
        return choice

    def _note(self, states: Mapping[str, LinkStateName], now: float) -> None:
        for link in self.order:
            state = states.get(link, "unknown")
            if state == "up":
                self._up_since.setdefault(link, now)
            else:
                self._up_since.pop(link, None)
            if state == "down":
                self._was_down.add(link)

    def _decide(self, states: Mapping[str, LinkStateName], now: float) -> Choice:
        def state(link: str) -> LinkStateName:
            return states.get(link, "unknown")

        if self.forced is not None:
            f = self.forced
            reason = f"forced by {self.forced_by}" if self.forced_by else "forced"
            if state(f) not in _USABLE:
                return Choice(f, f"{reason}; {f} is {state(f)}", forced=True, forced_down=True)
            return Choice(f, reason, forced=True)

        active = self.active
        if active is not None and state(active) in _USABLE:
            back = self._failback(active, now)
            if back is not None:
                return back
            return Choice(active, f"{active} {state(active)}")

        best = self._best(states)
        if best is None:
            if active is None:
                return Choice(None, "no link is up")
            return Choice(active, f"{active} {state(active)}, no other link is up")
        if active is None:
            return Choice(best, f"{best} {state(best)}")
        return Choice(best, f"{active} {state(active)}")

    def _failback(self, active: str, now: float) -> Choice | None:
        """A more preferred link that has earned the tunnel back, or None."""
        for link in self.order[:self.order.index(active)]:
            since = self._up_since.get(link)
            if since is None:
                continue
            if link not in self._was_down:
                return Choice(link, f"{link} up (preferred; it never failed)")
            if now - since >= self.failback_after_s:
                return Choice(link, f"failback: {link} up for {_seconds(now - since)}")
        return None

    def _best(self, states: Mapping[str, LinkStateName]) -> str | None:
        for wanted in _USABLE:
            for link in self.order:
                if states.get(link, "unknown") == wanted:
                    return link
        return None

    def next_check(self, now: float) -> float | None:
        """When a failback falls due if nothing changes (call :meth:`choose` then), or
        None when none is pending."""
        if self.forced is not None or self.active is None or self.active not in self.order:
            return None
        due = [since + self.failback_after_s
               for link in self.order[:self.order.index(self.active)]
               if (since := self._up_since.get(link)) is not None]
        return min(due) if due else None
