"""`edge bench startup`: start-up time and memory of our processes against a bare one.

One small run must complete against the real simulators and report every figure it
names, for every process; the figures themselves (times, memory, ratios) are the
bench's to report and are never asserted here.
"""

from __future__ import annotations

import json

import pytest

from tests.support import run_edge

PROCESSES = {"help": {"exit_s"}, "bus": {"ready_s"}, "camera": {"ready_s", "live_s"},
             "drone": {"ready_s", "live_s"}}
FIGURES = {"cpu_s", "rss_mb", "rss_ratio"}


# Two simulators, then a bare interpreter, `edge --help` and three services started
# one after the other take about 10 s; the bound is for a busy shared machine and a
# first encode of the simulated camera's loop, not a speed.
@pytest.mark.timeout(240)
async def test_one_run_reports_every_figure_of_every_process() -> None:
    code, out, err = await run_edge("bench", "startup", "--runs", "1", "--settle", "0",
                                    timeout=230)
    assert code == 0, f"exit {code}:\n{err[-3000:]}"
    lines = out.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["bench"] == "startup" and result["runs"] == 1
    assert {"exit_s", "cpu_s", "rss_mb"} <= result["baseline"].keys()
    assert set(result["processes"]) == set(PROCESSES)
    for name, milestones in PROCESSES.items():
        figures = result["processes"][name]
        ratios = {m.replace("_s", "_ratio") for m in milestones}
        missing = (milestones | ratios | FIGURES) - figures.keys()
        assert not missing, f"{name}: missing {sorted(missing)}"
        assert all(isinstance(v, int | float) for v in figures.values()), figures
    assert set(result["goals_met"]) == {"help_exit_s", "bus_ready_s", "bus_rss_mb",
                                        "camera_rss_mb", "drone_rss_mb"}
    # The table before the JSON names every process measured.
    table = "\n".join(lines[:-1])
    for label in ("import zmq, msgpack", "edge --help", "edge run bus", "edge run camera@",
                  "edge run drone@"):
        assert label in table, table


@pytest.mark.parametrize("args, named", [(["--runs", "0"], "--runs"),
                                         (["--settle", "soon"], "--settle")])
async def test_bad_arguments_get_one_line_and_no_traceback(args: list[str], named: str) -> None:
    code, _, err = await run_edge("bench", "startup", *args)
    assert code == 2
    assert named in err and "Traceback" not in err, err


async def test_bench_help_lists_every_bench_though_they_load_only_for_bench() -> None:
    code, out, err = await run_edge("bench", "--help")
    assert code == 0, err
    assert "usage: edge bench" in out
    for name in ("bus", "ingest", "record", "startup"):
        assert f"    {name}" in out, out
    code, out, err = await run_edge("bench", "startup", "--help")
    assert code == 0 and "--runs" in out, err
    code, _, err = await run_edge("bench", "no-such-bench")
    assert code == 2 and "no-such-bench" in err and "Traceback" not in err, err
