"""MAVLink 2 drone driver (ardupilotmega dialect): links, telemetry, commands, router.

Device level only: nothing here knows about the bus.
"""

from drivers.mavlink.commands import (
    Command,
    CommandResult,
    CommandStatus,
    GoTo,
    Hold,
    Land,
    PointGimbal,
    RequestMessage,
    ReturnToLaunch,
    SetMessageInterval,
    SetMode,
)
from drivers.mavlink.events import (
    ArmedChanged,
    LinkEvent,
    ModeChanged,
    SigningRefused,
    StatusText,
    VehicleDiscovered,
    VehicleLost,
    VehicleRegained,
    VideoStreamFound,
)
from drivers.mavlink.link import DroneLink
from drivers.mavlink.probe import VehicleSummary, probe
from drivers.mavlink.router import Endpoint, MavRouter
from drivers.mavlink.telemetry import Home, Telemetry
from drivers.mavlink.video import VideoStream

__all__ = [
    "ArmedChanged",
    "Command",
    "CommandResult",
    "CommandStatus",
    "DroneLink",
    "Endpoint",
    "GoTo",
    "Hold",
    "Home",
    "Land",
    "LinkEvent",
    "MavRouter",
    "ModeChanged",
    "PointGimbal",
    "RequestMessage",
    "ReturnToLaunch",
    "SetMessageInterval",
    "SetMode",
    "SigningRefused",
    "StatusText",
    "Telemetry",
    "VehicleDiscovered",
    "VehicleLost",
    "VehicleRegained",
    "VehicleSummary",
    "VideoStream",
    "VideoStreamFound",
    "probe",
]
