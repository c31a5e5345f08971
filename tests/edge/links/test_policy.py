"""The choice of the tunnel's WAN on an injected clock: order, staying, failover,
failback after its hysteresis, and a commander's force."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from edge.bus.messages import LinkStateName
from edge.links.policy import Choice, LinkPolicy, preference

States = Mapping[str, LinkStateName]
UP: States = {"lte": "up", "sat": "up"}


def started(states: States = UP, *, failback_after_s: float = 30.0,
            links: tuple[str, ...] = ("sat", "lte"), prefer: tuple[str, ...] = ("lte",)
            ) -> LinkPolicy:
    """A policy that has chosen once, at t = 0."""
    policy = LinkPolicy(links, prefer=prefer, failback_after_s=failback_after_s)
    policy.choose(states, 0.0)
    return policy


def test_preference_is_prefer_then_config_order() -> None:
    assert preference(["sat", "lte", "mesh"], ["lte"]) == ["lte", "sat", "mesh"]
    assert preference(["sat", "lte"]) == ["sat", "lte"]
    assert preference(["a", "b", "c"], ["c", "a", "c"]) == ["c", "a", "b"]
    with pytest.raises(ValueError, match="^preferred link 'x' is not one of the links"):
        preference(["a"], ["x"])


def test_the_first_choice_is_the_most_preferred_link_up() -> None:
    policy = LinkPolicy(["sat", "lte"], prefer=["lte"])
    assert policy.choose({}, 0.0) == Choice(None, "no link is up")
    assert policy.choose({"lte": "down", "sat": "unknown"}, 0.5).link is None
    assert policy.choose(UP, 1.0) == Choice("lte", "lte up")
    assert policy.active == "lte"
    # degraded counts only when nothing is up
    fresh = LinkPolicy(["sat", "lte"], prefer=["lte"])
    assert fresh.choose({"lte": "degraded", "sat": "up"}, 0.0).link == "sat"
    fresh = LinkPolicy(["sat", "lte"], prefer=["lte"])
    assert fresh.choose({"lte": "degraded", "sat": "down"}, 0.0) == Choice(
        "lte", "lte degraded")


def test_it_stays_on_the_active_link_while_it_is_up_or_degraded() -> None:
    policy = started({"lte": "down", "sat": "up"})
    assert policy.active == "sat"
    # lte comes back but has failed before: sat keeps the tunnel (for now)
    assert policy.choose(UP, 1.0) == Choice("sat", "sat up")
    assert policy.choose({"lte": "up", "sat": "degraded"}, 2.0) == Choice("sat",
                                                                          "sat degraded")


def test_a_link_that_goes_down_is_left_at_once_for_the_best_up_link() -> None:
    policy = started(links=("lte", "mesh", "sat"), prefer=())
    assert policy.active == "lte"
    choice = policy.choose({"lte": "down", "mesh": "degraded", "sat": "up"}, 5.0)
    assert choice == Choice("sat", "lte down")
    # nothing up: the best degraded one
    choice = policy.choose({"lte": "down", "mesh": "degraded", "sat": "down"}, 6.0)
    assert choice == Choice("mesh", "sat down")
    # nothing usable at all: stay, and say so
    choice = policy.choose({"lte": "down", "mesh": "down", "sat": "unknown"}, 7.0)
    assert choice == Choice("mesh", "mesh down, no other link is up")


def test_failback_waits_for_the_preferred_link_to_be_up_long_enough() -> None:
    policy = started()
    assert policy.choose({"lte": "down", "sat": "up"}, 10.0).link == "sat"
    assert policy.choose(UP, 11.0).link == "sat"  # up since 11
    assert policy.next_check(11.0) == 41.0
    assert policy.choose(UP, 40.9).link == "sat"
    assert policy.choose(UP, 41.0) == Choice("lte", "failback: lte up for 30 s")
    assert policy.next_check(41.0) is None


def test_a_flapping_link_starts_its_wait_again_at_each_drop() -> None:
    policy = started(failback_after_s=2.0)
    policy.choose({"lte": "down", "sat": "up"}, 0.0)
    for t in (1.0, 2.0, 3.0, 4.0):  # up for 0.9 s, down for 0.1 s, again and again
        assert policy.choose(UP, t).link == "sat"
        assert policy.choose(UP, t + 0.9).link == "sat"
        assert policy.choose({"lte": "down", "sat": "up"}, t + 0.95).link == "sat"
    assert policy.choose(UP, 5.0).link == "sat"
    assert policy.choose(UP, 7.0) == Choice("lte", "failback: lte up for 2 s")


def test_failback_counts_up_only_not_degraded() -> None:
    policy = started(failback_after_s=2.0)
    policy.choose({"lte": "down", "sat": "up"}, 0.0)
    policy.choose({"lte": "degraded", "sat": "up"}, 1.0)
    assert policy.choose({"lte": "degraded", "sat": "up"}, 10.0).link == "sat"
    assert policy.choose(UP, 11.0).link == "sat"
    assert policy.choose(UP, 13.5) == Choice("lte", "failback: lte up for 2.5 s")


def test_a_preferred_link_slower_to_answer_at_start_is_taken_at_once() -> None:
    # the satellite answered first; the preferred link never failed, it was only later
    policy = started({"lte": "unknown", "sat": "up"})
    assert policy.active == "sat"
    assert policy.choose(UP, 0.8) == Choice("lte", "lte up (preferred; it never failed)")
    # a preferred link that was down at start waits like any other
    policy = started({"lte": "down", "sat": "up"})
    assert policy.choose(UP, 5.0).link == "sat"


def test_a_force_holds_even_when_the_link_goes_down_until_released() -> None:
    policy = started()
    policy.force("sat", "dashboard[123]")
    assert policy.choose(UP, 1.0) == Choice("sat", "forced by dashboard[123]", forced=True)
    choice = policy.choose({"lte": "up", "sat": "down"}, 2.0)
    assert choice == Choice("sat", "forced by dashboard[123]; sat is down", forced=True,
                            forced_down=True)
    assert policy.next_check(2.0) is None  # no failback while forced
    assert policy.release() == "sat"
    assert policy.release() is None
    # released onto a dead link: leave it at once
    assert policy.choose({"lte": "up", "sat": "down"}, 3.0) == Choice("lte", "sat down")


def test_after_a_release_the_usual_rules_apply_to_the_forced_link() -> None:
    policy = started(failback_after_s=30.0)
    policy.force("sat", "console")
    policy.choose(UP, 1.0)
    policy.release()
    # lte never failed: it is the preferred link and takes the tunnel back at once
    assert policy.choose(UP, 2.0) == Choice("lte", "lte up (preferred; it never failed)")
    # one that did fail waits for its failback time even after a release
    policy = started(failback_after_s=30.0)
    policy.choose({"lte": "down", "sat": "up"}, 1.0)
    policy.force("sat", "console")
    policy.choose(UP, 2.0)
    policy.release()
    assert policy.choose(UP, 3.0).link == "sat"
    assert policy.choose(UP, 32.0) == Choice("lte", "failback: lte up for 30 s")


def test_bad_input_is_one_line() -> None:
    policy = LinkPolicy(["lte", "sat"])
    with pytest.raises(ValueError, match=r"^no link 'x' can carry the tunnel \(links: "
                                         r"lte, sat\)$"):
        policy.force("x", "me")
    with pytest.raises(ValueError, match="^link ids must differ"):
        LinkPolicy(["a", "a"])
    with pytest.raises(ValueError, match="^failback_after_s = -1"):
        LinkPolicy(["a"], failback_after_s=-1)
