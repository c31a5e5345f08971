"""`edge camera probe URL`: what a technician runs on scene to check a camera URL.

`edge camera discover`: which ONVIF cameras are on the vehicle's LAN (WS-Discovery),
and with `--credentials-file` their profiles and stream URIs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import asdict, dataclass


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
    discover = csub.add_parser(
        "discover", help="find ONVIF cameras on the LAN (WS-Discovery)",
        description="Send a WS-Discovery probe for ONVIF cameras and list those that answer: "
                    "address, name, hardware and device service URLs (XAddrs). With "
                    "--credentials-file, also log in to each and list its profiles and RTSP "
                    "stream URIs. The last line is JSON.")
    discover.add_argument("--timeout", type=float, default=3.0, metavar="S",
                          help="how long to collect answers (default 3)")
    discover.add_argument("--address", action="append", default=[], metavar="HOST:PORT",
                          help="probe this address instead of the multicast group "
                               "239.255.255.250:3702 (repeatable)")
    discover.add_argument("--interface", metavar="ADDR",
                          help="the local IPv4 address whose network the multicast probe "
                               "goes out on (default: as the routes say)")
    discover.add_argument("--credentials-file", metavar="PATH",
                          help='a file holding "user:password" for the cameras')
    discover.set_defaults(func=cmd_discover)


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


def cmd_discover(args: argparse.Namespace) -> int:
    from drivers.onvif.discovery import Device, DiscoveryError, discover
    from edge.cli import OperatorError
    from edge.config.addresses import check_host_port

    if not 0 < args.timeout <= 600:
        raise OperatorError(f"--timeout {args.timeout:g}: expected seconds in (0, 600]")
    targets: list[tuple[str, int]] = []
    for value in args.address:
        try:
            check_host_port(value, ipv6=False)
        except ValueError as e:
            raise OperatorError(f"--address: {e}") from None
        host, _, port = value.rpartition(":")
        targets.append((host, int(port)))
    credentials = _read_credentials(args.credentials_file) if args.credentials_file else None

    async def run() -> tuple[list[Device], list[_Streams | None]]:
        found = await discover(args.timeout, targets or None, interface=args.interface)
        # One event loop for all: onvif-zeep-async keeps loop-bound state between cameras.
        return found, [None if credentials is None
                       else await _streams_of(d.xaddrs[0], credentials) for d in found]

    try:
        devices, streams_of = asyncio.run(run())
    except (DiscoveryError, OSError) as e:
        raise OperatorError(str(e)) from None
    found = [d.as_dict() for d in devices]
    if not devices:
        print(f"no ONVIF device answered within {args.timeout:g} s")
    for entry, device, streams in zip(found, devices, streams_of, strict=True):
        print(f"{device.address:<15}  {device.name or '-'}  ({device.hardware or '-'})")
        for xaddr in device.xaddrs:
            print(f"{'':15}  device service {xaddr}")
        if streams is None:
            continue
        for p in streams.profiles:
            size = f"{p['width']}x{p['height']}" if p["width"] else "no video"
            print(f"{'':15}  profile {p['token']} {p['encoding'] or ''} {size}  "
                  f"{p['uri'] or p['error']}")
        if streams.error:
            print(f"{'':15}  {streams.error}")
        entry.update(profiles=streams.profiles, error=streams.error)
    print(json.dumps({"devices": found}))
    return 0


def _read_credentials(path: str) -> str:
    from pathlib import Path

    from edge.cli import OperatorError

    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise OperatorError(f"--credentials-file {path}: {reason}") from None
    first = lines[0].strip() if lines else ""
    if ":" not in first:
        raise OperatorError(f'--credentials-file {path}: expected "user:password"')
    return first


@dataclass
class _Streams:
    profiles: list[dict[str, object]]
    error: str | None


async def _streams_of(xaddr: str, credentials: str) -> _Streams:
    """Each profile with its RTSP `uri` (or the `error` asking for it), or why none."""
    from drivers.onvif.client import OnvifClient
    from drivers.onvif.errors import OnvifError
    from drivers.rtsp.demux import redact_url

    profiles: list[dict[str, object]] = []
    try:
        async with OnvifClient(xaddr, credentials) as client:
            for p in await client.profiles():
                uri, error = None, None
                try:
                    uri = await client.stream_uri(p.token) if p.encoding else None
                except OnvifError as e:
                    error = str(e)
                profiles.append({"token": p.token, "name": p.name, "encoding": p.encoding,
                                 "width": p.width, "height": p.height,
                                 "uri": redact_url(uri) if uri else None,
                                 "error": error})
    except OnvifError as e:
        return _Streams(profiles, str(e))
    return _Streams(profiles, None)
