"""`[demo]`: the simulated devices `edge demo` starts beside the services, and the links it
emulates.

A simulated camera can also be an ONVIF device (`onvif_port`: its PTZ moves the
picture); a simulated GB/T 28181 device registers to the demo's own `[gb28181]`
platform, with the password that section asks of it::

    sim_cameras = [{ name = "pier", port = 8559, onvif_port = 8080,
                     credentials = { file = "demo-onvif.credentials" } }]
    sim_gb28181 = [{ id = "34020000001320000001", channels = 2 }]
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from edge.config.addresses import check_link
from edge.config.gb28181 import Gb28181Config, GbId
from edge.config.model import DeviceId, Model, Position
from edge.config.secrets import SecretRef


class SimCameraConfig(Model):
    name: DeviceId
    port: int = Field(ge=1, le=65535)
    codec: Literal["h264", "h265"] = "h264"
    profile: Literal["baseline", "high"] = "baseline"
    # Also an ONVIF device (Device, Media, PTZ) on this HTTP port; PTZ moves its picture.
    onvif_port: int | None = Field(default=None, ge=1, le=65535)
    # "user:password" it asks for on ONVIF and RTSP alike: the file the camera's own
    # `credentials` names, so the two cannot disagree.
    credentials: SecretRef | None = None

    @model_validator(mode="after")
    def _onvif(self) -> SimCameraConfig:
        if self.onvif_port is not None and self.onvif_port == self.port:
            raise ValueError(f"onvif_port {self.onvif_port} is the camera's RTSP port too: "
                             "give another")
        if self.credentials is not None and self.onvif_port is None:
            raise ValueError("credentials are for an ONVIF camera: give onvif_port too")
        return self


class SimDroneConfig(Model):
    connection: str
    sysid: int = Field(default=1, ge=1, le=254)
    home: Position | None = None
    camera: str | None = None

    @field_validator("connection")
    @classmethod
    def _connection(cls, v: str) -> str:
        return check_link(v, ("tcp", "udpin", "udpout"))


#: the link emulator's profiles (drivers/sim/link/profile.py `PROFILES`; a test keeps the two
#: in step: the config imports nothing, so it cannot read them there)
SimLinkProfile = Literal["geo", "geo-bad", "leo", "lte"]


class SimLinkConfig(Model):
    """One of the vehicle's `[[links]]` emulated by `edge demo` (as root: it needs network
    namespaces), with the link emulator's profile it gets."""

    link: DeviceId
    profile: SimLinkProfile


class SimGbDeviceConfig(Model):
    """A simulated GB/T 28181 dome camera (`edge sim gb28181`) registering to the demo's own
    `[gb28181]` platform; its channel ids are `channel_ids(id, channels)`
    (drivers/sim/gb28181/device.py: the id's first 10 digits, 131, then 0000001, ...)."""

    id: GbId
    channels: int = Field(default=2, ge=1, le=99)
    # How it reaches the platform for SIP (media goes as each INVITE asks).
    transport: Literal["udp", "tcp"] = "udp"
    codec: Literal["h264", "h265"] = "h264"
    # None: the password `[gb28181]` asks of this device (its own entry's, else the shared).
    password: SecretRef | None = None

    def password_ref(self, gb: Gb28181Config) -> SecretRef | None:
        """Where this device's registration password lives; None if `gb` gives it none."""
        if self.password is not None:
            return self.password
        own = next((d.password for d in gb.devices if d.id == self.id), None)
        return own or gb.password


class DemoConfig(Model):
    """Simulated devices that `edge demo` starts beside the services."""

    sim_cameras: list[SimCameraConfig] = []
    sim_drones: list[SimDroneConfig] = []
    sim_links: list[SimLinkConfig] = []
    sim_gb28181: list[SimGbDeviceConfig] = []

    @model_validator(mode="after")
    def _unique(self) -> DemoConfig:
        ports: dict[int, str] = {}
        for i, cam in enumerate(self.sim_cameras):
            for key, port in (("port", cam.port), ("onvif_port", cam.onvif_port)):
                if port is None:
                    continue
                if port in ports:
                    raise ValueError(f"sim_cameras[{i}].{key}: port {port} is already "
                                     f"{ports[port]}")
                ports[port] = f"sim_cameras[{i}].{key}"
        ids: dict[str, int] = {}
        for i, device in enumerate(self.sim_gb28181):
            if device.id in ids:
                raise ValueError(f'sim_gb28181[{i}].id: "{device.id}" is already '
                                 f"sim_gb28181[{ids[device.id]}]")
            ids[device.id] = i
        return self


def gb_platform_address(gb: Gb28181Config, transport: Literal["udp", "tcp"]) -> str:
    """Where the demo's simulated devices reach `[gb28181]`: `udp:HOST:PORT` (a wildcard
    listen address is reached on loopback); ValueError if they cannot."""
    if not gb.enabled:
        raise ValueError("simulated GB/T 28181 devices need the demo's own platform: "
                         "set [gb28181] enabled = true")
    if gb.sip_port == 0:
        raise ValueError(f'[gb28181] listen "{gb.listen}": simulated devices need a fixed '
                         "port to register to, not 0")
    host = gb.sip_host
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"{transport}:[{host}]:{gb.sip_port}" if ":" in host else \
        f"{transport}:{host}:{gb.sip_port}"
