"""ONVIF driver: the client side of ONVIF Profile S devices. No bus knowledge.

* `OnvifClient(address, credentials)`: device information, media profiles and
  their RTSP stream URIs, PTZ capabilities and moves, over onvif-zeep-async;
  every failure an `OnvifError` of one line.
* `discover(timeout, targets)`: WS-Discovery Probe, the devices that answered.
* `drivers.onvif.source.OnvifSource` (not imported here: it brings PyAV): a
  `drivers.source.Source` that asks the device for a profile's RTSP URI and
  reads it with the RTSP source, asking again when that keeps failing.
"""

from drivers.onvif.client import (
    DeviceInfo,
    OnvifClient,
    Preset,
    Profile,
    PtzCapabilities,
    Range,
    Space,
    choose_profile,
)
from drivers.onvif.discovery import Device, DiscoveryError, discover
from drivers.onvif.errors import WRONG_CREDENTIALS, OnvifError

__all__ = [
    "WRONG_CREDENTIALS",
    "Device",
    "DeviceInfo",
    "DiscoveryError",
    "OnvifClient",
    "OnvifError",
    "Preset",
    "Profile",
    "PtzCapabilities",
    "Range",
    "Space",
    "choose_profile",
    "discover",
]
