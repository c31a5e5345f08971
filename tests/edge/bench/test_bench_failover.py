"""`edge bench failover`: one cut, end to end, and the one line without the rights.

The world is the bench's own (root; :mod:`edge.bench.failover_world`, which
tests/edge/links/test_failover_whep.py shares); what is checked is that a run completes,
reports what the issue names and keeps its WHEP session. Its figures are the bench's to
report, never asserted here.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys

import pytest

from edge.bench.failover_world import cannot_build
from tests.support import REPO, require, run_edge

KEYS = {"failover_ms_median", "failover_ms_worst", "video_freeze_ms_worst", "session_survived",
        "udp_lost", "repeats", "udp_sent", "detected_ms_each", "steady_gap_ms_worst",
        "uplink_candidates", "ice_pair", "centre_saw", "each"}


# Starting five processes and a viewer, 2 s of session, one cut of 2 s, the failback and
# 2 s after it, and stopping: about 20 s; the bound is for a busy shared machine.
@pytest.mark.timeout(150)
async def test_one_cut_reports_the_figures_and_the_session_survives() -> None:
    why = cannot_build()
    require(why is None, f"the failover world cannot run here: {why}")
    code, out, err = await run_edge("bench", "failover", "--repeats", "1", "--cut-after", "2",
                                    "--outage", "2", timeout=140)
    assert code == 0, f"exit {code}:\n{err[-3000:]}"
    result = json.loads(out.strip().splitlines()[-1])
    assert KEYS <= result.keys(), f"missing {sorted(KEYS - result.keys())}"
    assert result["repeats"] == 1
    assert result["session_survived"] is True, out
    assert result["cuts"] == ["lte -> sat"]
    # the figures come from a real failover: packets over sat, frames after it
    (each,) = result["each"]
    assert each["frames_after_failover"] > 0 and each["frames_after_failback"] > 0, each
    assert result["centre_saw"][-2:] == ["sat", "lte"], result["centre_saw"]
    assert result["udp_sent"] > 0
    for key in ("failover_ms_median", "failover_ms_worst", "video_freeze_ms_worst"):
        assert isinstance(result[key], int | float), (key, result[key])


async def test_without_the_rights_it_exits_2_with_one_line() -> None:
    # As root, the command runs without the capabilities that building namespaces and
    # TUNs needs (setpriv takes them out of its bounding set); anyone else lacks them.
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        require(setpriv is not None, "setpriv (util-linux) is not installed")
        prefix = [str(setpriv), "--bounding-set", "-net_admin,-sys_admin", "--"]
    proc = await asyncio.create_subprocess_exec(
        *prefix, sys.executable, "-m", "edge", "bench", "failover", cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = (b.decode() for b in await asyncio.wait_for(proc.communicate(), 30))
    assert proc.returncode == 2, (proc.returncode, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "root" in lines[0], err
    assert lines[0].startswith("edge: bench failover: "), err
    assert out == ""


async def test_bad_arguments_are_one_line() -> None:
    for args, says in ((("--repeats", "0"), "--repeats must be at least 1, got 0"),
                       (("--outage", "0.5"), "--outage must be at least 1 s")):
        code, out, err = await run_edge("bench", "failover", *args)
        assert code != 0 and out == "", (args, code, out, err)
        assert len(err.strip().splitlines()) == 1 and says in err, (args, err)
        assert "Traceback" not in err
