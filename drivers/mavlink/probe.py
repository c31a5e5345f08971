"""``edge drone probe CONNECTION --seconds N``: who is on this link?

Read-only by construction: it sends our GCS HEARTBEAT (without which a
``udpout`` vehicle would not know where to answer) and the
MAV_CMD_SET_MESSAGE_INTERVAL requests for the telemetry set, nothing else;
no camera requests, no commands.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import Any

from drivers.mavlink.connection import GCS_SYSTEM_ID
from drivers.mavlink.framing import Frame
from drivers.mavlink.intervals import TELEMETRY_RATES_HZ
from drivers.mavlink.link import DroneLink
from drivers.mavlink.transport import PeerId


@dataclass(frozen=True, slots=True)
class VehicleSummary:
    sysid: int
    autopilot: str | None
    type: str | None
    mode: str | None
    armed: bool | None
    lat: float | None
    lon: float | None
    alt_rel_m: float | None
    battery_pct: float | None
    msgs_per_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def probe(
    connection: str,
    seconds: float,
    *,
    source_system: int = GCS_SYSTEM_ID,
    request_rates: bool = True,
) -> list[VehicleSummary]:
    """Listen for ``seconds`` and summarise every vehicle heard, by sysid."""
    link = DroneLink(
        connection,
        source_system=source_system,
        request_rates=TELEMETRY_RATES_HZ if request_rates else None,
        discover_video=False,
        command_retries=0,
    )
    counts: dict[int, int] = {}
    first_heard: dict[int, float] = {}

    def count(frame: Frame, peer: PeerId) -> None:
        counts[frame.sysid] = counts.get(frame.sysid, 0) + 1
        first_heard.setdefault(frame.sysid, time.monotonic())

    link.connection.add_listener(count)
    await link.start()
    try:
        await asyncio.sleep(seconds)
    finally:
        await link.stop()
    end = time.monotonic()
    out = []
    for sysid in sorted(link.vehicles):
        t = link.vehicles[sysid].telemetry
        heard_for = max(end - first_heard.get(sysid, end), 1e-3)
        out.append(
            VehicleSummary(
                sysid=sysid,
                autopilot=t.autopilot,
                type=t.vehicle_type,
                mode=t.mode,
                armed=t.armed,
                lat=None if t.lat is None else round(t.lat, 7),
                lon=None if t.lon is None else round(t.lon, 7),
                alt_rel_m=None if t.alt_rel_m is None else round(t.alt_rel_m, 2),
                battery_pct=t.battery_pct,
                msgs_per_s=round(counts.get(sysid, 0) / heard_for, 1),
            )
        )
    return out
