"""`edge record`: named sessions, and what the recorder holds.

``start --name NAME`` / ``stop`` / ``release ID`` are requests to the running
recorder over the bus (it alone writes the catalog while it runs). ``ls``,
``info SESSION`` and ``reindex`` open the catalog under the recordings
directory (``[recorder] path``) themselves, so they work with the recorder
stopped; ``ls`` and ``info`` only read it. ``reindex`` repairs and indexes
files the catalog does not know and forgets rows whose files are gone: it takes
the recorder's lock, so it refuses to run while a recorder writes there.

Every command prints for a person, then one JSON line (the last line) for
scripts; in the JSON, times are wall-clock nanoseconds since the Unix epoch
(fields ending ``_ns``), in the table local ISO 8601. Exit 0 when done; 1 when
the recorder cannot be asked (not running, no answer) or files could not be
indexed; 2 for bad input: a request the recorder refused, an unknown session,
no recordings yet, a catalog that cannot be opened.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.cli.common import add_bus_arg, add_config_arg, endpoints_for, load

if TYPE_CHECKING:
    from edge.bus.messages import RecordCommand, Reply
    from edge.recorder.catalog import BusLogRow, Catalog, Interval, Session

# Bus logs rotate back to back and the recorder itself publishes its status every
# second, so while it runs the bus log has no hole longer than this: a longer one is
# the recorder not running.
BUS_JOIN_NS = 3_000_000_000


class RecordError(Exception):
    """Bad input (exit 2), reported as one plain line."""


Command = Callable[[argparse.Namespace], int]


def _guarded(func: Command) -> Command:
    @functools.wraps(func)
    def run(args: argparse.Namespace) -> int:
        import sqlite3  # here: every `edge` process imports this module, few read a catalog

        try:
            return func(args)
        except RecordError as e:
            print(f"edge: {e}", file=sys.stderr)
            return 2
        except sqlite3.Error as e:  # a catalog that opened but cannot be read
            print(f"edge: cannot read the recording catalog: {e}", file=sys.stderr)
            return 2
    return run


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("record", help="named recording sessions and what is recorded",
                       description=__doc__.split("\n\n")[0] if __doc__ else None)
    rsub = p.add_subparsers(dest="record_command", metavar="ACTION", required=True)

    def bus_cmd(name: str, help_: str) -> argparse.ArgumentParser:
        c = rsub.add_parser(name, help=help_, description=f"{help_[0].upper()}{help_[1:]}. "
                            "A request to the running recorder; the last line is JSON.")
        add_config_arg(c)
        add_bus_arg(c)
        return c

    def catalog_cmd(name: str, help_: str) -> argparse.ArgumentParser:
        c = rsub.add_parser(name, help=help_, description=f"{help_[0].upper()}{help_[1:]}. "
                            "Reads the recordings directory of the config; works with the "
                            "recorder stopped. The last line is JSON (times in ns).")
        add_config_arg(c)
        return c

    c = bus_cmd("start", "open a named session: retention keeps it until it is released")
    c.add_argument("--name", required=True, help='what it is, e.g. "Steel plant drill"')
    c.set_defaults(func=_guarded(cmd_start))
    bus_cmd("stop", "close the open session").set_defaults(func=_guarded(cmd_stop))
    c = bus_cmd("release", "let retention prune a closed session's recordings")
    c.add_argument("session_id", type=int, metavar="ID", help="the session's id (edge record ls)")
    c.set_defaults(func=_guarded(cmd_release))
    catalog_cmd("ls", "list named sessions and the always-on recording").set_defaults(
        func=_guarded(cmd_ls))
    c = catalog_cmd("info", "per camera stream, what a session recorded and its gaps")
    c.add_argument("session", metavar="SESSION", help="a session's id or name")
    c.set_defaults(func=_guarded(cmd_info))
    c = rsub.add_parser(
        "reindex", help="rebuild the catalog from the files",
        description="Repair and index every recording file the catalog does not know, and "
                    "forget rows whose files are gone. Run it with the recorder stopped; to "
                    "rebuild from nothing, move catalog.sqlite aside first (sessions and "
                    "marks live only in the catalog). The last line is JSON.")
    add_config_arg(c)
    c.set_defaults(func=_guarded(cmd_reindex))


# ----------------------------------------------------------------------------- formatting


def local_iso(ns: int | None) -> str:
    if ns is None:
        return "-"
    return dt.datetime.fromtimestamp(ns / 1e9).astimezone().isoformat(timespec="seconds")


def duration(ns: int) -> str:
    s = max(0, ns) / 1e9
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(round(s), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in [header, *rows]]


# ----------------------------------------------------------------------------- the recorder


def _ask(args: argparse.Namespace, command: RecordCommand) -> Reply:
    """The recorder's reply to `command`; OperatorError (exit 1) when there is none and
    RecordError (exit 2) when it refuses."""
    from edge.bus import topics
    from edge.bus.client import BusClient, RequestError, RequestTimeout
    from edge.bus.messages import Reply
    from edge.cli import OperatorError

    config, _ = load(args)
    endpoints = endpoints_for(args, config)

    async def request() -> object:
        bus = BusClient(endpoints, source="cli-record")
        try:
            return (await bus.request(topics.RECORDER_SERVICE, command)).message
        finally:
            await bus.close()

    try:
        reply = asyncio.run(request())
    except RequestTimeout:
        raise OperatorError(f"the recorder did not answer within "
                            f"{endpoints.request_timeout_s:g} s: is the vehicle's bus running "
                            f"(--bus DIR for a demo's)?") from None
    except RequestError as e:
        raise OperatorError(f"cannot reach the recorder ({e}): is it running "
                            f"(edge run recorder)?") from None
    if not isinstance(reply, Reply):
        raise OperatorError(f"the recorder answered with {type(reply).__name__}, not a reply")
    if reply.status == "rejected":
        raise RecordError(f"the recorder refused: {reply.detail}")
    if reply.status != "accepted":
        raise OperatorError(f"the recorder could not do it ({reply.status}): {reply.detail}")
    return reply


def _print_reply(line: str, reply: Reply) -> int:
    print(line)
    print(json.dumps({"status": reply.status, "detail": reply.detail, **reply.data}),
          flush=True)
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    from edge.bus.messages import RecordCommand

    reply = _ask(args, RecordCommand(action="start", name=args.name))
    d = reply.data
    return _print_reply(f"recording session {d.get('session_id')} {d.get('name')!r} since "
                        f"{local_iso(d.get('start_ns'))}", reply)


def cmd_stop(args: argparse.Namespace) -> int:
    from edge.bus.messages import RecordCommand

    reply = _ask(args, RecordCommand(action="stop"))
    d = reply.data
    start, end = d.get("start_ns"), d.get("end_ns")
    took = f" ({duration(end - start)})" if isinstance(start, int) and isinstance(end, int) \
        else ""
    return _print_reply(f"session {d.get('session_id')} {d.get('name')!r} stopped: "
                        f"{local_iso(start)} to {local_iso(end)}{took}", reply)


def cmd_release(args: argparse.Namespace) -> int:
    from edge.bus.messages import RecordCommand

    if args.session_id <= 0:
        raise RecordError(f"{args.session_id} is not a session id (see edge record ls)")
    reply = _ask(args, RecordCommand(action="release", session_id=args.session_id))
    return _print_reply(reply.detail, reply)


# ----------------------------------------------------------------------------- the catalog


def recordings_root(args: argparse.Namespace) -> Path:
    """The recordings directory the config names (`[recorder] path`)."""
    from edge.recorder.layout import recordings_dir

    config, path = load(args)
    return recordings_dir(config.recorder, path.resolve().parent)


def open_catalog(root: Path) -> Catalog:
    """The catalog of an existing recordings directory; RecordError when there is none
    or it cannot be opened (never one created here)."""
    from edge.recorder.catalog import Catalog, CatalogError
    from edge.recorder.layout import CATALOG_FILE

    if not root.is_dir():
        raise RecordError(f"no recordings in {root} yet (the recorder has not run there)")
    path = root / CATALOG_FILE
    if not path.is_file():
        raise RecordError(f"no recording catalog in {root} (the recorder has not run there; "
                          f"edge record reindex builds one from the files)")
    try:
        return Catalog(path)
    except CatalogError as e:
        raise RecordError(str(e)) from None


def _aggregate(cat: Catalog, sql: str) -> tuple[Any, ...]:
    # The catalog answers per-row questions; these sums and extents are one query each
    # on its own connection, read only.
    (row,) = cat._query(sql)
    return row


def _range_bytes(cat: Catalog, start_ns: int, end_ns: int) -> int:
    """Bytes of every file holding part of [start_ns, end_ns): what retention keeps."""
    return (sum(s.bytes for s in cat.segments(start_ns=start_ns, end_ns=end_ns))
            + sum(b.bytes for b in cat.bus_logs(start_ns=start_ns, end_ns=end_ns)))


def _session_json(s: Session, now: int, marks: int, nbytes: int) -> dict[str, object]:
    end = s.end_ns if s.end_ns is not None else now
    return {"session_id": s.id, "name": s.name, "start_ns": s.start_ns, "end_ns": s.end_ns,
            "open": s.open, "released": s.released,
            "duration_s": round((end - s.start_ns) / 1e9, 3), "marks": marks, "bytes": nbytes}


def cmd_ls(args: argparse.Namespace) -> int:
    root = recordings_root(args)
    now = time.time_ns()
    with open_catalog(root) as cat:
        sessions = []
        for s in cat.sessions():
            end = s.end_ns if s.end_ns is not None else now
            sessions.append((s, len(cat.marks(session_id=s.id)),
                             _range_bytes(cat, s.start_ns, end)))
        v_start, v_end, v_count, v_bytes = _aggregate(
            cat, "SELECT min(start_ns), max(end_ns), count(*), coalesce(sum(bytes), 0) "
                 "FROM segments")
        b_start, b_end, b_count, b_bytes = _aggregate(
            cat, "SELECT min(first_ns), max(last_ns), count(*), coalesce(sum(bytes), 0) "
                 "FROM bus_logs")
        (mark_count,) = _aggregate(cat, "SELECT count(*) FROM marks")
        streams = [f"{c}/{s}" for c, s in cat.streams()]
    starts = [int(t) for t in (v_start, b_start) if t is not None]
    ends = [int(t) for t in (v_end, b_end) if t is not None]
    r_start, r_end = (min(starts) if starts else None), (max(ends) if ends else None)
    r_bytes = int(v_bytes) + int(b_bytes)

    rows = []
    for s, marks, nbytes in sessions:
        end = s.end_ns if s.end_ns is not None else now
        state = "open" if s.open else ("released" if s.released else "kept")
        rows.append([str(s.id), s.name, local_iso(s.start_ns),
                     "(open)" if s.open else local_iso(s.end_ns), duration(end - s.start_ns),
                     str(marks), size(nbytes), state])
    rows.append(["-", "(always-on recording)", local_iso(r_start), local_iso(r_end),
                 duration(r_end - r_start) if r_start is not None and r_end is not None
                 else "-", str(mark_count), size(r_bytes), ""])
    for line in table(["ID", "NAME", "START", "END", "DURATION", "MARKS", "SIZE", "STATE"],
                      rows):
        print(line)
    print(f"always-on: {len(streams)} camera stream(s) ({', '.join(streams) or 'none'}), "
          f"{v_count} segment(s), {b_count} bus log(s) in {root}")
    ring = {"start_ns": r_start, "end_ns": r_end, "streams": streams,
            "cameras": sorted({x.split("/")[0] for x in streams}), "segments": int(v_count),
            "bus_logs": int(b_count), "bytes": r_bytes, "marks": int(mark_count)}
    print(json.dumps({"path": str(root),
                      "sessions": [_session_json(s, now, m, b) for s, m, b in sessions],
                      "recording": ring}), flush=True)
    return 0


def find_session(cat: Catalog, text: str) -> Session:
    """A session by id or name (:meth:`Catalog.find_session`); RecordError if not one."""
    from edge.recorder.catalog import CatalogError

    try:
        return cat.find_session(text)
    except CatalogError as e:
        raise RecordError(str(e)) from None


@dataclass(frozen=True, slots=True)
class Gap:
    start_ns: int
    end_ns: int
    cause: str  # camera | recorder | unknown

    def json(self) -> dict[str, object]:
        return {"start_ns": self.start_ns, "end_ns": self.end_ns,
                "seconds": round((self.end_ns - self.start_ns) / 1e9, 3), "cause": self.cause}


CAUSES = {"camera": "no video while the recorder ran (camera down, or its video lost)",
          "recorder": "the recorder was not running",
          "unknown": "not known yet (the bus log of that time is not indexed)"}


def _bus_cover(logs: list[BusLogRow]) -> list[tuple[int, int]]:
    """The times the bus log covers, holes shorter than BUS_JOIN_NS closed."""
    spans = sorted((b.first_ns, b.last_ns) for b in logs
                   if b.first_ns is not None and b.last_ns is not None)
    merged: list[tuple[int, int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1] + BUS_JOIN_NS:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _cause(start_ns: int, end_ns: int, cover: list[tuple[int, int]]) -> str:
    # A camera's outage leaves the bus log running (the recorder's own status, at least);
    # the recorder's leaves a hole in both, with bus logs after it once it is back.
    if any(a <= start_ns and end_ns <= b for a, b in cover):
        return "camera"
    if cover and cover[-1][1] >= end_ns:
        return "recorder"
    return "unknown"


def _gaps(intervals: Sequence[Interval], start_ns: int, end_ns: int, closed: bool,
          cover: list[tuple[int, int]]) -> list[Gap]:
    """Every stretch of [start_ns, end_ns) outside `intervals`; the tail of an open
    session is left out (its segment is indexed when it closes)."""
    edges = [start_ns]
    for iv in intervals:
        edges += [iv.start_ns, iv.end_ns]
    edges.append(end_ns)
    gaps = []
    for i in range(0, len(edges), 2):
        a, b = edges[i], edges[i + 1]
        last = i + 2 == len(edges)
        if b > a and (closed or not last):
            gaps.append(Gap(a, b, _cause(a, b, cover)))
    return gaps


def cmd_info(args: argparse.Namespace) -> int:
    root = recordings_root(args)
    now = time.time_ns()
    with open_catalog(root) as cat:
        s = find_session(cat, args.session)
        end = s.end_ns if s.end_ns is not None else now
        logs = cat.bus_logs(start_ns=s.start_ns - BUS_JOIN_NS, end_ns=end + BUS_JOIN_NS)
        # Bus logs after the session tell a recorder that came back from one that has not.
        cover = _bus_cover(logs + cat.bus_logs(start_ns=end))
        coverages = cat.coverage_all(start_ns=s.start_ns, end_ns=end)
        marks = cat.marks(session_id=s.id)
        in_session = [b for b in logs if (b.last_ns is None or b.last_ns >= s.start_ns)
                      and (b.first_ns is None or b.first_ns < end)]
    gaps = [_gaps(cov.intervals, s.start_ns, end, not s.open, cover) for cov in coverages]
    bus_bytes = sum(b.bytes for b in in_session)
    total = sum(cov.bytes for cov in coverages) + bus_bytes
    streams = []
    for cov, stream_gaps in zip(coverages, gaps, strict=True):
        streams.append({
            "camera": cov.camera, "stream": cov.stream, "segments": cov.segments,
            "frames": cov.frames, "bytes": cov.bytes,
            "recorded_s": round(sum(iv.seconds for iv in cov.intervals), 3),
            "intervals": [{"start_ns": iv.start_ns, "end_ns": iv.end_ns,
                           "seconds": round(iv.seconds, 3)} for iv in cov.intervals],
            "gaps": [g.json() for g in stream_gaps]})

    state = "open" if s.open else ("released" if s.released else "kept until released")
    print(f"session {s.id} {s.name!r}: {local_iso(s.start_ns)} to "
          f"{'now (open)' if s.open else local_iso(s.end_ns)}, {duration(end - s.start_ns)}, "
          f"{state}, {len(marks)} mark(s), {size(total)}")
    for cov, stream_gaps in zip(coverages, gaps, strict=True):
        recorded = sum(iv.end_ns - iv.start_ns for iv in cov.intervals)
        print(f"{cov.camera}/{cov.stream}: {duration(recorded)} recorded in "
              f"{len(cov.intervals)} interval(s), {len(stream_gaps)} gap(s), "
              f"{cov.segments} segment(s), {size(cov.bytes)}")
        spans = ([(iv.start_ns, iv.end_ns, "recorded") for iv in cov.intervals]
                 + [(g.start_ns, g.end_ns,
                     f"GAP {duration(g.end_ns - g.start_ns)}: {CAUSES[g.cause]}")
                    for g in stream_gaps])
        for a, b, what in sorted(spans):
            print(f"    {local_iso(a)} to {local_iso(b)}  {what}")
    if not coverages:
        print("no camera recorded in this session")
    print(f"bus log: {len(in_session)} file(s), {size(bus_bytes)}")
    for m in marks:
        who = f" ({m.author})" if m.author else ""
        print(f"mark {local_iso(m.wall_ns)}  {m.note!r}{who}")
    print(json.dumps({"path": str(root), "session": _session_json(s, now, len(marks), total),
                      "streams": streams,
                      "bus_logs": {"files": len(in_session), "bytes": bus_bytes},
                      "marks": [{"mark_id": m.id, "wall_ns": m.wall_ns, "note": m.note,
                                 "author": m.author} for m in marks]}), flush=True)
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    from edge.cli import OperatorError
    from edge.recorder.catalog import Catalog, CatalogError
    from edge.recorder.layout import CATALOG_FILE
    from edge.recorder.recovery import lock_recordings, recover_files

    root = recordings_root(args)
    if not root.is_dir():
        raise RecordError(f"no recordings in {root} (nothing to index)")
    try:
        lock = lock_recordings(root)
    except OSError as e:
        raise RecordError(f"cannot use {root}: {e.strerror or e}") from None
    if lock is None:
        raise OperatorError(f"a recorder is recording into {root}: stop it first "
                            f"(systemctl stop edge-recorder)")
    try:
        try:
            cat = Catalog(root / CATALOG_FILE)
        except CatalogError as e:
            raise RecordError(f"{e}; move it aside and run edge record reindex again to "
                              f"rebuild it from the files") from None
        with cat:
            gone = 0
            for path in cat.segment_paths():
                if not path.exists():
                    gone += cat.remove_segment(path)
            for path in cat.bus_log_paths():
                if not path.exists():
                    gone += _forget_bus_log(cat, path)
            found = recover_files(root, cat)
            (segments,) = _aggregate(cat, "SELECT count(*) FROM segments")
            (bus_logs,) = _aggregate(cat, "SELECT count(*) FROM bus_logs")
    finally:
        os.close(lock)
    problems = found.problems or []
    print(f"reindexed {root}: {found.segments} segment(s) added ({found.repaired} repaired, "
          f"{found.deleted} without a picture deleted), {found.bus_logs} bus log(s) added "
          f"({found.bus_recovered} recovered), {gone} row(s) dropped whose files are gone; "
          f"the catalog holds {segments} segment(s) and {bus_logs} bus log(s)")
    for problem in problems:
        print(f"cannot index {problem}")
    print(json.dumps({"path": str(root), "segments_added": found.segments,
                      "repaired": found.repaired, "deleted": found.deleted,
                      "bus_logs_added": found.bus_logs, "bus_recovered": found.bus_recovered,
                      "rows_dropped": gone, "segments": int(segments),
                      "bus_logs": int(bus_logs), "problems": problems}), flush=True)
    return 1 if problems else 0


def _forget_bus_log(cat: Catalog, path: Path) -> int:
    # The catalog can forget a segment but not (yet) a bus log: its own transaction.
    with cat._tx() as db:
        return db.execute("DELETE FROM bus_logs WHERE path = ?", (str(path),)).rowcount
