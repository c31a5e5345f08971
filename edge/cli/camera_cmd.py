"""`edge camera probe URL`: what a technician runs on scene to check a camera URL."""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import asdict


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("camera", help="camera tools")
    csub = p.add_subparsers(dest="camera_command", metavar="ACTION", required=True)
    probe = csub.add_parser(
        "probe", help="connect to an RTSP source and describe its stream",
        description="Connect to any RTSP source, read it for a few seconds without decoding, "
                    "and print codec, profile, level, resolution, frame rate, bitrate, GOP and "
                    "time to first keyframe. The last line is JSON. Exit 1 with a one-line "
                    "reason when the source cannot be read.")
    probe.add_argument("url", metavar="URL", help="rtsp://[user:password@]host[:port]/path")
    probe.add_argument("--seconds", type=float, default=3.0, help="how long to read (default 3)")
    probe.add_argument("--transport", choices=("tcp", "udp"), default="tcp")
    probe.set_defaults(func=cmd_probe)


def cmd_probe(args: argparse.Namespace) -> int:
    from drivers.rtsp.demux import redact_url
    from drivers.rtsp.errors import ProbeError
    from drivers.rtsp.probe import probe
    from edge.cli import OperatorError
    from edge.config.addresses import check_rtsp_url

    try:
        check_rtsp_url(args.url)  # the same rules as a camera URL in the config
    except ValueError as e:
        raise OperatorError(str(e)) from None
    try:
        r = asyncio.run(probe(args.url, args.seconds, args.transport))
    except ProbeError as e:
        raise OperatorError(f"{redact_url(args.url)}: {e}") from None
    rows = [("codec", r.codec), ("profile", r.profile), ("level", r.level),
            ("resolution", f"{r.width}x{r.height}"),
            ("frame rate", f"{r.fps:.2f} fps" if r.fps else "unknown"),
            ("bitrate", f"{r.kbps:.0f} kbit/s"),
            ("GOP", f"{r.gop} frames" if r.gop else "unknown (one keyframe seen)"),
            ("first keyframe", f"{r.first_keyframe_ms:.0f} ms after connecting"),
            ("transport", r.transport)]
    for name, value in rows:
        print(f"{name:>15}  {value}")
    out = asdict(r)
    out["url"] = redact_url(r.url)
    print(json.dumps(out))
    return 0
