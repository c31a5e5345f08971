"""A session's debrief as one self-contained HTML page.

**What is on it.** The session's time range and what was recorded; a timeline (an SVG
bar) and a table of the commander's marks, the alerts and the drone commands with
their answers; under each mark, one thumbnail per camera (the keyframe at or before the
mark); the drones' tracks as an SVG plot of their telemetry positions (metres east and
north of a common origin, no map); and the outages of the WAN links (``link/<id>/status``
not ``up``) and of the drones (``drone/<id>/status`` ``lost``).

**Where it comes from.** Marks from the catalog (their time is when they were made);
alerts, positions and link states from the bus log; commands from the links' MAVLink
logs (:mod:`edge.export.commands` says why not the bus).

**Self-contained.** Inline CSS, inline SVG, thumbnails as ``data:`` URIs, no script;
its Content-Security-Policy forbids fetching anything, so a browser opening it makes no
request beyond the file itself.
"""

from __future__ import annotations

import base64
import contextlib
import html
import math
import os
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from edge.bus import topics
from edge.bus.envelope import MalformedFrame, decode
from edge.bus.messages import Alert, DroneStatus, DroneTelemetry, LinkStatus
from edge.export import Progress, no_progress
from edge.export.commands import Command, link_commands, links
from edge.export.thumbnail import ThumbnailError, keyframe_jpeg
from edge.export.times import clock, local_iso
from edge.recorder import bus_log
from edge.recorder.catalog import Catalog, Mark, Session

_SEVERE = {"warning": "#c77c00", "error": "#c62828", "critical": "#b71c1c",
           "alert": "#b71c1c", "emergency": "#b71c1c"}
_COLOURS = ["#1565c0", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#ad1457"]
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


@dataclass(slots=True)
class Outage:
    what: str  # link/<id> or drone/<id>
    start_ns: int
    end_ns: int | None  # None: still out when the session ended
    state: str


@dataclass(slots=True)
class Collected:
    alerts: list[tuple[int, Alert]] = field(default_factory=list)
    tracks: dict[str, list[tuple[int, float, float]]] = field(default_factory=dict)
    outages: list[Outage] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    messages: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ReportResult:
    path: Path
    session_id: int
    name: str
    marks: int
    alerts: int
    commands: int
    thumbnails: int
    drones: int
    outages: int
    bytes: int
    problems: tuple[str, ...]

    def json(self) -> dict[str, object]:
        return {"path": str(self.path), "session_id": self.session_id, "name": self.name,
                "marks": self.marks, "alerts": self.alerts, "commands": self.commands,
                "thumbnails": self.thumbnails, "drones": self.drones,
                "outages": self.outages, "bytes": self.bytes, "problems": list(self.problems)}


def collect(cat: Catalog, root: Path, start_ns: int, end_ns: int,
            progress: Progress = no_progress) -> Collected:
    """Alerts, positions and outages from the bus log; commands from the MAVLink logs."""
    got = Collected()
    down: dict[str, Outage] = {}
    logs = cat.bus_logs(start_ns=start_ns, end_ns=end_ns)
    for i, row in enumerate(logs):
        try:
            for m in bus_log.read(row.path, start_ns=start_ns, end_ns=end_ns):
                _take(m, got, down)
        except bus_log.BusLogError as e:
            got.problems.append(str(e))
        progress(0.5 * (i + 1) / max(1, len(logs)), f"bus log {i + 1}/{len(logs)}")
    got.outages.extend(down.values())
    got.outages.sort(key=lambda o: o.start_ns)
    for link in links(root):
        try:
            got.commands += link_commands(root, link, start_ns, end_ns)
        except OSError as e:
            got.problems.append(f"MAVLink log of {link}: {e.strerror or e}")
    got.commands.sort(key=lambda c: c.time_ns)
    return got


def _take(m: bus_log.LoggedMessage, got: Collected, down: dict[str, Outage]) -> None:
    topic = m.topic
    if not (topic.startswith((topics.ALERT, topics.LINK))
            or (topic.startswith(topics.DRONE) and topic.endswith(("/telemetry", "/status")))):
        return
    try:
        msg = decode(m.frames).message
    except MalformedFrame:
        return
    got.messages += 1
    t = m.log_time_ns
    if isinstance(msg, Alert):
        got.alerts.append((t, msg))
    elif isinstance(msg, DroneTelemetry):
        if msg.lat is not None and msg.lon is not None and math.isfinite(msg.lat + msg.lon):
            did = msg.drone_id or topic.split("/")[1]
            got.tracks.setdefault(did, []).append((t, msg.lat, msg.lon))
    elif isinstance(msg, LinkStatus | DroneStatus):
        if isinstance(msg, LinkStatus):
            what, bad = f"link {msg.link_id or topic.split('/')[1]}", msg.state not in (
                "up", "unknown")
        else:
            what, bad = f"drone {msg.drone_id or topic.split('/')[1]}", msg.state == "lost"
        open_ = down.get(what)
        if bad and open_ is None:
            down[what] = Outage(what, t, None, msg.state)
        elif not bad and open_ is not None:
            open_.end_ns = t
            got.outages.append(down.pop(what))


def thumbnails(cat: Catalog, marks: list[Mark], cameras: list[tuple[str, str]],
               progress: Progress = no_progress) -> dict[tuple[int, str], bytes | str]:
    """(mark id, camera) -> JPEG, or why there is none."""
    jobs: dict[tuple[int, str], Future[bytes]] = {}
    found: dict[tuple[int, str], bytes | str] = {}
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="thumb") as pool:
        for mark in marks:
            for camera, stream in cameras:
                segs = cat.segments(camera, stream, start_ns=mark.wall_ns,
                                    end_ns=mark.wall_ns + 1)
                if not segs:
                    found[(mark.id, camera)] = "not recorded at that moment"
                    continue
                seg = segs[-1]
                keys = [k for k in cat.keyframes(seg.id) if k.wall_ns <= mark.wall_ns]
                if not keys:
                    keys = cat.keyframes(seg.id)[:1]
                if not keys:
                    found[(mark.id, camera)] = "no keyframe indexed"
                    continue
                jobs[(mark.id, camera)] = pool.submit(keyframe_jpeg, seg, keys[-1])
        for i, (key, job) in enumerate(jobs.items()):
            try:
                found[key] = job.result()
            except ThumbnailError as e:
                found[key] = f"cannot decode: {e}"
            progress(0.5 + 0.45 * (i + 1) / len(jobs), f"thumbnail {i + 1}/{len(jobs)}")
    return found


def export_report(cat: Catalog, root: Path, session: Session, out: Path, *, now_ns: int,
                  progress: Progress = no_progress) -> ReportResult:
    start = session.start_ns
    end = session.end_ns if session.end_ns is not None else now_ns
    got = collect(cat, root, start, end, progress)
    marks = cat.marks(session_id=session.id)
    streams = {c: s for c, s in cat.streams()}
    # One stream a camera: the sub stream when recorded (smaller to decode), else main.
    cameras = sorted({(c, "sub" if (c, "sub") in cat.streams() else s) for c, s in
                      streams.items() if cat.segments(c, start_ns=start, end_ns=end)})
    thumbs = thumbnails(cat, marks, cameras, progress)
    page = render(session, start, end, marks, got, cameras, thumbs, cat, now_ns)
    tmp = out.with_name(f".{out.name}.part")
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    progress(1.0, "written")
    return ReportResult(out, session.id, session.name, len(marks), len(got.alerts),
                        len(got.commands), sum(isinstance(v, bytes) for v in thumbs.values()),
                        len(got.tracks), len(got.outages), out.stat().st_size,
                        tuple(got.problems))


# ----------------------------------------------------------------------------- the page

def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _x(t: int, start: int, end: int, width: float) -> float:
    return round(width * (t - start) / max(1, end - start), 1)


def timeline_svg(start: int, end: int, marks: list[Mark], got: Collected) -> str:
    w, left, h = 900.0, 10.0, 120
    parts = [f'<svg class="timeline" viewBox="0 0 {w + 2 * left:g} {h}" '
             f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="timeline">',
             f'<rect x="{left}" y="40" width="{w}" height="30" fill="#eceff1"/>']
    for o in got.outages:
        a = _x(max(o.start_ns, start), start, end, w) + left
        b = _x(min(o.end_ns or end, end), start, end, w) + left
        parts.append(f'<rect x="{a}" y="40" width="{max(1.0, b - a):.1f}" height="30" '
                     f'fill="#ef9a9a"><title>{_e(o.what)} {_e(o.state)}</title></rect>')
    steps = 6
    for i in range(steps + 1):
        t = start + (end - start) * i // steps
        x = _x(t, start, end, w) + left
        anchor = "start" if i == 0 else ("end" if i == steps else "middle")
        parts.append(f'<line x1="{x}" y1="70" x2="{x}" y2="76" stroke="#546e7a"/>'
                     f'<text x="{x}" y="90" font-size="11" text-anchor="{anchor}">'
                     f'{clock(t)[:8]}</text>')
    for t, alert in got.alerts:
        x = _x(t, start, end, w) + left
        parts.append(f'<line x1="{x}" y1="44" x2="{x}" y2="66" stroke-width="2" '
                     f'stroke="{_SEVERE.get(alert.severity, "#78909c")}"><title>{clock(t)} '
                     f'{_e(alert.severity)}: {_e(alert.text)}</title></line>')
    for c in got.commands:
        x = _x(c.time_ns, start, end, w) + left
        parts.append(f'<path d="M{x} 72 l-5 10 h10 z" fill="#6a1b9a"><title>'
                     f'{clock(c.time_ns)} {_e(c.drone_id)} {_e(c.name)}</title></path>')
    for n, m in enumerate(marks, 1):
        x = _x(m.wall_ns, start, end, w) + left
        parts.append(f'<path d="M{x} 38 l-6 -12 h12 z" fill="#1565c0"/><text x="{x}" y="20" '
                     f'font-size="11" text-anchor="middle">{n}<title>{_e(m.note)}</title>'
                     f'</text>')
    parts.append("</svg>")
    return "".join(parts)


def tracks_svg(tracks: dict[str, list[tuple[int, float, float]]]) -> str:
    points = [(lat, lon) for track in tracks.values() for _, lat, lon in track]
    if not points:
        return '<p class="none">No drone position was recorded.</p>'
    lat0 = sum(p[0] for p in points) / len(points)
    lon0 = sum(p[1] for p in points) / len(points)
    kx = 111_320.0 * math.cos(math.radians(lat0))  # metres per degree, flat earth nearby
    ky = 110_540.0

    def xy(lat: float, lon: float) -> tuple[float, float]:
        return (lon - lon0) * kx, (lat - lat0) * ky

    xs, ys = zip(*(xy(*p) for p in points), strict=True)
    span = max(max(xs) - min(xs), max(ys) - min(ys), 20.0)
    size, pad = 500.0, 30.0
    scale = (size - 2 * pad) / span
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2

    def px(lat: float, lon: float) -> str:
        x, y = xy(lat, lon)
        return f"{size / 2 + (x - cx) * scale:.1f},{size / 2 - (y - cy) * scale:.1f}"

    bar = 10 ** math.floor(math.log10(span / 3))
    parts = [f'<svg class="tracks" viewBox="0 0 {size:g} {size:g}" '
             'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="drone tracks">',
             f'<rect width="{size:g}" height="{size:g}" fill="#fafafa" stroke="#cfd8dc"/>',
             f'<line x1="{pad}" y1="{size - 12}" x2="{pad + bar * scale:.1f}" y2="{size - 12}" '
             f'stroke="#37474f" stroke-width="2"/><text x="{pad}" y="{size - 16}" '
             f'font-size="11">{bar:g} m</text>',
             f'<text x="{size - pad}" y="{pad}" font-size="13" text-anchor="end">N ↑</text>']
    legend = []
    for i, (did, track) in enumerate(sorted(tracks.items())):
        colour = _COLOURS[i % len(_COLOURS)]
        line = " ".join(px(lat, lon) for _, lat, lon in track)
        first, last = px(*track[0][1:]), px(*track[-1][1:])
        parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}" '
                     f'stroke-width="2"><title>{_e(did)}</title></polyline>')
        fx, fy = first.split(",")
        lx, ly = last.split(",")
        parts.append(f'<circle cx="{fx}" cy="{fy}" r="4" fill="{colour}"/>'
                     f'<rect x="{float(lx) - 4:.1f}" y="{float(ly) - 4:.1f}" width="8" '
                     f'height="8" fill="{colour}"/>')
        legend.append(f'<li><span class="swatch" style="background:{colour}"></span>'
                      f'{_e(did)}: {len(track)} positions, {clock(track[0][0])} to '
                      f'{clock(track[-1][0])}</li>')
    parts.append("</svg>")
    return ("".join(parts) + f'<ul class="legend">{"".join(legend)}</ul>'
            f'<p class="note">Metres east and north around {lat0:.5f}, {lon0:.5f}; ● start, '
            '■ end.</p>')


def _rows(marks: list[Mark], got: Collected) -> list[tuple[int, str, str, str]]:
    rows = [(m.wall_ns, "mark", f"#{n} {m.note}", m.author) for n, m in enumerate(marks, 1)]
    rows += [(t, f"alert {a.severity}", a.text, a.source) for t, a in got.alerts]
    for c in got.commands:
        answer = (f"{c.result} after {(c.reply_ns - c.time_ns) / 1e6:.1f} ms"
                  if c.reply_ns is not None else "no answer")
        tries = f", {c.attempts} attempts" if c.attempts > 1 else ""
        rows.append((c.time_ns, "command", f"{c.drone_id} {c.name} ({c.params})",
                     f"{answer}{tries}"))
    return sorted(rows, key=lambda r: r[0])


def _table(head: Iterable[str], rows: Iterable[Iterable[str]], cls: str = "") -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def render(session: Session, start: int, end: int, marks: list[Mark], got: Collected,
           cameras: list[tuple[str, str]], thumbs: dict[tuple[int, str], bytes | str],
           cat: Catalog, now_ns: int) -> str:
    minutes = (end - start) / 60e9
    rows = _rows(marks, got)
    events = _table(["time", "what", "", ""], (
        [clock(t), _e(kind), _e(what), _e(detail)] for t, kind, what, detail in rows),
        "events") if rows else '<p class="none">No mark, alert or command.</p>'
    shots = []
    for n, m in enumerate(marks, 1):
        cells = []
        for camera, stream in cameras:
            thumb = thumbs.get((m.id, camera), "")
            if isinstance(thumb, bytes):
                uri = "data:image/jpeg;base64," + base64.b64encode(thumb).decode()
                img = f'<img alt="{_e(camera)} at mark {n}" src="{uri}">'
            else:
                img = f'<div class="nothumb">{_e(thumb or "no picture")}</div>'
            cells.append(f"<figure>{img}<figcaption>{_e(camera)}/{_e(stream)}</figcaption>"
                         "</figure>")
        who = f" ({_e(m.author)})" if m.author else ""
        shots.append(f'<section class="mark"><h3>#{n} {clock(m.wall_ns)} {_e(m.note)}{who}'
                     f'</h3><div class="thumbs">{"".join(cells) or "no camera"}</div>'
                     "</section>")
    outages = _table(["what", "state", "from", "to", "lasted"], (
        [_e(o.what), _e(o.state), clock(o.start_ns),
         clock(o.end_ns) if o.end_ns is not None else "end of session",
         f"{((o.end_ns or end) - o.start_ns) / 1e9:.1f} s"] for o in got.outages),
        "outages") if got.outages else '<p class="none">No link or drone outage.</p>'
    recorded = []
    for c, s in cameras:
        frames = sum(x.frames for x in cat.segments(c, s, start_ns=start, end_ns=end))
        recorded.append(f"{_e(c)}/{_e(s)}: {frames} frames")
    problems = "".join(f"<li>{_e(p)}</li>" for p in got.problems)
    state = "open (the report ends now)" if session.open else "closed"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Debrief: {_e(session.name)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 1000px;
       color: #263238; padding: 0 1em; }}
h1 {{ font-size: 1.5em; margin-bottom: 0.2em; }} h2 {{ border-bottom: 1px solid #cfd8dc; }}
.meta, .note, .none {{ color: #607d8b; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ text-align: left; padding: 3px 8px; border-bottom: 1px solid #eceff1;
         vertical-align: top; }}
td:first-child {{ font-variant-numeric: tabular-nums; white-space: nowrap; }}
svg.timeline {{ width: 100%; height: auto; }} svg.tracks {{ width: 500px; max-width: 100%; }}
.thumbs {{ display: flex; flex-wrap: wrap; gap: 8px; }}
figure {{ margin: 0; }} figcaption {{ font-size: 12px; color: #607d8b; }}
.nothumb {{ width: 240px; height: 135px; background: #eceff1; display: flex;
           align-items: center; justify-content: center; font-size: 12px; }}
.legend {{ list-style: none; padding: 0; }}
.swatch {{ display: inline-block; width: 12px; height: 12px; margin-right: 6px; }}
.problems {{ color: #c62828; }}
</style></head><body>
<h1>Debrief: {_e(session.name)}</h1>
<p class="meta">Session {session.id}, {local_iso(start)} to {local_iso(end)}
({minutes:.1f} min, {state}). {len(marks)} mark(s), {len(got.alerts)} alert(s),
{len(got.commands)} drone command(s). Report made {local_iso(now_ns)}.</p>
<p class="meta">Video: {"; ".join(recorded) or "no camera recorded"}.</p>
{f'<ul class="problems">{problems}</ul>' if problems else ""}
<h2>Timeline</h2>
{timeline_svg(start, end, marks, got)}
<p class="note">▼ marks (numbered), | alerts (colour by severity), ▲ drone commands,
red bands: outages.</p>
{events}
<p class="note">Drone commands and their answers are read from the drones' MAVLink logs
(bus requests are not in the bus log).</p>
<h2>Marks</h2>
{"".join(shots) or '<p class="none">No mark in this session.</p>'}
<h2>Drone tracks</h2>
{tracks_svg(got.tracks)}
<h2>Outages</h2>
{outages}
</body></html>
"""
