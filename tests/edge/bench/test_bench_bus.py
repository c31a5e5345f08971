"""`edge bench bus`: our broker and client against bare pyzmq, end to end.

A short run must complete, report what the issue names and lose nothing, on both
sides. The throughput, the latencies and the ratio are the bench's to report, never
asserted here.
"""

from __future__ import annotations

import json

import pytest

from tests.support import run_edge

KEYS = {"bench", "messages", "baseline_msgs_per_s", "bus_msgs_per_s", "ratio", "rate",
        "baseline_p99_ms", "p50_ms", "p99_ms", "lost", "median_of"}


def row(table: str, name: str) -> list[float]:
    """The baseline and bus figures of one row of the printed table."""
    line = next(line for line in table.splitlines() if line.startswith(name))
    return [float(x.replace(",", "")) for x in line[len(name):].split()]


# Two bursts and two paced runs, each starting its processes (and the bus a broker):
# about 10 s; the bound is for a busy shared machine, not a speed.
@pytest.mark.timeout(180)
async def test_a_short_run_reports_the_figures_and_loses_nothing() -> None:
    code, out, err = await run_edge("bench", "bus", "--messages", "3000", "--rate", "1000",
                                    "--seconds", "1", timeout=170)
    assert code == 0, f"exit {code}:\n{err[-3000:]}"
    result = json.loads(out.strip().splitlines()[-1])
    assert KEYS <= result.keys(), f"missing {sorted(KEYS - result.keys())}"
    assert result["messages"] == 3000 and result["median_of"] == 1
    assert result["lost"] == 0, out
    # Counted at each side's subscriber: the burst and the paced run, whole.
    assert row(out, "burst received") == [3000.0, 3000.0], out
    assert row(out, "paced received") == [1000.0, 1000.0], out


@pytest.mark.parametrize(("args", "named"), [
    (("--messages", "0"), "--messages"),
    (("--repeat", "0"), "--repeat"),
    (("--rate", "-5"), "--rate"),
    (("--seconds", "nan"), "--seconds"),
    (("--rate", "1", "--seconds", "0.5"), "sends no message"),
])
async def test_bad_arguments_get_one_line_and_no_traceback(
        args: tuple[str, ...], named: str) -> None:
    code, out, err = await run_edge("bench", "bus", *args)
    assert code != 0
    assert named in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
