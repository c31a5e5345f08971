"""`edge bench replay`, short: it records, replays through its WHEP uplink, and reports.

No figure is asserted (seek times, CPU ratio): those are the benchmark's to measure.
What is checked is what must hold whatever the machine: the JSON keys, every seek
answered by a frame, and no frame lost at 1x.
"""

from __future__ import annotations

import json

import pytest

from tests.support import run_edge

pytestmark = pytest.mark.timeout(300)


async def test_short_run_reports_and_loses_nothing() -> None:
    # On a synthetic session, written through the recorder's own writers in a second:
    # recording one for real is what `edge bench record` and the recorder's tests do.
    code, out, err = await run_edge("bench", "replay", "--synthetic", "--cameras", "1",
                                    "--minutes", "0.5", "--play-seconds", "5", "--seeks", "3",
                                    timeout=280)
    assert code == 0, err[-2000:]
    result = json.loads(out.strip().splitlines()[-1])
    for key in ("seek_p50_ms", "seek_p95_ms", "ratio", "frames_lost"):
        assert key in result, result
    assert result["frames_lost"] == 0, result
    assert result["frames_in_files"] > 0 and result["reached_end"], result
    assert result["seeks"] == 3 and result["seeks_without_frame"] == 0, result
    assert "seek -> first frame p95" in out  # the table before the JSON line


async def test_bad_input_is_one_line() -> None:
    code, _, err = await run_edge("bench", "replay", "--session", "3")
    assert code != 0 and "--session and --config go together" in err, err
    assert "Traceback" not in err
