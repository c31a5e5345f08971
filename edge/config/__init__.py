"""The vehicle configuration: one schema, TOML in, typed objects out.

Every section of the vehicle is here, even those filled by later services,
so that a config key is spelled in exactly one place: one module per section
(`bus`, `cameras`, `drones`, `links`, `uplink`, `recorder`, `demo`), the whole
(`vehicle`), and the reading of a file (`loader`, with `toml_lines` for the
line of each key). Unknown keys are refused, and secrets are never values in
the TOML, only references to a file or a systemd credential (`secrets`).
Host, port and URL checks are `addresses`.

Import from here: `from edge.config import load_config, VehicleConfig`.
"""

from edge.config.bus import BusConfig
from edge.config.cameras import (
    SOURCE_SPECS,
    CameraConfig,
    DroneSourceConfig,
    RtspSourceConfig,
    SourceConfig,
    SourceSpec,
)
from edge.config.demo import DemoConfig, SimCameraConfig, SimDroneConfig
from edge.config.drones import CONNECTION_RE, DroneLinkConfig, MavlinkEndpointConfig
from edge.config.errors import ConfigError
from edge.config.links import WanLinkConfig
from edge.config.loader import MAX_NESTING, MAX_PROBLEM_CHARS, load_config, parse_config
from edge.config.model import ID_PATTERN, DeviceId, Model, Position
from edge.config.recorder import RecorderConfig
from edge.config.secrets import SecretRef
from edge.config.toml_lines import key_lines
from edge.config.uplink import IceServerConfig, UplinkConfig
from edge.config.vehicle import VehicleConfig

__all__ = [
    "CONNECTION_RE",
    "ID_PATTERN",
    "MAX_NESTING",
    "MAX_PROBLEM_CHARS",
    "SOURCE_SPECS",
    "BusConfig",
    "CameraConfig",
    "ConfigError",
    "DemoConfig",
    "DeviceId",
    "DroneLinkConfig",
    "DroneSourceConfig",
    "IceServerConfig",
    "MavlinkEndpointConfig",
    "Model",
    "Position",
    "RecorderConfig",
    "RtspSourceConfig",
    "SecretRef",
    "SimCameraConfig",
    "SimDroneConfig",
    "SourceConfig",
    "SourceSpec",
    "UplinkConfig",
    "VehicleConfig",
    "WanLinkConfig",
    "key_lines",
    "load_config",
    "parse_config",
]
