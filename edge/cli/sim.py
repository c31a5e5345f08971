"""`edge sim ...`: simulated devices, each a real protocol server.

`edge demo` starts these beside the services (see ``simulator_children`` in
:mod:`edge.runtime.supervisor`, which passes exactly the flags defined here): all its
cameras in one `edge sim cameras`, all its drones in one `edge sim drones`. Each runs
until SIGTERM or SIGINT and then exits 0.

`edge sim cameras` and `edge sim drones` take several devices as groups of the flags
`edge sim camera` and `edge sim drone` take for one, each group opened by `--name` or
`--connection`, checked by the same code. Not a `--config FILE` with a `[demo]` section:
a simulator runnable only from a vehicle config would be of no use to tests, benches or
a hand on a laptop, and the supervisor already decides what each simulator gets (secret
files' paths resolved against the config, ONVIF only where installed); nor would a
simulator need the config's schema (pydantic, 20 MB of a process) once `edge.cli.main`
stops importing it for every command. Not one `NAME:PORT:...` string a device: paths,
`tcp:HOST:PORT` connections and URLs all hold colons.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from edge.runtime.logs import setup_logging

if TYPE_CHECKING:
    from drivers.sim.camera import CameraSpec
    from drivers.sim.drone import DroneSpec
    from drivers.sim.link.profile import LinkProfile


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sim", help="simulated devices for the demo and tests")
    sim_sub = p.add_subparsers(dest="sim", metavar="DEVICE", required=True)
    register_drone(sim_sub)
    register_drones(sim_sub)
    register_camera(sim_sub)
    register_cameras(sim_sub)
    register_link(sim_sub)
    register_gb28181(sim_sub)


# --- edge sim camera --------------------------------------------------------
def register_camera(sim_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sim_sub.add_parser(
        "camera", help="a simulated 5G dome camera: a real RTSP server",
        description="A simulated dome camera serving rtsp://HOST:PORT/NAME/main (1280x720) and "
                    "/NAME/sub (640x360), H.264 or H.265, over TCP or UDP. Runs until SIGTERM "
                    "or Ctrl-C.")
    _camera_flags(p.add_argument)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--live", action="store_true",
                   help="encode in real time, with live timestamp blocks (costs a core)")
    p.set_defaults(func=cmd_sim_camera)


def _camera_flags(add: Callable[..., object]) -> None:
    """The flags of one camera: `edge sim camera`'s, and each group of `edge sim cameras`."""
    add("--name", required=True, help="camera name: the first path segment")
    add("--port", type=int, default=8554, help="RTSP port (default 8554)")
    add("--codec", choices=("h264", "h265"), default="h264")
    add("--profile", choices=("baseline", "main", "high"), default="baseline")
    add("--user", help="require RTSP authentication with this user")
    add("--password", help="... and this password")
    add("--onvif", type=int, default=None, metavar="PORT",
        help="also be an ONVIF PTZ camera: Device, Media and PTZ services on this "
             "HTTP port (PTZ moves the picture) and a WS-Discovery responder")
    add("--onvif-user", help="ONVIF (WS-UsernameToken) user; RTSP then asks for "
                             "the same user and password unless --user is given")
    add("--onvif-password-file", help="read the ONVIF user's password from this file")
    add("--onvif-credentials-file", metavar="FILE",
        help="read the ONVIF user and password from this file as \"user:password\" "
             "(a camera's `credentials` file) instead of the two flags above")
    add("--discovery-port", type=int, default=3702, metavar="PORT",
        help="WS-Discovery UDP port with --onvif (default 3702; 0: no responder)")


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


class _DeviceFlag(argparse.Action):
    """A flag of one `kind` of device among several: `opener` starts a new device, the
    other flags set the latest one's (`--name a --port 1 --name b --port 2`)."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, opener: str, kind: str,
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.opener = opener
        self.kind = kind

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        devices: list[dict[str, Any]] | None = getattr(namespace, "devices", None)
        if devices is None:
            devices = namespace.devices = []
        if option_string == self.opener:
            devices.append({})
        elif not devices:
            parser.error(f"{option_string} is a {self.kind}'s: give {self.opener} first, "
                         f"then that {self.kind}'s flags")
        device = devices[-1]
        if self.dest in device:
            parser.error(f"{option_string} given twice for {self.kind} "
                         f"{device[_dest(self.opener)]}")
        device[self.dest] = values


def _grouped(p: argparse.ArgumentParser, opener: str, kind: str,
             defaults: dict[str, Any]) -> Callable[..., object]:
    """An `add_argument` for the flags of a `kind` of device that `opener` opens; each
    flag's default goes to `defaults`, for every device that does not give the flag."""

    def add(*names: str, required: bool = False, default: Any = None, **kwargs: Any) -> object:
        defaults[_dest(names[0])] = default
        return p.add_argument(*names, action=_DeviceFlag, default=argparse.SUPPRESS,
                              opener=opener, kind=kind, **kwargs)

    return add


def _devices(args: argparse.Namespace, what: str) -> list[argparse.Namespace]:
    """Each device's flags (with their defaults) as `edge sim camera` or `drone` has them."""
    from edge.cli import OperatorError

    if not getattr(args, "devices", None):
        raise OperatorError(f"sim {what}: give at least one {args.device_opener} and its "
                            "flags")
    shared = {k: v for k, v in vars(args).items()
              if k not in ("devices", "device_defaults", "device_opener", "func")}
    return [argparse.Namespace(**{**shared, **args.device_defaults, **device})
            for device in args.devices]


def register_cameras(sim_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sim_sub.add_parser(
        "cameras", help="several simulated dome cameras in one process (the demo's)",
        description="Simulated dome cameras in one process: each --name starts a camera, "
                    "and the flags after it, as `edge sim camera` takes them, are that "
                    "camera's. A camera that cannot listen is one error line and is tried "
                    "again while the others serve; if none can, it exits 1. Runs until "
                    "SIGTERM or Ctrl-C.")
    defaults: dict[str, Any] = {}
    _camera_flags(_grouped(p, "--name", "camera", defaults))
    p.add_argument("--host", default="127.0.0.1", help="address every camera listens on")
    p.add_argument("--live", action="store_true",
                   help="every camera encodes in real time (costs a core each)")
    p.set_defaults(func=cmd_sim_cameras, devices=None, device_defaults=defaults,
                   device_opener="--name")


def _read_password_file(flag: str, path: str) -> str:
    from edge.cli import OperatorError

    try:
        with open(path, encoding="utf-8") as f:
            password = f.read().strip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else "not UTF-8 text"
        raise OperatorError(f"{flag} {path}: {why}") from None
    if not password:
        raise OperatorError(f"{flag} {path} is empty")
    return password


def _check_port(args: argparse.Namespace) -> None:
    from edge.cli import OperatorError

    if not 1 <= args.port <= 65535:
        raise OperatorError(f"--port must be 1..65535, got {args.port}")


def cmd_sim_camera(args: argparse.Namespace) -> int:
    from drivers.sim.camera import run_sim_camera
    from edge.cli import OperatorError

    _check_port(args)
    onvif_options = _onvif_options(args)
    listening = f"{args.host}:{args.port}"
    if args.onvif is not None:
        listening += f" and {args.host}:{args.onvif}"
    setup_logging(f"sim-camera@{args.name}")
    options: dict[str, Any] = {"codec": args.codec, "profile": args.profile, "live": args.live}
    if args.user is not None:
        options.update(user=args.user, password=args.password)
    try:
        if onvif_options is None:
            run_until_stopped(run_sim_camera(args.name, args.port, args.host, **options))
        else:
            from drivers.sim.onvif import run_sim_onvif_camera

            run_until_stopped(run_sim_onvif_camera(args.name, args.port, args.host,
                                                   **onvif_options, **options))
    except ValueError as e:
        raise OperatorError(str(e)) from None
    except OSError as e:
        raise OperatorError(f"cannot listen on {listening}: {e.strerror or e}") from None
    return 0


def _onvif_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """`run_sim_onvif_camera`'s ONVIF arguments from the flags; None without --onvif."""
    from edge.cli import OperatorError

    if args.onvif is None:
        if args.onvif_user is not None or args.onvif_password_file is not None \
                or args.onvif_credentials_file is not None:
            raise OperatorError("--onvif-user, --onvif-password-file and "
                                "--onvif-credentials-file need --onvif PORT")
        return None
    if not 1 <= args.onvif <= 65535:
        raise OperatorError(f"--onvif must be a port 1..65535, got {args.onvif}")
    if args.onvif == args.port:
        raise OperatorError(f"--onvif {args.onvif} is the RTSP --port: give another")
    if not 0 <= args.discovery_port <= 65535:
        raise OperatorError(f"--discovery-port must be 0..65535, got {args.discovery_port}")
    if (args.onvif_user is None) != (args.onvif_password_file is None):
        raise OperatorError("--onvif-user and --onvif-password-file go together")
    user, password = args.onvif_user, None
    if args.onvif_credentials_file is not None:
        if args.onvif_user is not None:
            raise OperatorError("--onvif-credentials-file replaces --onvif-user and "
                                "--onvif-password-file: give one or the other")
        text = _read_password_file("--onvif-credentials-file", args.onvif_credentials_file)
        user, sep, password = text.partition(":")
        if not sep or not user or not password:
            raise OperatorError(f"--onvif-credentials-file {args.onvif_credentials_file}: "
                                'expected "user:password"')
    elif args.onvif_password_file is not None:
        password = _read_password_file("--onvif-password-file", args.onvif_password_file)
    return {"onvif_port": args.onvif, "onvif_user": user,
            "onvif_password": password, "discovery_port": args.discovery_port or None}


def _camera_spec(args: argparse.Namespace) -> CameraSpec:
    """One camera of `edge sim cameras` from its flags (checked as `edge sim camera`'s)."""
    from drivers.sim.camera import CameraSpec

    _check_port(args)
    return CameraSpec(args.name, args.port, codec=args.codec, profile=args.profile,
                      user=args.user, password=args.password, **(_onvif_options(args) or {}))


def cmd_sim_cameras(args: argparse.Namespace) -> int:
    from drivers.sim.camera import run_sim_cameras
    from drivers.sim.device_host import NoneStarted
    from edge.cli import OperatorError

    specs: list[CameraSpec] = []
    ports: dict[int, str] = {}
    for device in _devices(args, "cameras"):
        try:
            spec = _camera_spec(device)
        except OperatorError as e:
            raise OperatorError(f"sim cameras: camera {device.name}: {e}") from None
        if any(s.name == spec.name for s in specs):
            raise OperatorError(f"sim cameras: two cameras named {spec.name}")
        for flag, port in (("--port", spec.port), ("--onvif", spec.onvif_port)):
            if port is None:
                continue
            if port in ports:
                raise OperatorError(f"sim cameras: camera {spec.name}: {flag} {port} is "
                                    f"{ports[port]} too")
            ports[port] = f"camera {spec.name}'s {flag}"
        specs.append(spec)
    setup_logging("sim-cameras")
    try:
        run_until_stopped(run_sim_cameras(specs, args.host, live=args.live))
    except NoneStarted as e:
        for problem in e.problems:
            print(f"edge: sim cameras: {problem}", file=sys.stderr)
        return 1
    return 0


# --- edge sim drone ---------------------------------------------------------
def _home(text: str) -> tuple[float, float]:
    lat_s, sep, lon_s = text.partition(",")
    try:
        lat, lon = float(lat_s), float(lon_s)
    except ValueError:
        lat = lon = float("nan")
    if not sep or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise argparse.ArgumentTypeError(f"expected LAT,LON in degrees, got {text!r}")
    return lat, lon


def register_drone(sim_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sim_sub.add_parser(
        "drone", help="a simulated ArduCopter (MAVLink 2) on a real socket",
        description="A simulated ArduCopter, flying a circle around home, that answers "
                    "MAVLink like the real autopilot. Runs until SIGTERM or Ctrl-C.")
    _drone_flags(p.add_argument)
    p.set_defaults(func=cmd_sim_drone)


def _drone_flags(add: Callable[..., object]) -> None:
    """The flags of one drone: `edge sim drone`'s, and each group of `edge sim drones`."""
    add("--connection", default="tcp:127.0.0.1:5760",
        help="seen from the vehicle: tcp:HOST:PORT listens (default "
             "tcp:127.0.0.1:5760), udpin:HOST:PORT binds, udpout:HOST:PORT sends")
    add("--home", type=_home, default=None, metavar="LAT,LON",
        help="home position (default: the simulator's)")
    add("--sysid", type=int, default=1, help="MAVLink system id, 1..254 (default 1)")
    add("--camera", metavar="RTSP_URL", default=None,
        help="announce a gimbal camera streaming at this rtsp:// URL")


def register_drones(sim_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sim_sub.add_parser(
        "drones", help="several simulated ArduCopters in one process (the demo's)",
        description="Simulated ArduCopters in one process: each --connection starts a "
                    "drone, and the flags after it, as `edge sim drone` takes them, are that "
                    "drone's. A drone whose link cannot be opened is one error line and is "
                    "tried again while the others fly; if none can, it exits 1. Runs until "
                    "SIGTERM or Ctrl-C.")
    defaults: dict[str, Any] = {}
    _drone_flags(_grouped(p, "--connection", "drone", defaults))
    p.set_defaults(func=cmd_sim_drones, devices=None, device_defaults=defaults,
                   device_opener="--connection")


def _drone_spec(args: argparse.Namespace) -> DroneSpec:
    from drivers.sim.drone import DEFAULT_HOME, DroneSpec
    from drivers.sim.drone.server import server_spec
    from edge.cli import OperatorError

    if not 1 <= args.sysid <= 254:
        raise OperatorError(f"--sysid must be 1..254, got {args.sysid}")
    if args.camera is not None and not args.camera.startswith(("rtsp://", "rtsps://")):
        raise OperatorError(f'--camera: expected an rtsp:// URL, got "{args.camera}"')
    try:
        server_spec(args.connection)
    except ValueError as e:
        raise OperatorError(str(e)) from None
    return DroneSpec(args.connection, args.sysid, args.home or DEFAULT_HOME, args.camera)


def cmd_sim_drone(args: argparse.Namespace) -> int:
    from drivers.sim.drone import run_sim_drone
    from edge.cli import OperatorError

    spec = _drone_spec(args)
    setup_logging(f"sim-drone@{args.sysid}")
    try:
        run_until_stopped(run_sim_drone(spec.connection, sysid=spec.sysid, home=spec.home,
                                        camera_rtsp_url=spec.camera_rtsp_url))
    except OSError as e:
        raise OperatorError(f"cannot open {args.connection}: {e.strerror or e}") from None
    return 0


def cmd_sim_drones(args: argparse.Namespace) -> int:
    from drivers.sim.device_host import NoneStarted
    from drivers.sim.drone import run_sim_drones
    from edge.cli import OperatorError

    specs: list[DroneSpec] = []
    for device in _devices(args, "drones"):
        try:
            spec = _drone_spec(device)
        except OperatorError as e:
            raise OperatorError(f"sim drones: drone on {device.connection}: {e}") from None
        if any(s.connection == spec.connection for s in specs):
            raise OperatorError(f"sim drones: two drones on {spec.connection}")
        specs.append(spec)
    setup_logging("sim-drones")
    try:
        run_until_stopped(run_sim_drones(specs))
    except NoneStarted as e:
        for problem in e.problems:
            print(f"edge: sim drones: {problem}", file=sys.stderr)
        return 1
    return 0


# --- edge sim link ----------------------------------------------------------
def _link_spec(text: str) -> tuple[str, LinkProfile]:
    from drivers.sim.link.profile import profile_named
    from drivers.sim.link.world import check_wan_name

    name, sep, profile = text.partition("=")
    if not sep:
        name = profile = text
    try:
        return check_wan_name(name), profile_named(profile)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def register_link(sim_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from drivers.sim.link.profile import PROFILES

    p = sim_sub.add_parser(
        "link", help="emulated WAN links (satellite, 4G) between two network namespaces",
        description="Creates a centre and a vehicle network namespace joined by one emulated "
                    "WAN per --profile (delay, rate, modem buffer, loss, outages), prints "
                    "them, relays until Ctrl-C, SIGTERM or --seconds, then prints a counters "
                    "table and one JSON line. Needs root and /dev/net/tun.")
    p.add_argument("--profile", dest="links", type=_link_spec, action="append", required=True,
                   metavar="[NAME=]PROFILE",
                   help=f"a link with this profile ({', '.join(PROFILES)}), named after it "
                        "or NAME; repeat for links side by side")
    p.add_argument("--script", action="append", default=[], metavar="EVENTS",
                   help="outages: '[LINK] down|stall at TIME for DURATION', separated by ';' "
                        "(e.g. 'lte down at 30s for 60s'); no LINK means every link")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long")
    p.add_argument("--seed", type=int, default=None, help="seed for loss and stalls")
    p.set_defaults(func=cmd_sim_link)


def cmd_sim_link(args: argparse.Namespace) -> int:
    from drivers.sim.link.runner import run_sim_link, with_script
    from drivers.sim.link.script import ScriptedOutage, parse_script
    from drivers.sim.link.world import preflight
    from edge.cli import OperatorError

    names = [name for name, _ in args.links]
    if len(set(names)) != len(names):
        raise OperatorError(f"--profile: two links named the same ({', '.join(names)}); "
                            "name them, e.g. --profile sat=geo --profile lte")
    if args.seconds is not None and not args.seconds > 0:
        raise OperatorError(f"--seconds must be more than 0, got {args.seconds:g}")
    script: list[ScriptedOutage] = []
    for text in args.script:
        try:
            script += parse_script(text, names)
        except ValueError as e:
            raise OperatorError(f"--script: {e}") from None
    if (why := preflight()) is not None:
        print(f"edge: sim link: {why}", file=sys.stderr)
        return 2
    try:
        run_until_stopped(run_sim_link(with_script(args.links, script), seconds=args.seconds,
                                       seed=args.seed))
    except OSError as e:
        raise OperatorError(f"cannot build the emulated network: {e.strerror or e}") from None
    return 0


# --- edge sim gb28181 ------------------------------------------------------
def register_gb28181(sim_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sim_sub.add_parser(
        "gb28181", help="a simulated GB/T 28181 device (5G dome camera) registering to a platform",
        description="A simulated GB/T 28181 dome camera: registers to the platform with digest "
                    "authentication, sends keepalives, answers Catalog (its channels), "
                    "DeviceInfo and DeviceStatus, streams PS over RTP (UDP or TCP) when "
                    "invited and moves its picture on PTZ commands. Runs until SIGTERM or "
                    "Ctrl-C.")
    p.add_argument("--id", required=True, dest="device_id",
                   help="the device's 20-digit GB/T 28181 id")
    p.add_argument("--platform", required=True, metavar="udp|tcp:HOST:PORT",
                   help="the platform's SIP address, e.g. udp:127.0.0.1:5060")
    p.add_argument("--platform-id", default=None,
                   help="the platform's 20-digit id (default: the device's domain + "
                        "2000000001); its first 10 digits are the SIP domain")
    secret = p.add_mutually_exclusive_group()
    secret.add_argument("--password", help="the registration password")
    secret.add_argument("--password-file", help="read the registration password from this file")
    p.add_argument("--channels", type=int, default=2, help="camera channels, 1..99 (default 2)")
    p.add_argument("--keepalive-s", type=float, default=60.0,
                   help="seconds between keepalives (default 60)")
    p.add_argument("--codec", choices=("h264", "h265"), default="h264")
    p.set_defaults(func=cmd_sim_gb28181)


def _gb_password(args: argparse.Namespace) -> str:
    from edge.cli import OperatorError

    if args.password is not None:
        return str(args.password)
    if args.password_file is None:
        raise OperatorError("sim gb28181: give --password or --password-file")
    try:
        with open(args.password_file, encoding="utf-8") as f:
            password = f.read().strip("\r\n")
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else "not UTF-8 text"
        raise OperatorError(f"--password-file {args.password_file}: {why}") from None
    if not password:
        raise OperatorError(f"--password-file {args.password_file} is empty")
    return password


def cmd_sim_gb28181(args: argparse.Namespace) -> int:
    from drivers.sim.gb28181.device import GbDeviceError, SimGbDevice, parse_platform
    from edge.cli import OperatorError

    password = _gb_password(args)
    try:
        platform = parse_platform(args.platform)
        device = SimGbDevice(args.device_id, platform, password=password,
                             platform_id=args.platform_id, channels=args.channels,
                             keepalive_s=args.keepalive_s, codec=args.codec)
    except ValueError as e:
        raise OperatorError(f"sim gb28181: {e}") from None
    setup_logging(f"sim-gb28181@{args.device_id}")
    try:
        run_until_stopped(device.run())
    except GbDeviceError as e:
        raise OperatorError(f"sim gb28181: {e}") from None
    except OSError as e:
        raise OperatorError(f"sim gb28181: cannot reach {args.platform}: {e.strerror or e}"
                            ) from None
    return 0


def run_until_stopped(coro: Coroutine[Any, Any, None]) -> None:
    """Run a simulator coroutine until it ends, SIGTERM or SIGINT; its errors propagate."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        sim = asyncio.create_task(coro, name="simulator")
        stopper = asyncio.create_task(stop.wait(), name="stop-signal")
        try:
            await asyncio.wait({sim, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            sim.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sim  # re-raises what ended it, e.g. OSError: address in use

    # A Ctrl-C before the handlers are installed is still a clean stop.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
