"""`[[cameras]]`: one camera, and one source per stream (`main`, optional `sub`).

A stream's source is a table with one key that names its kind::

    main = { rtsp = "rtsp://192.0.2.10/101" }   # an RTSP URL
    main = { drone = "alpha-1" }                # RTSP at the URL the drone announces
    main = { gb28181 = "DEVICE/CHANNEL" }       # a GB/T 28181 device's channel, invited
    main = { onvif = "http://192.0.2.10", profile = "main" }  # RTSP at the URI ONVIF gives

Shorthands from before sources had kinds still work: a bare URL
(`main = "rtsp://…"`, `sub = "rtsp://…"`) is `{ rtsp = … }`, and
`drone = "alpha-1"` is `main = { drone = "alpha-1" }`.

A new kind is a :class:`SourceSpec` subclass added to :data:`SourceConfig`;
the camera service builds it by kind (`edge/services/camera_sources.py`)
and never needs to know it.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Discriminator, Field, Tag, field_validator, model_validator

from edge.config.addresses import check_rtsp_url, host_problem, port_problem
from edge.config.gb28181 import GB_ID_EXAMPLE, check_gb_id
from edge.config.model import DeviceId, Model, Position, variant_tag
from edge.config.secrets import SecretRef


class SourceSpec(Model):
    """Where one stream comes from; each subclass is one kind of source."""

    kind: ClassVar[str]
    usage: ClassVar[str]  # how an operator writes it, for messages


class RtspSourceConfig(SourceSpec):
    kind = "rtsp"
    usage = '{ rtsp = "rtsp://…" }'

    rtsp: str

    @field_validator("rtsp")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_rtsp_url(v)


class DroneSourceConfig(SourceSpec):
    """A drone's gimbal camera: RTSP at whatever URL the drone announces.

    The drone service announces it (MAVLink VIDEO_STREAM_INFORMATION) on
    `drone/<id>/stream`; the id is `<drone link id>-<system id>`, e.g. "alpha-1".
    """

    kind = "drone"
    usage = '{ drone = "DRONE-ID" }'

    drone: DeviceId


class Gb28181SourceConfig(SourceSpec):
    """A channel of a GB/T 28181 device registered to the vehicle (`[gb28181]`), invited
    by the gb28181 service to send its PS stream to this camera's process."""

    kind = "gb28181"
    usage = '{ gb28181 = "DEVICE-ID/CHANNEL-ID" }'

    gb28181: str
    # How the device sends; None: `[gb28181] invite_transport`.
    transport: Literal["udp", "tcp-passive", "tcp-active"] | None = None

    @field_validator("gb28181")
    @classmethod
    def _ids(cls, v: str) -> str:
        device, sep, channel = v.partition("/")
        if not sep:
            raise ValueError(f'expected "DEVICE-ID/CHANNEL-ID" (two 20-digit GB/T 28181 ids), '
                             f'like "{GB_ID_EXAMPLE}/{GB_ID_EXAMPLE[:10]}1310000001", '
                             f'got "{v[:60]}"')
        check_gb_id(device, "device id")
        check_gb_id(channel, "channel id")
        return v

    @property
    def device_id(self) -> str:
        return self.gb28181.partition("/")[0]

    @property
    def channel_id(self) -> str:
        return self.gb28181.partition("/")[2]


class OnvifSourceConfig(SourceSpec):
    """An ONVIF (Profile S) camera: RTSP at the URI the device gives for one of its profiles.

    `onvif` is the device's address, `http[s]://HOST[:PORT]`, or its device service
    URL as `edge camera discover` prints it; `profile` is `main` (the device's
    largest picture), `sub` (its smallest) or a profile token. The camera's
    `credentials` log in to ONVIF and to RTSP alike.
    """

    kind = "onvif"
    usage = '{ onvif = "http://HOST", profile = "main" }'

    onvif: str
    profile: str

    @field_validator("onvif")
    @classmethod
    def _address(cls, v: str) -> str:
        return check_onvif_address(v)

    @field_validator("profile")
    @classmethod
    def _profile(cls, v: str) -> str:
        # ONVIF's ReferenceToken: at most 64 characters; a space could not be told apart.
        if not v or len(v) > 64 or any(c.isspace() or not c.isprintable() for c in v):
            raise ValueError(f'expected "main", "sub" or a profile token (1-64 characters, '
                             f'no spaces), got "{v[:80]}"')
        return v


def check_onvif_address(value: str) -> str:
    """`http[s]://HOST[:PORT][/path]`, with no user info (credentials are a secret)."""
    if not value.startswith(("http://", "https://")):
        raise ValueError(f'expected http://HOST[:PORT] of an ONVIF device, got "{value[:80]}"')
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError(f'"{value[:80]}" has a space or control character in it')
    netloc = value.split("://", 1)[1].split("/", 1)[0]
    if "@" in netloc:
        raise ValueError("no user or password in the ONVIF address: give the camera's "
                         "`credentials` instead")
    if netloc.startswith("["):
        host, _, after = netloc.partition("]")
        host, port = host + "]", (after[1:] if after.startswith(":") else None)
    else:
        host, sep, port_text = netloc.partition(":")
        port = port_text if sep else None
    if not host:
        raise ValueError(f'no host in "{value[:80]}"')
    why = host_problem(host) or (port_problem(port) if port is not None else None)
    if why:
        raise ValueError(f"{why} (in {value[:80]})")
    return value


SOURCE_SPECS: tuple[type[SourceSpec], ...] = (RtspSourceConfig, DroneSourceConfig,
                                                Gb28181SourceConfig, OnvifSourceConfig)
_BY_KIND = {spec.kind: spec for spec in SOURCE_SPECS}


def _kind_of(value: Any) -> str | None:
    """The tag of the variant `value` is written as: its one kind key."""
    if isinstance(value, SourceSpec):
        return variant_tag(value.kind)
    if isinstance(value, dict):
        kinds = [key for key in value if key in _BY_KIND]
        return variant_tag(kinds[0]) if len(kinds) == 1 else None
    return None


def _bare_url(value: Any) -> Any:
    # Checked here rather than as `rtsp` so that the problem names the key the operator wrote.
    return {"rtsp": check_rtsp_url(value)} if isinstance(value, str) else value


SourceConfig = Annotated[
    Annotated[RtspSourceConfig, Tag(variant_tag("rtsp"))]
    | Annotated[DroneSourceConfig, Tag(variant_tag("drone"))]
    | Annotated[Gb28181SourceConfig, Tag(variant_tag("gb28181"))]
    | Annotated[OnvifSourceConfig, Tag(variant_tag("onvif"))],
    Discriminator(
        _kind_of, custom_error_type="source_kind",
        custom_error_message="expected an RTSP URL or a table with one kind of source: "
        + " or ".join(spec.usage for spec in SOURCE_SPECS)),
    BeforeValidator(_bare_url),
]


class PtzConfig(Model):
    """Steering an ONVIF or GB/T 28181 camera: the commander always may; the centre if allowed."""

    # Whether the city centre's viewer page may steer this camera.
    centre: bool = False
    # How long a controller keeps the camera after its last command: the other side waits.
    hold_s: float = Field(default=30.0, gt=0, le=600)


class CameraConfig(Model):
    id: DeviceId
    name: str = Field(min_length=1, max_length=64)
    main: SourceConfig | None = None
    sub: SourceConfig | None = None
    # The shorthand `drone = "<id>"` for `main = { drone = "<id>" }`; read `streams`.
    drone_shorthand: DeviceId | None = Field(default=None, alias="drone")
    # How RTSP sources are read.
    transport: Literal["tcp", "udp"] = "tcp"
    # A file holding "user:password", merged into the URL at connect time only.
    credentials: SecretRef | None = None
    position: Position | None = None
    # Which stream the uplink sends when asked for `auto` over a constrained link.
    uplink_profile: Literal["main", "sub"] = "sub"
    ptz: PtzConfig = PtzConfig()

    @model_validator(mode="after")
    def _one_main(self) -> CameraConfig:
        if (self.main is None) == (self.drone_shorthand is None):
            raise ValueError(f'camera "{self.id}": expected exactly one of `main` (an RTSP URL) '
                             "or `drone` (a drone id whose camera announces its URL)")
        return self

    @property
    def streams(self) -> dict[str, SourceSpec]:
        """The source of each stream, by profile: `main`, then `sub` if there is one."""
        main: SourceSpec
        if self.main is not None:
            main = self.main
        else:
            assert self.drone_shorthand is not None  # _one_main
            main = DroneSourceConfig(drone=self.drone_shorthand)
        streams: dict[str, SourceSpec] = {"main": main}
        if self.sub is not None:
            streams["sub"] = self.sub
        return streams

    @property
    def drone(self) -> str | None:
        """The drone whose camera this is (its main stream is the one the drone announces)."""
        main = self.streams["main"]
        return main.drone if isinstance(main, DroneSourceConfig) else None
