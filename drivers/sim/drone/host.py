"""Several simulated drones in one process (`edge sim drones`, the demo's `sim-drones`).

Each drone is the `SimDrone` that `edge sim drone` runs, on its own link; they share
the process's interpreter and its MAVLink dialect. `drivers.sim.device_host` keeps
them: a drone whose link cannot be opened is one error line and is tried again while
the others fly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from drivers.sim.device_host import DeviceError, DeviceHost, why
from drivers.sim.drone.server import DEFAULT_HOME, SimDrone


@dataclass(frozen=True, slots=True)
class DroneSpec:
    """One drone: what `edge sim drone`'s flags say of it."""

    connection: str
    sysid: int = 1
    home: tuple[float, float] = DEFAULT_HOME
    camera_rtsp_url: str | None = None


class HostedDrone:
    """A `DroneSpec` as `DeviceHost` runs it; each start makes a fresh `SimDrone` (it
    takes off from home again, as a restarted simulator did)."""

    def __init__(self, spec: DroneSpec) -> None:
        self.spec = spec
        self.drone: SimDrone | None = None

    @property
    def name(self) -> str:
        return f"drone {self.spec.sysid} on {self.spec.connection}"

    async def start(self) -> None:
        spec = self.spec
        self.drone = SimDrone(spec.connection, sysid=spec.sysid, home=spec.home,
                              camera_rtsp_url=spec.camera_rtsp_url)
        try:
            await self.drone.start()
        except OSError as e:
            raise DeviceError(f"drone {spec.sysid}: cannot open {spec.connection}: "
                              f"{why(e)}") from None

    async def serve(self) -> None:
        assert self.drone is not None
        await self.drone.serve()

    async def close(self) -> None:
        drone, self.drone = self.drone, None
        if drone is not None:
            await drone.stop()


def drone_host(specs: Sequence[DroneSpec]) -> DeviceHost:
    """A `DeviceHost` of these drones (ValueError for the same drone twice)."""
    return DeviceHost([HostedDrone(s) for s in specs])


async def run_sim_drones(specs: Sequence[DroneSpec]) -> None:
    """Fly these drones until cancelled (the `edge sim drones` entry point); raises
    `device_host.NoneStarted` when no link can be opened. Stops them all on the way out."""
    await drone_host(specs).run()
