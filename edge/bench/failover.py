"""`edge bench failover`: a WHEP session and telemetry through the tunnel while its WAN is cut.

The world (:mod:`edge.bench.failover_world`, root): two emulated WANs, `lte`
(preferred) and `sat`, between a vehicle and a centre namespace; `edge centre` in the
centre's; in the vehicle's, `edge run links` steering the WireGuard tunnel by its
policy (``down_after_ms`` at its default, ``failback_after_s`` 2 s so that every
repeat fails back), a simulated camera at 30 fps with its `camera@` service, and the
uplink listening on the vehicle's tunnel address. In the centre's namespace one aiortc
WHEP viewer (:mod:`edge.bench.failover_viewer`, the candidates of both ends filtered
to the tunnel's addresses, so the session can only pair through the tunnel) reports
every decoded frame, and a 10 Hz stream of 200-byte numbered datagrams crosses the
tunnel from the vehicle to the centre.

Each repeat, after ``--cut-after`` seconds of steady session, the WAN carrying the
tunnel goes down for ``--outage`` seconds (the emulator drops everything on it, in
flight too), then comes back, and the run waits for the policy to fail back and for
two seconds of video after that. Measured per repeat:

- **failover**: from the cut to the first WireGuard packet from the vehicle that
  arrives on the centre's interface of the other WAN, read off the wire by a packet
  socket in the centre's namespace. This is the issue's "first packet over the other
  WAN at the centre" itself, to the packet: the first telemetry datagram after the
  cut also waits for the stream's next send (up to 100 ms), and `edge centre` reads
  the peer's endpoint every 250 ms. The figure of the first datagram sent after the
  cut to arrive is shown beside it;
- **detected**: when the links service's status said the cut WAN was down (the bus);
  the probes' ``down_after_ms`` (300 ms) is the floor of any failover;
- **freeze**: the longest time between two frames the viewer decoded, over the gaps
  that reach into the outage; beside it, the longest gap in the steady seconds before
  the cut (the baseline) and around the failback;
- **telemetry lost**: datagrams sent during the repeat that never arrived;
- **session**: the same WHEP session survived: the viewer's peer connection connected
  throughout, its signalling never left ``stable`` after the answer (no new offer),
  frames decoded after the failback (waited for up to 20 s: a longer freeze is measured
  as such, not taken for a lost session), and the uplink lists it, live, under the same
  id. The frames decoded while the other WAN carried the tunnel are in the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from drivers.sim.link.profile import PROFILES

if TYPE_CHECKING:
    from edge.bench.failover_world import FailoverWorld, Telemetry, ViewerRun

FAILOVER_GOAL_MS = 1000
FREEZE_GOAL_MS = 1500
#: video watched after each failback before the next repeat
SETTLE_S = 2.0
#: how long a video frozen past the failback may take to come back before the session
#: counts as lost
RESUME_WITHIN_S = 20.0
#: the links service's default (`[link_policy] down_after_ms`): the bench leaves it as is
DOWN_AFTER_MS = 300
FPS = 30
# Generous bounds that only keep a broken run from hanging.
SWITCH_WITHIN_S = 20.0
FAILBACK_WITHIN_S = 40.0
FIRST_FRAMES_WITHIN_S = 60.0
SIGNALLING = ["have-local-offer", "stable"]


@dataclass
class Repeat:
    """One cut, as measured."""

    index: int
    cut: str  # "lte -> sat"
    start: float
    cut_at: float
    switched_at: float
    back_at: float
    end: float
    detected_ms: float | None
    failover_ms: float
    udp_resumed_ms: float | None
    freeze_ms: float
    steady_gap_ms: float
    failback_freeze_ms: float
    frames_after_failover: int
    frames_after_failback: int
    listed: bool  # the uplink lists the session, live, after the repeat
    survived: bool
    udp_lost: int = 0
    udp_sent: int = 0
    problems: list[str] = field(default_factory=list)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


async def _watch(w: FailoverWorld, viewer: ViewerRun, seconds: float) -> None:
    """Let `seconds` pass, failing at once if a process or the viewer stops."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        w.check_running()
        viewer.check_running()
        await asyncio.sleep(min(0.2, left))


async def _repeat(w: FailoverWorld, viewer: ViewerRun, telemetry: Telemetry, index: int,
                  cut_after: float, outage_s: float) -> Repeat:
    from edge.bench.failover_world import LINKS

    start = time.monotonic()
    await _watch(w, viewer, cut_after)
    old = w.watch.active or LINKS[0]
    new = next(link for link in LINKS if link != old)
    cut_at = await w.cut(old, outage_s)
    switched_at = await w.capture.wait_first_after(new, cut_at, SWITCH_WITHIN_S)
    outage_end = cut_at + outage_s
    await _watch(w, viewer, outage_end - time.monotonic())
    back_at = await w.capture.wait_first_after(old, outage_end, FAILBACK_WITHIN_S)
    await w.watch.wait_active(old, FAILBACK_WITHIN_S)
    # A video frozen past the failback is measured, not a reason to stop: the session
    # has survived if its frames come back at all (the freeze says how late).
    with contextlib.suppress(RuntimeError):
        await viewer.wait_frames(1, back_at, RESUME_WITHIN_S)
    await _watch(w, viewer, SETTLE_S)
    end = time.monotonic()
    session = await w.session(viewer.session_id)
    detected = w.watch.first(old, "down", cut_at)
    resumed = telemetry.first_sent_after(cut_at)
    r = Repeat(
        index=index, cut=f"{old} -> {new}", start=start, cut_at=cut_at,
        switched_at=switched_at, back_at=back_at, end=end,
        detected_ms=_ms(None if detected is None else detected - cut_at),
        failover_ms=round((switched_at - cut_at) * 1000, 1),
        udp_resumed_ms=_ms(None if resumed is None else resumed - cut_at),
        freeze_ms=round(viewer.gap_reaching(cut_at, outage_end, end) * 1000, 1),
        steady_gap_ms=round(viewer.gap_inside(start, cut_at) * 1000, 1),
        failback_freeze_ms=round(viewer.gap_reaching(back_at, end, end) * 1000, 1),
        frames_after_failover=viewer.frames_between(switched_at, outage_end),
        frames_after_failback=viewer.frames_between(back_at, end),
        listed=session is not None and session.get("state") == "live",
        survived=False)
    if not viewer.connected_throughout():
        r.problems.append(f"the viewer's connection went {viewer.states[-1][1]}")
    if viewer.signalling != SIGNALLING:
        r.problems.append(f"signalling went {' -> '.join(viewer.signalling)} (a new offer)")
    if not r.frames_after_failback:
        r.problems.append(f"no frame decoded in the {RESUME_WITHIN_S:g} s after the "
                          f"failback to {old}")
    if not r.listed:
        r.problems.append("the uplink no longer lists the session as live"
                          if session is None else f"the uplink says the session is "
                                                  f"{session.get('state')}")
    r.survived = not r.problems
    return r


async def run(repeats: int, cut_after: float, outage_s: float, profile_a: str, profile_b: str,
              stream: str) -> dict[str, Any]:
    from edge.bench.failover_world import Telemetry, failover_world

    per_repeat = cut_after + outage_s + FAILBACK_WITHIN_S + SETTLE_S
    async with failover_world(profile_a, profile_b) as w:
        viewer = await w.start_viewer(stream, max_seconds=300 + repeats * per_repeat)
        try:
            await viewer.wait_frames(FPS, 0.0, FIRST_FRAMES_WITHIN_S)
            await viewer.wait_for("nominated ICE pair", 10, lambda: viewer.pair is not None)
            _check_pair(w, viewer)
            telemetry = await Telemetry.start(w.world, w.centre_tunnel_address)
            try:
                await _watch(w, viewer, 1.0)
                if not telemetry.received:
                    raise RuntimeError("no telemetry datagram crossed the tunnel in 1 s")
                done = [await _repeat(w, viewer, telemetry, i + 1, cut_after, outage_s)
                        for i in range(repeats)]
                sent_until = time.monotonic()
                await asyncio.sleep(1.0)  # what is still on its way lands
            finally:
                await telemetry.stop()
            for i, r in enumerate(done):
                until = done[i + 1].start if i + 1 < len(done) else sent_until
                r.udp_lost, r.udp_sent = telemetry.lost(r.start, until)
            session = await w.session(viewer.session_id)
        finally:
            await viewer.stop()
        for warning in sorted(set(viewer.warnings)):
            print(f"edge: bench failover: viewer: {warning}", file=sys.stderr)
        emulator = w.links.emulator
        seed = emulator.seed if emulator is not None else None
        return _result(w, viewer, done, session, seed, cut_after, outage_s, stream)


def _check_pair(w: FailoverWorld, viewer: ViewerRun) -> None:
    assert viewer.pair is not None
    local, remote = (a.rsplit(":", 1)[0] for a in viewer.pair)
    if (local, remote) != (w.centre_tunnel_address, w.vehicle_tunnel_address):
        raise RuntimeError(f"the viewer paired {viewer.pair[0]} -> {viewer.pair[1]}, not "
                           f"through the tunnel ({w.centre_tunnel_address} -> "
                           f"{w.vehicle_tunnel_address}): nothing it measures would be "
                           "the tunnel's")


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def _result(w: FailoverWorld, viewer: ViewerRun, done: list[Repeat],
            session: dict[str, Any] | None, seed: int | None, cut_after: float,
            outage_s: float, stream: str) -> dict[str, Any]:
    from edge.bench.failover_world import FAILBACK_AFTER_S

    failover = [r.failover_ms for r in done]
    freeze = [r.freeze_ms for r in done]
    resumed = [r.udp_resumed_ms for r in done if r.udp_resumed_ms is not None]
    detected = [r.detected_ms for r in done if r.detected_ms is not None]
    posted = viewer.posted or {}
    roams = w.centre_roams()
    survived = bool(done) and all(r.survived for r in done) and session is not None
    worst_failover = max(failover) if failover else None
    worst_freeze = max(freeze) if freeze else None
    return {
        "repeats": len(done),
        "failover_ms_median": _median(failover),
        "failover_ms_worst": worst_failover,
        "failover_ms_each": failover,
        "video_freeze_ms_median": _median(freeze),
        "video_freeze_ms_worst": worst_freeze,
        "video_freeze_ms_each": freeze,
        "session_survived": survived,
        "session_survived_each": [r.survived for r in done],
        "session_problems": [f"repeat {r.index}: {p}" for r in done for p in r.problems],
        "udp_lost": sum(r.udp_lost for r in done),
        "udp_sent": sum(r.udp_sent for r in done),
        "udp_lost_each": [r.udp_lost for r in done],
        "udp_resumed_ms_median": _median(resumed),
        "udp_resumed_ms_worst": max(resumed) if resumed else None,
        "detected_ms_median": _median(detected),
        "detected_ms_each": [r.detected_ms for r in done],
        "steady_gap_ms_worst": max((r.steady_gap_ms for r in done), default=None),
        "failback_freeze_ms_worst": max((r.failback_freeze_ms for r in done), default=None),
        "goals_met": {
            "failover_ms": worst_failover is not None and worst_failover <= FAILOVER_GOAL_MS,
            "video_freeze_ms": worst_freeze is not None and worst_freeze <= FREEZE_GOAL_MS,
            "session_survived": survived},
        "goals": {"failover_ms_worst": FAILOVER_GOAL_MS, "video_freeze_ms_worst": FREEZE_GOAL_MS},
        "cuts": [r.cut for r in done],
        "profiles": {link: p.name for link, p in w.profiles.items()},
        "link_profiles": {link: p.summary() for link, p in w.profiles.items()},
        "seed": seed,
        "stream_requested": stream,
        "stream": None if session is None else session.get("profile"),
        "stream_switches": None if session is None else session.get("switches"),
        "session_id": viewer.session_id,
        "frames_decoded": len(viewer.frames),
        "cut_after_s": cut_after,
        "outage_s": outage_s,
        "down_after_ms": DOWN_AFTER_MS,
        "failback_after_s": FAILBACK_AFTER_S,
        "uplink_candidates": sorted([*posted.get("answer", []),
                                     *posted.get("answer_dropped", [])]),
        "ice_pair": None if viewer.pair is None else f"{viewer.pair[0]} -> {viewer.pair[1]}",
        # in order; a new port on the same WAN (the links service's rebind) is no move
        "centre_saw": [wan for i, wan in enumerate(roams) if i == 0 or wan != roams[i - 1]],
        "centre_endpoints_seen": len(roams),
        "each": [{"cut": r.cut, "detected_ms": r.detected_ms, "failover_ms": r.failover_ms,
                  "udp_resumed_ms": r.udp_resumed_ms, "freeze_ms": r.freeze_ms,
                  "steady_gap_ms": r.steady_gap_ms, "failback_freeze_ms": r.failback_freeze_ms,
                  "udp_lost": r.udp_lost, "udp_sent": r.udp_sent,
                  "frames_after_failover": r.frames_after_failover,
                  "frames_after_failback": r.frames_after_failback, "survived": r.survived}
                 for r in done],
        "failover_measured_at": "the first WireGuard packet from the vehicle on the centre's "
                                "interface of the other WAN",
    }


def print_table(r: dict[str, Any]) -> None:
    links = ", ".join(f"{link} ({summary})" for link, summary in r["link_profiles"].items())
    print(f"edge bench failover: {r['repeats']} cut(s) of the WAN carrying the tunnel, "
          f"{r['outage_s']:g} s each after {r['cut_after_s']:g} s of steady session\n"
          f"  links: {links} (seed {r['seed']})\n"
          f"  policy: prefer {' then '.join(r['profiles'])}, down after {r['down_after_ms']} ms "
          f"without probe answers, fail back after {r['failback_after_s']:g} s up\n"
          f"  WHEP: one aiortc viewer in the centre, stream {r['stream']} (asked "
          f"{r['stream_requested']}); telemetry: 10 Hz x 200 B through the tunnel\n"
          f"  ICE: the uplink offered {', '.join(r['uplink_candidates'])}; the viewer kept "
          f"only the tunnel's and paired {r['ice_pair']}")
    head = ("repeat", "cut", "detected", "failover", "telemetry", "freeze", "steady",
            "failback", "telemetry", "session")
    sub = ("", "", "ms", "ms [1]", "resumed ms", "ms [2]", "gap ms", "freeze ms",
           "lost/sent", "")
    rows = [head, sub]
    for i, e in enumerate(r["each"]):
        rows.append((str(i + 1), e["cut"], _text(e["detected_ms"]), _text(e["failover_ms"]),
                     _text(e["udp_resumed_ms"]), _text(e["freeze_ms"]),
                     _text(e["steady_gap_ms"]), _text(e["failback_freeze_ms"]),
                     f"{e['udp_lost']}/{e['udp_sent']}", "kept" if e["survived"] else "LOST"))
    widths = [max(len(row[c]) for row in rows) for c in range(len(head))]
    for row in rows:
        print("  " + "  ".join(cell.rjust(widths[c]) if c not in (1, 9) else
                               cell.ljust(widths[c]) for c, cell in enumerate(row)).rstrip())

    def verdict(key: str) -> str:
        return "met" if r["goals_met"][key] else "MISSED"

    print(f"  failover [1]: median {_text(r['failover_ms_median'])} ms, worst "
          f"{_text(r['failover_ms_worst'])} ms (goal <= {FAILOVER_GOAL_MS} ms: "
          f"{verdict('failover_ms')}); of it, the probes' {r['down_after_ms']} ms before "
          f"a WAN is down (detected: median {_text(r['detected_ms_median'])} ms)")
    print(f"  video freeze [2]: worst {_text(r['video_freeze_ms_worst'])} ms (goal <= "
          f"{FREEZE_GOAL_MS} ms: {verdict('video_freeze_ms')}); without a cut the longest "
          f"gap was {_text(r['steady_gap_ms_worst'])} ms, around the failbacks "
          f"{_text(r['failback_freeze_ms_worst'])} ms")
    print(f"  WHEP session: {'the same one throughout' if r['session_survived'] else 'LOST'} "
          f"(goal: every time: {verdict('session_survived')}); "
          f"{r['frames_decoded']} frames decoded, {r['stream_switches']} stream switch(es)")
    for problem in r["session_problems"]:
        print(f"    {problem}")
    print(f"  telemetry: {r['udp_lost']} of {r['udp_sent']} datagrams lost; the first sent "
          f"after the cut arrived: median {_text(r['udp_resumed_ms_median'])} ms, worst "
          f"{_text(r['udp_resumed_ms_worst'])} ms")
    print(f"  the centre saw the vehicle's tunnel come from: {' -> '.join(r['centre_saw'])}")
    print("  [1] from the cut to the first WireGuard packet from the vehicle on the centre's\n"
          "      interface of the other WAN (a packet socket in the centre's namespace)\n"
          "  [2] the longest time between two frames the viewer decoded, over the gaps that\n"
          "      reach into the outage")


def _text(value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.0f}"
    return str(value)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "failover", help="a WHEP session and telemetry through the tunnel while its WAN is cut",
        description="In the link emulator's world (root): the vehicle's links service, "
                    "camera and uplink, edge centre and an aiortc WHEP viewer in the "
                    "centre; the WAN carrying the tunnel is cut N times. Measures the "
                    "failover, the video freeze, telemetry lost and whether the session "
                    "survives. A table, then one JSON line.")
    p.add_argument("--repeats", type=int, default=5, help="cuts (default 5)")
    p.add_argument("--cut-after", type=float, default=3.0, metavar="S",
                   help="seconds of steady session before each cut (default 3)")
    p.add_argument("--outage", type=float, default=3.0, metavar="S",
                   help="how long the cut WAN stays down (default 3)")
    p.add_argument("--profile-a", choices=tuple(PROFILES), default="lte",
                   help="the preferred WAN, lte (default lte)")
    p.add_argument("--profile-b", choices=tuple(PROFILES), default="lte",
                   help="the other WAN, sat (default lte: a second 4G; geo for a "
                        "geostationary satellite)")
    p.add_argument("--stream", choices=("main", "sub", "auto"), default="sub",
                   help="what the viewer asks for (default sub: 640x360, the cheapest to "
                        "decode on a shared machine)")
    p.set_defaults(func=cmd_bench_failover)


def cmd_bench_failover(args: argparse.Namespace) -> int:
    from edge.cli import OperatorError

    if args.repeats < 1:
        raise OperatorError(f"--repeats must be at least 1, got {args.repeats}")
    if not args.cut_after > 0:
        raise OperatorError(f"--cut-after must be more than 0, got {args.cut_after:g}")
    if not args.outage >= 1:
        raise OperatorError(f"--outage must be at least 1 s (the links service needs "
                            f"{DOWN_AFTER_MS} ms to call a WAN down), got {args.outage:g}")
    # Imported here: the emulator needs pyroute2, which the rest of `edge` never loads.
    from edge.bench.failover_world import cannot_build

    if (why := cannot_build()) is not None:
        print(f"edge: bench failover: {why}", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(run(args.repeats, args.cut_after, args.outage, args.profile_a,
                                 args.profile_b, args.stream))
    except RuntimeError as e:
        raise OperatorError(str(e)) from None
    except OSError as e:
        raise OperatorError(f"cannot build the emulated network: {e.strerror or e}") from None
    print_table(result)
    print(json.dumps(result))
    return 0
