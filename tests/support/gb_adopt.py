"""Adopting a GB/T 28181 channel in tests: a vehicle.toml as an operator writes one (comments,
blank lines, its own order), whose `[gb28181]` expects the simulated device of
`tests.support.gb28181_service` and whose one camera is that device's first channel."""

from __future__ import annotations

from pathlib import Path

from tests.support.gb28181_service import CHANNELS, DEVICE_ID, PASSWORD, PLATFORM_ID

CONFIG_TEXT = f"""# A vehicle with one dome camera on its first channel; the second is adopted.
vehicle = "adopt-test"   # kept as written

[gb28181]
enabled = true
platform_id = "{PLATFORM_ID}"
listen = "127.0.0.1:0"           # any free port
password = {{ file = "gb.secret" }}
media_bind = "127.0.0.1"
keepalive_interval_s = 1.0
request_timeout_s = 3.0
no_media_s = 3.0

[[gb28181.devices]]
id = "{DEVICE_ID}"
name = "North dome"

# The first channel, configured by hand.
[[cameras]]
id = "dome"
name = "Dome"
main = {{ gb28181 = "{DEVICE_ID}/{CHANNELS[0]}" }}
"""


def write_config(directory: Path, text: str = CONFIG_TEXT) -> Path:
    """`vehicle.toml` (the name `tests.support.gb28181_service` hosts services with) and
    its password file, in `directory`."""
    (directory / "gb.secret").write_text(PASSWORD + "\n")
    path = directory / "vehicle.toml"
    path.write_text(text)
    return path
