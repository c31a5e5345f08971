"""`edge bench record`: the recorder service against a bare PyAV remux, end to end.

A short quiet run (one camera, a few seconds, a slow bus) must complete, report what
the issue names, and lose nothing: every unit published is in the MP4 files and every
bus message in the MCAP files, both counted by reading the files back. The CPU figures
and the ratio are the bench's to report, never asserted here.
"""

from __future__ import annotations

import json

import pytest

from tests.support import run_edge

KEYS = {"cameras", "ratio", "frames_lost", "bus_messages_lost", "baseline_cpu_s_per_stream_min",
        "recorder_cpu_s_per_stream_min", "recorder_write_mb_s", "frames_published",
        "frames_in_files", "bus_sent", "bus_recorded"}


# Baseline (3 s), broker, recorder and feeders starting, 3 s of video after settling, 2 s
# of bus and reading the files back take about 20 s; the bound is for a busy shared
# machine (and a first encode of the camera loop), not a speed.
@pytest.mark.timeout(180)
async def test_a_quiet_run_reports_the_figures_and_loses_nothing() -> None:
    code, out, err = await run_edge("bench", "record", "--cameras", "1", "--seconds", "3",
                                    "--bus-seconds", "2", "--bus-rate", "2000", timeout=170)
    assert code == 0, f"exit {code}:\n{err[-3000:]}"
    result = json.loads(out.strip().splitlines()[-1])
    assert KEYS <= result.keys(), f"missing {sorted(KEYS - result.keys())}"
    assert result["cameras"] == 1
    # Counted from the files: something was recorded, and all of it.
    assert result["frames_published"] > 0, out
    assert result["frames_lost"] == 0, out
    assert result["frames_in_files"] == result["frames_published"], out
    assert result["catalog_agrees"] is True, out
    assert result["bus_sent"] == 4000, out
    assert result["bus_messages_lost"] == 0, out
    assert isinstance(result["ratio"], int | float)


async def test_bad_arguments_get_one_line_and_no_traceback() -> None:
    code, out, err = await run_edge("bench", "record", "--cameras", "0")
    assert code != 0
    assert "--cameras" in err and "Traceback" not in err, err
