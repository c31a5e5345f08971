"""The vehicle configuration: one schema, TOML in, typed objects out.

Every section of the vehicle lives here, even those filled by later services,
so that a config key is spelled in exactly one place. Unknown keys are refused,
and secrets are never values in the TOML: only references to a file or to a
systemd credential (see :class:`SecretRef`).
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

# Ids appear in topics, file names, systemd instance names and URLs.
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
DeviceId = Annotated[str, Field(pattern=ID_PATTERN)]
CONNECTION_RE = re.compile(r"^(udpin|udpout|tcp|tcpin):[^:\s]+:\d{1,5}$|^serial:/[^:\s]+:\d+$")


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
    if value is not None and not value.startswith(("rtsp://", "rtsps://")):
        raise ValueError(f'expected rtsp:// URL, got "{value}"')
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
        if v is not None and not re.match(r"^(ipc|tcp|inproc)://.+", v):
            raise ValueError(f'expected a ZeroMQ endpoint (ipc://, tcp://), got "{v}"')
        return v


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
    url: str = Field(pattern=r"^(udpout|udpin|tcpin):.+:\d+$")
    mode: Literal["ro", "rw"] = "ro"
    allow: list[int | str] = []
    deny: list[int | str] = []


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
        return v


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


class UplinkConfig(Model):
    enabled: bool = True
    listen: str = Field(default="127.0.0.1:8800", pattern=r"^[^\s]+:\d+$")
    token: SecretRef | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    ice_servers: list[str] = []
    max_sessions: int = Field(default=16, ge=1, le=256)
    max_transcodes: int = Field(default=1, ge=0, le=8)
    # The worst round trip a viewer may have (satellite): sizes NACK history.
    worst_rtt_ms: int = Field(default=1000, ge=50, le=10000)
    profile: Literal["main", "sub", "auto"] = "auto"


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
    connection: str = Field(pattern=r"^(tcp|udpin|udpout):[^:]+:\d+$")
    sysid: int = Field(default=1, ge=1, le=254)
    home: Position | None = None
    camera: str | None = None


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


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "literal[", "int", "str", "float")):
            # pydantic names union branches in locations; they mean nothing to an operator.
            continue
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


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
        return f"expected {err['ctx']['expected']}, got {got!r}"
    return f"{msg[0].lower()}{msg[1:]}, got {got!r}"


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


def parse_config(data: dict[str, Any], source: str = "<config>", text: str = "") -> VehicleConfig:
    try:
        return VehicleConfig.model_validate(data)
    except ValidationError as e:
        problems = []
        seen = set()
        lines = key_lines(text) if text else {}
        for err in e.errors():
            where = _loc(err["loc"])
            what = _describe(dict(err))
            line = what if not err["loc"] else f"{where}: {what}"
            number = _line_of(tuple(err["loc"]), lines)
            if number is not None:
                # Editors and terminals jump to "FILE:LINE: ..." (see ConfigError).
                line = f"{number}: {line}"
            if line not in seen:
                seen.add(line)
                problems.append(line)
        raise ConfigError(source, problems) from None


def load_config(path: str | Path) -> VehicleConfig:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(str(p), [f"cannot read: {e.strerror}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(p), [f"not valid TOML: {e}"]) from None
    return parse_config(data, str(p), text)


def config_dir(path: str | Path) -> Path:
    """Relative secret files are looked up beside the config file that names them."""
    return Path(path).resolve().parent
