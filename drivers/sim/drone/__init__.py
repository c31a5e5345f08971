"""Simulated ArduCopter drone: a real MAVLink 2 peer for tests and the demo."""

from drivers.sim.drone.host import DroneSpec, run_sim_drones
from drivers.sim.drone.server import DEFAULT_HOME, SimDrone, run_sim_drone
from drivers.sim.drone.vehicle import SimConfig, SimVehicle

__all__ = ["DEFAULT_HOME", "DroneSpec", "SimConfig", "SimDrone", "SimVehicle", "run_sim_drone",
           "run_sim_drones"]
