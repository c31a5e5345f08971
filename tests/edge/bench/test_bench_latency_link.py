"""`edge bench latency --link`: the latency bench across the link emulator, end to end.

The vehicle's processes run in the emulator's vehicle namespace and the viewers in its
centre namespace; what is checked is that a run completes, reports what the issue
names and keeps its session for the whole run. Its figures are the bench's to report,
never asserted here.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys

import pytest

from drivers.sim.link.world import preflight
from tests.support import REPO, require, run_edge

KEYS = {"link", "p50_ms", "p95_ms", "first_frame_ms", "freeze_pct", "sessions_survived",
        "retransmits_per_loss", "queue_drops", "frames_sent", "frames_decoded",
        "frames_never_shown", "freezes"}


# Starting the camera, its service and the uplink, crossing the link, 5 s of run and
# stopping take about 10 s; the bound is for a busy shared machine, not a speed.
@pytest.mark.timeout(120)
async def test_latency_across_lte_reports_the_figures_and_the_session_lasts_the_run() -> None:
    why = preflight()
    require(why is None, f"the link emulator cannot run here: {why}")
    code, out, err = await run_edge("bench", "latency", "--link", "lte", "--seconds", "5",
                                    timeout=110)
    assert code == 0, f"exit {code}:\n{err[-3000:]}"
    result = json.loads(out.strip().splitlines()[-1])
    assert KEYS <= result.keys(), f"missing {sorted(KEYS - result.keys())}"
    assert result["link"] == "lte"
    assert result["sessions_survived"] is True, out
    # the figures come from frames the viewer decoded, not from an empty run
    assert result["frames_decoded"] > 0, out
    for key in ("p50_ms", "p95_ms", "first_frame_ms", "freeze_pct", "retransmits_per_loss"):
        assert isinstance(result[key], int | float), (key, result[key])


async def test_latency_across_a_link_without_the_rights_exits_2_with_one_line() -> None:
    # As root, the command runs without the capabilities that building namespaces and
    # TUNs needs (setpriv takes them out of its bounding set); anyone else lacks them.
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        require(setpriv is not None, "setpriv (util-linux) is not installed")
        prefix = [str(setpriv), "--bounding-set", "-net_admin,-sys_admin", "--"]
    proc = await asyncio.create_subprocess_exec(
        *prefix, sys.executable, "-m", "edge", "bench", "latency", "--link", "geo", cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = (b.decode() for b in await asyncio.wait_for(proc.communicate(), 30))
    assert proc.returncode == 2, (proc.returncode, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "root" in lines[0], err
    assert out == ""
