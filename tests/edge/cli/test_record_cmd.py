"""`edge record` as an operator runs it (a subprocess) against a real broker, the real
recorder service and a real simulated camera: a named session started and stopped over the
bus, a mark made during it, the camera going down and back (a gap in `info`), the catalog
rebuilt from the files (`reindex`), and bad input answered with one line, never a
traceback."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from drivers.sim.camera import SimCamera
from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import CameraStatus, EventMark, RecorderStatus
from edge.recorder.catalog import Catalog
from edge.recorder.layout import CATALOG_FILE
from edge.services.camera import CameraService
from edge.services.recorder import RecorderService
from tests import support
from tests.support import Inbox, eventually, run_edge
from tests.support.recorder import (
    catalog_marks,
    closed_segments,
    last_json,
    recorder_answers,
    recorder_config,
)

# Functional bounds only (a loaded 2-core machine is slow, not wrong): a camera is live
# within seconds, a 2 s segment closes at the first keyframe after 2 s of video, and a
# camera that comes back is reconnected within a few backoff steps (capped at 2 s).
LIVE_S = 30.0
SEGMENT_S = 30.0


@pytest.fixture
async def camera() -> AsyncIterator[SimCamera]:
    cam = SimCamera("gate", main=(640, 360), sub=None, loop_seconds=2.0)
    await cam.start()
    yield cam
    await cam.close()


def one_line_error(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.timeout(300)
async def test_session_marks_and_a_camera_gap(
        bus: BusClient, endpoints: Endpoints, runtime_dir: Path, tmp_path: Path,
        camera: SimCamera) -> None:
    config, config_path = recorder_config(tmp_path, {"gate": camera}, segment_seconds=2.0)
    root = tmp_path / "recordings"
    catalog = root / CATALOG_FILE
    cfg = ("--config", str(config_path))
    on_bus = (*cfg, "--bus", str(runtime_dir))
    box = Inbox(bus.subscribe(topics.cam_status("gate"), topics.RECORDER_STATUS))
    async with support.hosted(CameraService, "camera@gate", config, config_path, endpoints), \
            support.hosted(RecorderService, "recorder", config, config_path, endpoints):
        await box.expect(CameraStatus, lambda m: m.state == "live", within=LIVE_S)
        await recorder_answers(bus)

        code, out, err = await run_edge("record", "start", "--name", "Steel plant drill",
                                        *on_bus)
        assert code == 0, err
        started = last_json(out)
        sid = started["session_id"]
        assert started["status"] == "accepted" and started["name"] == "Steel plant drill"
        assert len(out.strip().splitlines()) == 2 and f"session {sid}" in out

        code, _, err = await run_edge("record", "start", "--name", "Second", *on_bus)
        assert code == 2
        assert one_line_error(err) == ("edge: the recorder refused: session 'Steel plant "
                                       "drill' is still open; stop it first")
        code, _, err = await run_edge("record", "reindex", *cfg)
        assert code == 1 and "stop it first" in one_line_error(err)

        # Marks are events, never replayed: publish until the recorder has one.
        def marked() -> bool:
            bus.publish(topics.EVENT_MARK, EventMark(note="smoke at the gate",
                                                     author="commander"))
            return any(m.note == "smoke at the gate" for m in catalog_marks(catalog))

        await eventually(marked, within=15, every=0.5, what="the mark in the catalog")

        # Recorded in the session before the camera goes down...
        await eventually(lambda: [s for s in closed_segments(catalog, "gate")
                                  if s.end_ns > started["start_ns"]],
                         within=SEGMENT_S, what="a segment in the session")
        # (An earlier "waiting" or "down" still queued must not pass for this one.)
        mark = await box.mark_now()
        stop_ns = time.time_ns()
        await camera.stop()
        await box.expect(CameraStatus, lambda m: m.state == "down", within=LIVE_S, since=mark)
        # A hiccup shorter than the recorder's MAX_GAP_S is written through, not a gap: keep
        # the camera down until the recorder has closed its segment.
        await box.expect(RecorderStatus, lambda m: any(
            s.camera_id == "gate" and s.state == "waiting" for s in m.streams),
            within=SEGMENT_S, since=mark)
        mark = await box.mark_now()
        restart_ns = time.time_ns()
        await camera.start()
        await box.expect(CameraStatus, lambda m: m.state == "live", within=LIVE_S, since=mark)
        # ...and after it is back.
        await eventually(lambda: [s for s in closed_segments(catalog, "gate")
                                  if s.start_ns > restart_ns],
                         within=SEGMENT_S, what="a segment after the camera came back")

        code, out, err = await run_edge("record", "stop", *on_bus)
        assert code == 0, err
        stopped = last_json(out)
        assert stopped["session_id"] == sid and stopped["end_ns"] > restart_ns
        # The bus log of the gap is indexed once its file rotates (every 2 s here).
        await eventually(lambda: max((b.last_ns or 0 for b in Catalog(catalog).bus_logs()),
                                     default=0) > stopped["end_ns"],
                         within=SEGMENT_S, what="the bus log past the session indexed")

        code, out, err = await run_edge("record", "ls", *cfg)
        assert code == 0, err
        listed = last_json(out)
        (session,) = listed["sessions"]
        assert (session["session_id"], session["name"], session["open"]) == (
            sid, "Steel plant drill", False)
        assert session["marks"] >= 1 and session["bytes"] > 0
        assert session["end_ns"] == stopped["end_ns"]
        assert listed["recording"]["cameras"] == ["gate"]
        assert listed["recording"]["segments"] > 0 and listed["recording"]["marks"] >= 1
        assert "Steel plant drill" in out and "(always-on recording)" in out

        code, out, err = await run_edge("record", "info", "Steel plant drill", *cfg)
        assert code == 0, err
        info = last_json(out)
        assert info["session"]["session_id"] == sid
        (stream,) = info["streams"]
        assert (stream["camera"], stream["stream"]) == ("gate", "main")
        assert len(stream["intervals"]) >= 2, stream
        between = [g for g in stream["gaps"]
                   if stream["intervals"][0]["end_ns"] <= g["start_ns"]
                   and g["end_ns"] <= stream["intervals"][-1]["start_ns"]]
        assert between, f"the camera's outage is a gap between intervals: {stream}"
        # The gap starts where the last frame before the stop ends (1 s: delivery on a busy
        # machine) and ends at the first frame after the restart, which none can precede.
        assert any(stop_ns - 1_000_000_000 <= g["start_ns"] < restart_ns <= g["end_ns"]
                   and g["cause"] == "camera" for g in between), (stop_ns, restart_ns, stream)
        assert "smoke at the gate" in [m["note"] for m in info["marks"]]
        assert "GAP" in out and "camera down" in out
        code, out, err = await run_edge("record", "info", str(sid), *cfg)
        assert code == 0 and last_json(out)["session"]["name"] == "Steel plant drill", err

    # Stopped: the catalog rebuilt from the files. One file gone, one row forgotten.
    rows = closed_segments(catalog, "gate")
    assert len(rows) >= 3
    rows[0].path.unlink()
    with Catalog(catalog) as cat:
        assert cat.remove_segment(rows[1].path)
    code, out, err = await run_edge("record", "reindex", *cfg)
    assert code == 0, err
    done = last_json(out)
    assert (done["rows_dropped"], done["segments_added"], done["problems"]) == (1, 1, [])
    assert {r.path for r in closed_segments(catalog, "gate")} == set(
        (root / "video").glob("*/*/*.mp4"))
    # Sessions and marks live in the catalog only: a reindex keeps them.
    code, out, err = await run_edge("record", "ls", *cfg)
    assert code == 0 and last_json(out)["sessions"][0]["marks"] >= 1, err


async def test_bad_input_is_one_line_and_exit_2(
        bus: BusClient, endpoints: Endpoints, runtime_dir: Path, tmp_path: Path) -> None:
    config, config_path = recorder_config(tmp_path, {})
    root = tmp_path / "recordings"
    cfg = ("--config", str(config_path))
    on_bus = (*cfg, "--bus", str(runtime_dir))

    code, _, err = await run_edge("record", "ls", *cfg)
    assert code == 2 and one_line_error(err) == (
        f"edge: no recordings in {root} yet (the recorder has not run there)")

    async with support.hosted(RecorderService, "recorder", config, config_path, endpoints):
        await recorder_answers(bus)
        for name, reason in [("", "a session needs a name"),
                             ("x" * 101, "a session name is at most 100 characters")]:
            code, _, err = await run_edge("record", "start", "--name", name, *on_bus)
            assert code == 2 and one_line_error(err).startswith(
                f"edge: the recorder refused: {reason}"), err
        code, _, err = await run_edge("record", "release", "7", *on_bus)
        assert code == 2 and one_line_error(err) == "edge: the recorder refused: no session 7"
        code, _, err = await run_edge("record", "stop", *on_bus)
        assert code == 2 and one_line_error(err) == (
            "edge: the recorder refused: no session is open")

    # The recorder stopped: the bus says so, at once.
    code, _, err = await run_edge("record", "stop", *on_bus)
    assert code == 1 and "cannot reach the recorder" in one_line_error(err)
    for args, reason in [(("info", "99"), "edge: no session 99 (see edge record ls)"),
                         (("info", "Nope"), "edge: no session named 'Nope' (see edge record ls)"),
                         (("release", "0"), "edge: 0 is not a session id (see edge record ls)")]:
        code, _, err = await run_edge("record", *args, *on_bus if args[0] == "release" else cfg)
        assert code == 2 and one_line_error(err) == reason

    (root / CATALOG_FILE).write_bytes(b"not a database, not at all" * 100)
    for action in (["ls"], ["info", "1"], ["reindex"]):
        code, _, err = await run_edge("record", *action, *cfg)
        assert code == 2 and "not a usable recording catalog" in one_line_error(err), action
