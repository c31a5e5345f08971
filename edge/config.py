"""The vehicle configuration: one schema, TOML in, typed objects out.

Every section of the vehicle lives here, even those filled by later services,
so that a config key is spelled in exactly one place. Unknown keys are refused,
and secrets are never values in the TOML: only references to a file or to a
systemd credential (see :class:`SecretRef`).
"""

from __future__ import annotations

import os
import re
import reprlib
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from edge.addresses import (
    check_host_port,
    check_ice_url,
    check_rtsp_url,
    check_zmq_endpoint,
    host_problem,
)

# Ids appear in topics, file names, systemd instance names and URLs.
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
DeviceId = Annotated[str, Field(pattern=ID_PATTERN)]
CONNECTION_RE = re.compile(r"^(udpin|udpout|tcp|tcpin):[^:\s]+:\d+$|^serial:/[^:\s]+:\d+$")
# Deeper than any vehicle config; tomllib itself has no limit and recurses.
MAX_NESTING = 100


class ConfigError(Exception):
    """A config that cannot be used; `str()` is one line per problem, ready for an operator."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems  # "LINE: key.path: what" where the line is known
        super().__init__("\n".join(
            f"{path}:{p}" if p[:1].isdigit() else f"{path}: {p}" for p in problems))


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class SecretRef(Model):
    """Where a secret lives: a file, or a systemd credential name (LoadCredential=)."""

    file: str | None = None
    credential: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.file is None) == (self.credential is None):
            raise ValueError("expected exactly one of `file` or `credential`")
        return self

    def path(self, base_dir: Path | None = None) -> Path:
        if self.credential is not None:
            creds = os.environ.get("CREDENTIALS_DIRECTORY")
            if not creds:
                raise ConfigError(
                    "secret", [f"credential {self.credential!r}: $CREDENTIALS_DIRECTORY is not set"]
                )
            return Path(creds) / self.credential
        assert self.file is not None
        p = Path(self.file)
        return p if p.is_absolute() or base_dir is None else base_dir / p

    def read_bytes(self, base_dir: Path | None = None) -> bytes:
        p = self.path(base_dir)
        try:
            return p.read_bytes()
        except OSError as e:
            raise ConfigError(str(p), [f"cannot read secret: {e.strerror}"]) from None

    def read_text(self, base_dir: Path | None = None) -> str:
        return self.read_bytes(base_dir).decode().strip()


def _check_rtsp(value: str | None) -> str | None:
    return None if value is None else check_rtsp_url(value)


def _check_link(value: str, kinds: tuple[str, ...]) -> str:
    """A MAVLink link `KIND:HOST:PORT` (HOST without brackets: pymavlink takes no IPv6)."""
    kind, _, rest = value.partition(":")
    if kind not in kinds or ":" not in rest:
        forms = ", ".join(f"{k}:HOST:PORT" for k in kinds)
        raise ValueError(f'expected {forms}, got "{value}"')
    check_host_port(rest, ipv6=False, within=value)
    return value


class BusConfig(Model):
    """Control-bus endpoints. Empty endpoints mean ipc sockets in `runtime_dir`."""

    runtime_dir: str = "/run/edge"
    pub_endpoint: str | None = None
    sub_endpoint: str | None = None
    router_endpoint: str | None = None
    request_timeout_s: float = Field(default=3.0, gt=0, le=60)

    @field_validator("pub_endpoint", "sub_endpoint", "router_endpoint")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        return None if v is None else check_zmq_endpoint(v)


class Position(Model):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    alt_m: float | None = None


class CameraConfig(Model):
    id: DeviceId
    name: str = Field(min_length=1, max_length=64)
    main: str | None = None
    sub: str | None = None
    # A drone's gimbal camera: its RTSP URL is whatever the drone announces
    # (VIDEO_STREAM_INFORMATION), so `main` is left out. The drone id is
    # `<drone link id>-<system id>`, e.g. "alpha-1".
    drone: str | None = Field(default=None, pattern=ID_PATTERN)
    transport: Literal["tcp", "udp"] = "tcp"
    # A file holding "user:password", merged into the URL at connect time only.
    credentials: SecretRef | None = None
    position: Position | None = None
    # Which stream the uplink sends when asked for `auto` over a constrained link.
    uplink_profile: Literal["main", "sub"] = "sub"

    @field_validator("main", "sub")
    @classmethod
    def _rtsp(cls, v: str | None) -> str | None:
        return _check_rtsp(v)

    @model_validator(mode="after")
    def _source(self) -> CameraConfig:
        if (self.main is None) == (self.drone is None):
            raise ValueError(f'camera "{self.id}": expected exactly one of `main` (an RTSP URL) '
                             "or `drone` (a drone id whose camera announces its URL)")
        return self


class MavlinkEndpointConfig(Model):
    """A mavlink-router style endpoint: where the drone's traffic is also sent."""

    name: DeviceId
    # The router serves these three; a GCS that dials out to us uses tcpin.
    url: str
    mode: Literal["ro", "rw"] = "ro"
    allow: list[int | str] = []
    deny: list[int | str] = []

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _check_link(v, ("udpout", "udpin", "tcpin"))


class DroneLinkConfig(Model):
    id: DeviceId
    name: str = Field(default="", max_length=64)
    # udpin:HOST:PORT, udpout:HOST:PORT, tcp:HOST:PORT or serial:/dev/ttyX:BAUD
    connection: str
    source_system: int = Field(default=255, ge=1, le=255)
    telemetry_hz: float = Field(default=5.0, gt=0, le=50)
    signing_key: SecretRef | None = None
    endpoints: list[MavlinkEndpointConfig] = []

    @field_validator("connection")
    @classmethod
    def _connection(cls, v: str) -> str:
        if not CONNECTION_RE.match(v):
            raise ValueError("expected udpin:HOST:PORT, udpout:HOST:PORT, tcp:HOST:PORT or "
                             f'serial:/dev/DEVICE:BAUD, got "{v}"')
        if v.startswith("serial:"):
            if int(v.rpartition(":")[2]) == 0:
                raise ValueError(f'the baud rate must be more than 0, got "{v}"')
            return v
        return _check_link(v, ("udpin", "udpout", "tcp", "tcpin"))


class WanLinkConfig(Model):
    id: DeviceId
    name: str = Field(min_length=1, max_length=64)
    kind: Literal["satellite", "lte-private", "lte-public", "ethernet", "mesh"]
    interface: str = ""
    probe_host: str = ""
    # The link's nominal capacity; the uplink picks sub streams when it is small.
    capacity_kbps: int = Field(default=0, ge=0)
    rtt_ms: int = Field(default=0, ge=0)
    constrained: bool = False

    @field_validator("probe_host")
    @classmethod
    def _probe_host(cls, v: str) -> str:
        why = host_problem(f"[{v}]" if ":" in v else v) if v else None
        if why:
            raise ValueError(why)
        return v


class UplinkConfig(Model):
    enabled: bool = True
    listen: str = "127.0.0.1:8800"
    token: SecretRef | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    ice_servers: list[Annotated[str, AfterValidator(check_ice_url)]] = []
    max_sessions: int = Field(default=16, ge=1, le=256)
    max_transcodes: int = Field(default=1, ge=0, le=8)
    # The worst round trip a viewer may have (satellite): sizes NACK history.
    worst_rtt_ms: int = Field(default=1000, ge=50, le=10000)
    profile: Literal["main", "sub", "auto"] = "auto"

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        # Port 0 is "any free port": tests and benches listen that way.
        return check_host_port(v, allow_zero_port=True)


class RecorderConfig(Model):
    enabled: bool = False
    path: str = "/var/lib/edge/recordings"
    segment_seconds: float = Field(default=1.0, gt=0, le=60)
    retention_hours: float = Field(default=72, gt=0)


class SimCameraConfig(Model):
    name: DeviceId
    port: int = Field(ge=1, le=65535)
    codec: Literal["h264", "h265"] = "h264"
    profile: Literal["baseline", "high"] = "baseline"


class SimDroneConfig(Model):
    connection: str
    sysid: int = Field(default=1, ge=1, le=254)
    home: Position | None = None
    camera: str | None = None

    @field_validator("connection")
    @classmethod
    def _connection(cls, v: str) -> str:
        return _check_link(v, ("tcp", "udpin", "udpout"))


class DemoConfig(Model):
    """Simulated devices that `edge demo` starts beside the services."""

    sim_cameras: list[SimCameraConfig] = []
    sim_drones: list[SimDroneConfig] = []


class VehicleConfig(Model):
    vehicle: str = Field(default="edge", pattern=ID_PATTERN)
    position: Position | None = None
    bus: BusConfig = BusConfig()
    cameras: list[CameraConfig] = []
    drones: list[DroneLinkConfig] = []
    links: list[WanLinkConfig] = []
    uplink: UplinkConfig = UplinkConfig()
    recorder: RecorderConfig = RecorderConfig()
    demo: DemoConfig = DemoConfig()

    @model_validator(mode="after")
    def _unique_ids(self) -> VehicleConfig:
        for section in ("cameras", "drones", "links"):
            seen: dict[str, int] = {}
            for i, item in enumerate(getattr(self, section)):
                if item.id in seen:
                    raise ValueError(f'{section}[{i}].id: "{item.id}" is already the id of '
                                     f"{section}[{seen[item.id]}]")
                seen[item.id] = i
        return self

    def camera(self, camera_id: str) -> CameraConfig:
        for c in self.cameras:
            if c.id == camera_id:
                return c
        raise KeyError(camera_id)

    def drone_link(self, link_id: str) -> DroneLinkConfig:
        for d in self.drones:
            if d.id == link_id:
                return d
        raise KeyError(link_id)


# How pydantic names union branches in locations; they mean nothing to an operator.
_BRANCHES = frozenset({"int", "str", "float", "bool", "none"})


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _BRANCHES or part.startswith(("function-", "literal[")):
            continue
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


_SHOW = reprlib.Repr()
# A value is shown short and shallow: a deeply nested one must not recurse.
_SHOW.maxlevel, _SHOW.maxstring, _SHOW.maxother = 2, 80, 80
_SHOW.maxlist = _SHOW.maxtuple = _SHOW.maxdict = 4
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
MAX_PROBLEM_CHARS = 300


def _one_line(text: str) -> str:
    """`text` with its control characters escaped, cut short: one line an operator can read."""
    text = _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256
                            else f"\\u{ord(m.group()):04x}", text)
    return text if len(text) <= MAX_PROBLEM_CHARS else text[:MAX_PROBLEM_CHARS - 1] + "…"


def _describe(err: dict[str, Any]) -> str:
    kind = err["type"]
    msg: str = err["msg"]
    got = err.get("input")
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return "unknown key (check its spelling)"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        if err["ctx"]["pattern"] == ID_PATTERN:
            return f'expected an id (a-z, 0-9, - and _, at most 32), got "{got}"'
        return f'expected text matching {err["ctx"]["pattern"]}, got "{got}"'
    if kind == "literal_error":
        return f"expected {err['ctx']['expected']}, got {_SHOW.repr(got)}"
    return f"{msg[:1].lower()}{msg[1:]}, got {_SHOW.repr(got)}"


_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.-]+)\s*\]\]?")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")


def key_lines(text: str) -> dict[tuple[int | str, ...], int]:
    """Line numbers of the tables and keys in a TOML text, by path (`cameras`, 2, `main`).

    tomllib keeps no positions; this scan covers the shapes vehicle configs use
    (tables, arrays of tables, one key a line). Inline tables map to their key's line.
    """
    lines: dict[tuple[int | str, ...], int] = {}
    counts: dict[tuple[int | str, ...], int] = {}
    table: tuple[int | str, ...] = ()
    for number, line in enumerate(text.splitlines(), 1):
        if m := _HEADER.match(line):
            path: tuple[int | str, ...] = ()
            names = m.group(2).split(".")
            for i, name in enumerate(names):
                path += (name,)
                if path + (counts.get(path, 0) - 1,) in lines and i < len(names) - 1:
                    path += (counts[path] - 1,)
            if m.group(1) == "[[":
                counts[path] = counts.get(path, 0) + 1
                path += (counts[path] - 1,)
            table = path
            lines.setdefault(table, number)
        elif m := _KEY.match(line):
            lines.setdefault(table + (m.group(1),), number)
    return lines


def _line_of(loc: tuple[int | str, ...], lines: dict[tuple[int | str, ...], int]) -> int | None:
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def _depth(value: Any) -> int:
    """How deeply arrays and tables nest in `value`, counted without recursing."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_NESTING:
            break
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def parse_config(data: dict[str, Any], source: str = "<config>", text: str = "") -> VehicleConfig:
    if _depth(data) > MAX_NESTING:
        raise ConfigError(source, [_TOO_DEEP])
    try:
        return VehicleConfig.model_validate(data)
    except RecursionError:
        raise ConfigError(source, [_TOO_DEEP]) from None
    except ValidationError as e:
        problems = []
        seen = set()
        lines = key_lines(text) if text else {}
        for err in e.errors():
            where = _loc(err["loc"])
            what = _describe(dict(err))
            line = _one_line(what if not err["loc"] else f"{where}: {what}")
            number = _line_of(tuple(err["loc"]), lines)
            if number is not None:
                # Editors and terminals jump to "FILE:LINE: ..." (see ConfigError).
                line = f"{number}: {line}"
            if line not in seen:
                seen.add(line)
                problems.append(line)
        raise ConfigError(source, problems) from None


_TOO_DEEP = f"arrays or tables nested more than {MAX_NESTING} levels deep"


def load_config(path: str | Path) -> VehicleConfig:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(str(p), [f"cannot read: {e.strerror}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise ConfigError(str(p), [f"{line}: not UTF-8 text: byte 0x{raw[e.start]:02x} at line "
                                   f"{line}, column {column} (save the file as UTF-8)"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(p), [_one_line(f"not valid TOML: {e}")]) from None
    except RecursionError:  # tomllib recurses once per level of nesting, without a limit
        raise ConfigError(str(p), [_TOO_DEEP]) from None
    return parse_config(data, str(p), text)


def config_dir(path: str | Path) -> Path:
    """Relative secret files are looked up beside the config file that names them."""
    return Path(path).resolve().parent
