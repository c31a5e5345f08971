"""`edge export`: what the recorder holds, as files for the debrief.

``clip`` (a camera's video as one MP4, no transcode), ``tlog`` (a drone link's raw
MAVLink over a session, for QGroundControl or MAVProxy), ``report`` (a session's
debrief as one self-contained HTML page) and ``mcap`` (a whole session for Foxglove,
with its published schemas). Each reads the catalog and files under the
config's recordings directory (``[recorder] path``) and works with the recorder
stopped or running. A progress bar goes to a terminal's stderr; the last line of
stdout is JSON (times in wall-clock ns). Exit 0 when written; 2 for bad input (an
unknown camera, session or drone, an empty range, nothing recorded in it), as one
line; 1 when the file cannot be written.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from edge.cli.record_cmd import RecordError, find_session, open_catalog, recordings_root

if TYPE_CHECKING:
    from edge.recorder.catalog import Catalog

Command = Callable[[argparse.Namespace], int]

TIMES = ("T is ISO 8601 (2026-12-01T14:03:22 local, or ...Z / +01:00), session:NAME "
         "(a session's start; session:NAME+90s, +1m30s or +01:30 after it; "
         "session:NAME@end its end); --to also takes +DURATION after --from.")


def _guarded(func: Command) -> Command:
    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        import sqlite3  # here: every `edge` process imports this module, few read a catalog

        from edge.cli import OperatorError
        from edge.export import ExportError

        try:
            return func(args)
        except (ExportError, RecordError) as e:
            _Bar.clear()
            print(f"edge: {e}", file=sys.stderr)
            return 2
        except sqlite3.Error as e:
            _Bar.clear()
            print(f"edge: cannot read the recording catalog: {e}", file=sys.stderr)
            return 2
        except OSError as e:
            _Bar.clear()
            where = f"{e.filename}: " if e.filename else ""
            raise OperatorError(f"export failed: {where}{e.strerror or e}") from None
    return run


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from edge.cli.common import add_config_arg

    p = sub.add_parser("export", help="export a clip, a drone's tlog, a debrief report or "
                                      "an MCAP for Foxglove",
                       description=__doc__.split("\n\n")[1] if __doc__ else None)
    esub = p.add_subparsers(dest="export_command", metavar="WHAT", required=True)

    c = esub.add_parser(
        "clip", help="a camera's recording as one MP4 (no transcode)",
        description="A camera stream's recording from --from to --to as one MP4 that "
                    "Chromium and FFmpeg play: the video remuxed, never re-encoded, starting "
                    "at the keyframe at or before --from. " + TIMES)
    c.add_argument("--camera", required=True, metavar="ID")
    c.add_argument("--stream", default="main", choices=("main", "sub"))
    c.add_argument("--from", dest="from_", required=True, metavar="T")
    c.add_argument("--to", required=True, metavar="T")
    c.add_argument("out", metavar="OUT.mp4", type=Path)
    add_config_arg(c)
    c.set_defaults(func=_guarded(cmd_clip))

    c = esub.add_parser(
        "tlog", help="a drone link's raw MAVLink over a session, for QGroundControl",
        description="The raw MAVLink of the drone's link (all of it, both ways, as it was) "
                    "from the session's start to its end, as one .tlog.")
    c.add_argument("session", metavar="SESSION", help="a session's id or name")
    c.add_argument("--drone", required=True, metavar="ID", help="LINK-SYSID, e.g. alpha-1")
    c.add_argument("out", metavar="OUT.tlog", type=Path)
    add_config_arg(c)
    c.set_defaults(func=_guarded(cmd_tlog))

    c = esub.add_parser(
        "report", help="a session's debrief as one self-contained HTML page",
        description="Marks, alerts and drone commands on a timeline, a thumbnail per "
                    "camera per mark, drone tracks and link outages, in one HTML file that "
                    "fetches nothing.")
    c.add_argument("session", metavar="SESSION", help="a session's id or name")
    c.add_argument("out", metavar="OUT.html", type=Path)
    add_config_arg(c)
    c.set_defaults(func=_guarded(cmd_report))

    c = esub.add_parser(
        "mcap", help="a whole session as one MCAP file for Foxglove",
        description="Every camera's video (foxglove.CompressedVideo, Annex-B), drones "
                    "(foxglove.LocationFix, foxglove.PoseInFrame), camera positions "
                    "(foxglove.LocationFix), alerts and marks (foxglove.Log), and every bus "
                    "topic as JSON with a JSON Schema, over the session, in one MCAP file.")
    c.add_argument("session", metavar="SESSION", help="a session's id or name")
    c.add_argument("out", metavar="OUT.mcap", type=Path)
    add_config_arg(c)
    c.set_defaults(func=_guarded(cmd_mcap))


def cmd_mcap(args: argparse.Namespace) -> int:
    from edge.export.mcap_export import export_mcap

    _check_out(args.out)
    result = export_mcap(recordings_root(args), args.session, args.out, _Bar("mcap"))
    _Bar.clear()
    print(f"{result.path}: session {result.session_id} {result.session_name!r} for Foxglove: "
          f"{result.messages} messages on {len(result.topics)} topics ({result.video_frames} "
          f"video frames, {result.bus_messages} bus messages), {result.size} bytes")
    for problem in result.problems:
        print(f"could not read: {problem}")
    if result.malformed:
        print(f"{result.malformed} malformed bus message(s) left out")
    print(json.dumps(result.json()), flush=True)
    return 0


class _Bar:
    """A progress bar on stderr when it is a terminal; nothing otherwise."""

    shown = False

    def __init__(self, what: str) -> None:
        self.what = what
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, fraction: float, detail: str) -> None:
        now = time.monotonic()
        if not self.tty or (now - self.last < 0.1 and fraction < 1.0):
            return
        self.last = now
        filled = round(30 * max(0.0, min(1.0, fraction)))
        sys.stderr.write(f"\r{self.what} [{'#' * filled}{'.' * (30 - filled)}] "
                         f"{fraction:4.0%} {detail[:40]:<40}")
        sys.stderr.flush()
        _Bar.shown = True

    @staticmethod
    def clear() -> None:
        if _Bar.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            _Bar.shown = False


def _check_out(out: Path) -> None:
    from edge.export import ExportError

    if not out.parent.is_dir():
        raise ExportError(f"{out.parent} is not a directory (where {out.name} would go)")
    if out.is_dir():
        raise ExportError(f"{out} is a directory; name the file to write")


def _session_range(cat: Catalog, now_ns: int) -> Callable[[str], tuple[int, int]]:
    def find(name: str) -> tuple[int, int]:
        s = find_session(cat, name)
        return s.start_ns, s.end_ns if s.end_ns is not None else now_ns
    return find


def cmd_clip(args: argparse.Namespace) -> int:
    from edge.export.clip import export_clip
    from edge.export.times import clock, parse_time

    _check_out(args.out)
    now = time.time_ns()
    with open_catalog(recordings_root(args)) as cat:
        sessions = _session_range(cat, now)
        from_ns = parse_time(args.from_, sessions)
        to_ns = parse_time(args.to, sessions, after=from_ns)
        result = export_clip(cat, args.camera, args.stream, from_ns, to_ns, args.out,
                             _Bar("clip"))
    _Bar.clear()
    if result.start_ns <= from_ns:
        where = (f"starts at {clock(result.start_ns)}, the keyframe before "
                 f"{clock(from_ns)}")
    else:
        where = (f"starts at {clock(result.start_ns)}, the first keyframe recorded after "
                 f"{clock(from_ns)}")
    print(f"{result.summary()}; {where}")
    if result.end_ns < to_ns:
        print(f"ends at {clock(result.end_ns)}, before {clock(to_ns)}: "
              f"{result.note or 'the recording ends there'}")
    if result.gaps:
        print(f"{result.gaps} gap(s) in the recording: the picture holds through them")
    print(json.dumps({**result.json(), "from_ns": from_ns, "to_ns": to_ns,
                      "keyframe_before": result.start_ns <= from_ns}), flush=True)
    return 0


def cmd_tlog(args: argparse.Namespace) -> int:
    from edge.export.times import local_iso
    from edge.export.tlog import export_tlog

    _check_out(args.out)
    root = recordings_root(args)
    with open_catalog(root) as cat:
        s = find_session(cat, args.session)
    end = s.end_ns if s.end_ns is not None else time.time_ns()
    result = export_tlog(root, args.drone, s.start_ns, end, args.out, _Bar("tlog"))
    _Bar.clear()
    span = ("-" if result.first_ns is None or result.last_ns is None
            else f"{local_iso(result.first_ns)} to {local_iso(result.last_ns)}")
    print(f"{result.path}: {result.records} MAVLink records of link {result.link!r} "
          f"({result.from_drone} from {result.drone_id}, the rest from the other side of the "
          f"link and other vehicles on it), {span}, from {result.files} file(s)")
    print(json.dumps({**result.json(), "session_id": s.id}), flush=True)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from edge.export.report import export_report

    _check_out(args.out)
    root = recordings_root(args)
    with open_catalog(root) as cat:
        s = find_session(cat, args.session)
        result = export_report(cat, root, s, args.out, now_ns=time.time_ns(),
                               progress=_Bar("report"))
    _Bar.clear()
    print(f"{result.path}: debrief of session {s.id} {s.name!r}: {result.marks} mark(s), "
          f"{result.alerts} alert(s), {result.commands} drone command(s), "
          f"{result.thumbnails} thumbnail(s), {result.drones} drone track(s), "
          f"{result.outages} outage(s)")
    for problem in result.problems:
        print(f"could not read: {problem}")
    print(json.dumps(result.json()), flush=True)
    return 0
