"""Argument types the benches share: a bad value is one line naming what was expected."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def runs(text: str) -> int:
    """A number of runs, 1..100."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be 1..100, got {value}")
    return value


def seconds(low: float, high: float) -> Callable[[str], float]:
    """Seconds within low..high, as an argparse type."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {low:g}..{high:g} s, got {text}")
        return value

    return parse
