"""`edge bench ingest`: the camera service's path against a bare PyAV demux, end to end.

A short run (two simulated cameras, a few seconds, with the ingest-alone breakdown and
the floor of a ZeroMQ media plane) must complete, report what the issue names and lose
nothing; the CPU split by thread must cover each measured process. The CPU figures, the
split's values and the ratio are the bench's to report, never asserted here.
"""

from __future__ import annotations

import json

import pytest

from tests.support import run_edge

KEYS = {"cameras", "ratio", "frames_lost", "baseline_cpu_s_per_stream_min",
        "edge_cpu_s_per_stream_min", "ingest_only_cpu_s_per_stream_min", "frames_expected",
        "frames_received", "baseline_us_per_frame", "edge_us_per_frame",
        "ingest_only_us_per_frame", "floor_ratio", "floor_us_per_frame", "sustained", "ok"}
THREADS = {"readers", "zmq", "rest"}


# The simulator's start (a first encode of its loop on a fresh machine), then four
# processes each settling 3 s and measuring 3 s, take about 40 s; the bound is for a
# busy shared machine, not a speed.
@pytest.mark.timeout(240)
async def test_a_short_run_reports_the_figures_and_the_thread_split() -> None:
    code, out, err = await run_edge("bench", "ingest", "--cameras", "2", "--seconds", "3",
                                    "--breakdown", timeout=230)
    assert code == 0, f"exit {code}:\n{err[-3000:]}"
    lines = out.strip().splitlines()
    result = json.loads(lines[-1])
    assert KEYS <= result.keys(), f"missing {sorted(KEYS - result.keys())}"
    assert result["cameras"] == 2
    assert result["frames_received"] > 0, out
    assert result["frames_lost"] == 0 and result["baseline_frames_lost"] == 0, out
    for process in ("baseline", "edge", "ingest_only", "floor"):
        split = result[f"{process}_us_per_frame"]
        assert set(split) == THREADS, split
        assert all(isinstance(v, int | float) and v >= 0 for v in split.values()), split
    table = "\n".join(lines[:-1])
    for label in ("readers (demux, units, publish)", "ZeroMQ's threads", "ingest alone",
                  "floor: bare demux + bare PUB"):
        assert label in table, table
    # The floor's consumer got what the floor sent: its PUB sockets were really read.
    floor_row = next(line for line in table.splitlines() if "floor:" in line)
    assert int(floor_row.rpartition("consumer got ")[2]) > 0, floor_row


async def test_bad_arguments_get_one_line_and_no_traceback() -> None:
    code, _, err = await run_edge("bench", "ingest", "--cameras", "0")
    assert code != 0
    assert "--cameras" in err and "Traceback" not in err, err
