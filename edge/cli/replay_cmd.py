"""`edge replay SESSION`: a recorded session played on a replay vehicle of its own.

A private runtime dir (like a second `edge demo`) holds the replay's bus (a
broker run in this process, in a thread) and its media plane; on it the
session's bus messages are republished on their original topics at their
recorded pacing and each camera stream's video on its media plane, all from
one clock (:mod:`edge.replay`). `edge dashboard --bus DIR` and `edge bus tail
--bus DIR` work against it unchanged; it is driven by `replay.command`
requests to the service `replay` (play, pause, seek, next/previous mark,
speed, step). With `--uplink [HOST:PORT]` the vehicle's WHEP uplink and viewer page
run on the replay too (port 8810 unless given, beside a live uplink on 8800), so the
centre can follow the debrief in a browser; its URL and token file are printed.

TIME (for --from and --to): wall-clock ns; `+SECONDS` or `+[H:]MM:SS` from the
session's start; an ISO 8601 date and time (local unless it says otherwise); or
`HH:MM[:SS]`, local time on the session's first day.

The last line is JSON: what was replayed, where the clock got to, and every gap
(a missing or damaged file is replayed around and reported, never fatal). Exit
0 when it ran; 2 for bad input (an unknown session, no recordings, a bad time).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from edge.cli.common import add_config_arg, load

if TYPE_CHECKING:
    from edge.bus.endpoints import Endpoints
    from edge.config import VehicleConfig
    from edge.recorder.catalog import Catalog, Session
    from edge.replay.service import ReplaySource

_OFFSET = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)")
_TIME_OF_DAY = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d+)?))?")


class ReplayInputError(Exception):
    """Bad input (exit 2), reported as one plain line."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("replay", help="play a recorded session on a replay vehicle of its own",
                       description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("session", metavar="SESSION", help="a session's id or name (edge record ls)")
    p.add_argument("--from", dest="from_", metavar="TIME",
                   help="start here (default: the session's start)")
    p.add_argument("--to", metavar="TIME", help="end here (default: the session's end)")
    p.add_argument("--speed", type=float, default=1.0, metavar="X",
                   help="0.25 to 16 (default 1); above 2 video is keyframes only")
    p.add_argument("--paused", action="store_true", help="start paused (play with a request)")
    p.add_argument("--max-bus-rate", type=float, default=None, metavar="N",
                   help="messages a second the replay bus carries before it thins them per "
                        "topic, latest value winning (default 1000; events never)")
    add_config_arg(p)
    p.add_argument("--headless", action="store_true",
                   help="no dashboard; print a JSON summary as the last line")
    p.add_argument("--seconds", type=float, default=0,
                   help="stop after N seconds (default: run until Ctrl-C)")
    p.add_argument("--keep", action="store_true", help="keep the runtime dir afterwards")
    p.add_argument("--uplink", nargs="?", const="", default=None, metavar="HOST:PORT",
                   help="also run a WHEP uplink and its viewer page on the replay, for the "
                        "centre (alone: the vehicle's uplink host, port 8810; off by default)")
    p.set_defaults(func=cmd_replay)


# ----------------------------------------------------------------------------- times


def parse_time(text: str, session_start_ns: int) -> int:
    """A TIME (see the module docstring) as wall-clock ns; ReplayInputError if it is none."""
    t = text.strip()
    if t.isdigit():
        return int(t)
    if t.startswith("+"):
        rest = t[1:].removesuffix("s")
        m = _OFFSET.fullmatch(rest)
        try:
            seconds = (int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
                       if m else float(rest))
        except ValueError:
            seconds = -1.0
        if not 0 <= seconds < 1e9:
            raise ReplayInputError(f"{text!r} is not an offset from the session's start "
                                   f"(+SECONDS or +MM:SS)")
        return session_start_ns + int(seconds * 1e9)
    m = _TIME_OF_DAY.fullmatch(t)
    if m:
        hours, minutes, seconds = int(m.group(1)), int(m.group(2)), float(m.group(3) or 0)
        if hours > 23 or minutes > 59 or seconds >= 60:
            raise ReplayInputError(f"{text!r} is not a time of day")
        day = dt.datetime.fromtimestamp(session_start_ns / 1e9).astimezone()
        at = day.replace(hour=hours, minute=minutes, second=int(seconds),
                         microsecond=round(seconds % 1 * 1e6))
        return int(at.timestamp()) * 1_000_000_000 + at.microsecond * 1000
    try:
        when = dt.datetime.fromisoformat(t)
    except ValueError:
        raise ReplayInputError(f"{text!r} is not a time: give ns, +SECONDS from the "
                               f"session's start, HH:MM[:SS] or an ISO 8601 date and "
                               f"time") from None
    if when.tzinfo is None:
        when = when.astimezone()
    return int(when.timestamp()) * 1_000_000_000 + when.microsecond * 1000


def _local(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9).astimezone().isoformat(timespec="seconds")


def _recorded_end(cat: Catalog, session: Session) -> int:
    """Where an open session's recordings end so far."""
    ends = [b.last_ns for b in cat.bus_logs(start_ns=session.start_ns) if b.last_ns]
    ends += [s.end_ns for s in cat.segments(start_ns=session.start_ns)]
    return max(ends, default=time.time_ns())


def replay_endpoints(runtime_dir: Path, request_timeout_s: float) -> Endpoints:
    """The replay's own bus, always ipc in its runtime dir: never the live vehicle's."""
    from edge.bus.endpoints import Endpoints

    return Endpoints(pub=f"ipc://{runtime_dir}/bus-pub.sock",
                     sub=f"ipc://{runtime_dir}/bus-sub.sock",
                     router=f"ipc://{runtime_dir}/bus-router.sock",
                     runtime_dir=runtime_dir, request_timeout_s=request_timeout_s)


# ----------------------------------------------------------------------------- the command


def cmd_replay(args: argparse.Namespace) -> int:
    from edge.cli.record_cmd import RecordError
    from edge.recorder.catalog import CatalogError
    from edge.replay.service import ReplayError
    from edge.replay.uplink import ReplayUplinkError

    try:
        return _replay(args)
    except (ReplayInputError, RecordError, ReplayError, CatalogError, ReplayUplinkError) as e:
        print(f"edge: {e}", file=sys.stderr)
        return 2


def _replay(args: argparse.Namespace) -> int:
    import sqlite3

    from edge.bus.messages import REPLAY_SPEED_MAX, REPLAY_SPEED_MIN
    from edge.cli.record_cmd import find_session, open_catalog
    from edge.recorder.layout import recordings_dir
    from edge.replay.service import load_source

    if not REPLAY_SPEED_MIN <= args.speed <= REPLAY_SPEED_MAX:
        raise ReplayInputError(f"--speed {args.speed:g} is outside {REPLAY_SPEED_MIN:g} to "
                               f"{REPLAY_SPEED_MAX:g}")
    config, path = load(args)
    if args.uplink is not None:
        from edge.replay.uplink import listen_address

        args.uplink = listen_address(args.uplink, config)  # bad input before any work
    root = recordings_dir(config.recorder, path.resolve().parent)
    try:
        with open_catalog(root) as cat:
            session = find_session(cat, args.session)
            start = session.start_ns
            end = session.end_ns if session.end_ns is not None else _recorded_end(cat, session)
            if args.from_:
                start = parse_time(args.from_, session.start_ns)
            if args.to:
                end = parse_time(args.to, session.start_ns)
            if end <= start:
                raise ReplayInputError(f"nothing to replay: the end ({_local(end)}) is not "
                                       f"after the start ({_local(start)})")
            source = load_source(cat, start, end, session)
    except sqlite3.Error as e:
        raise ReplayInputError(f"cannot read the recording catalog: {e}") from None

    runtime_dir = Path(tempfile.mkdtemp(prefix="edge-replay-"))
    try:
        endpoints = replay_endpoints(runtime_dir, config.bus.request_timeout_s)
        return asyncio.run(_run(args, config, path, endpoints, source))
    finally:
        if not args.keep:
            shutil.rmtree(runtime_dir, ignore_errors=True)


async def _run(args: argparse.Namespace, config: VehicleConfig, config_path: Path,
               endpoints: Endpoints, source: ReplaySource) -> int:
    from edge.replay.replay_bus import ReplayBus, ReplayBusError

    try:
        async with ReplayBus(endpoints):
            return await _play(args, config, config_path, endpoints, source)
    except ReplayBusError as e:
        raise ReplayInputError(str(e)) from None


async def _play(args: argparse.Namespace, config: VehicleConfig, config_path: Path,
                endpoints: Endpoints, source: ReplaySource) -> int:
    from edge.cli.dashboard import run_dashboard
    from edge.replay.bus_player import MAX_RATE
    from edge.replay.service import ReplayVehicle
    from edge.replay.uplink import ReplayUplink

    vehicle = ReplayVehicle(source, endpoints, speed=args.speed, paused=args.paused,
                            max_bus_rate=args.max_bus_rate or MAX_RATE)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    session = source.session
    d = endpoints.runtime_dir
    uplink: ReplayUplink | None = None
    try:
        await vehicle.start()
        if args.uplink is not None:
            recorded: dict[str, set[str]] = {}
            for camera, stream in source.streams:
                recorded.setdefault(camera, set()).add(stream)
            uplink = ReplayUplink(d, config, recorded, args.uplink)
            await uplink.start()
        streams = ", ".join(v.name for v in vehicle.video) or "none"
        print(f"edge replay: session {session.id if session else '-'} "
              f"{session.name if session else ''!r} from {_local(source.start_ns)} to "
              f"{_local(source.end_ns)} at x{args.speed:g}; video: {streams}\n"
              f"  replay bus and media plane in {d}\n"
              f"  watch it: edge bus tail --bus {d} --config {config_path}\n"
              f"  dashboard: edge dashboard --bus {d} --config {config_path}\n"
              f"  controls: replay.command requests to the service "
              f"'replay'", file=sys.stderr, flush=True)
        if uplink is not None:
            print(f"  uplink (WHEP and the viewer page): {uplink.url}/ token in "
                  f"{uplink.token_file}", file=sys.stderr, flush=True)
        for gap in vehicle.gaps.all():
            print(f"edge replay: gap: {gap.line()}", file=sys.stderr, flush=True)
        if args.seconds:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.seconds)
        elif args.headless or not sys.stdout.isatty():
            await stop.wait()
        else:
            await run_dashboard(config, endpoints, stop)
    finally:
        if uplink is not None:
            await uplink.stop()
        await vehicle.stop()
    for gap in vehicle.gaps.all():
        print(f"edge replay: gap: {gap.line()}", file=sys.stderr)
    summary = vehicle.summary()
    if uplink is not None:
        summary["uplink"] = {"url": uplink.url, "token_file": str(uplink.token_file)}
    print(json.dumps(summary), flush=True)
    return 0
