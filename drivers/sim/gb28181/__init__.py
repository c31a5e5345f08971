"""Simulated GB/T 28181 device (a 5G dome camera, 布控球): a real SIP user agent and RTP/PS sender.

``edge sim gb28181 --id ID --platform udp:HOST:PORT --password PW`` runs one
(`device.run_sim_gb28181`); `device.SimGbDevice` is the same in a test. `media`
draws and encodes each channel's picture per PTZ view and sends it as PS over
RTP; `sdp` reads the platform's INVITE offer and writes the device's answer.
"""

from drivers.sim.gb28181.device import GbDeviceError, SimGbDevice, run_sim_gb28181

__all__ = ["GbDeviceError", "SimGbDevice", "run_sim_gb28181"]
