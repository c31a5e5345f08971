"""The simulated camera's ONVIF device: Device, Media and PTZ services, WS-Discovery.

``edge sim camera --name cam1 --onvif 8080 --onvif-user admin --onvif-password-file F``
runs one (`device_service.run_sim_onvif_camera`). In a test::

    ptz = PtzState()
    camera = SimCamera("cam1", view=ptz.view)
    device = SimOnvifDevice(camera, ptz, user="admin", password="pw", discovery_port=0)

`soap` holds the envelopes and faults, `ws_security` the UsernameToken check,
`ptz_state` the position, motion, presets and home, `discovery` the WS-Discovery
responder; the picture moves through `drivers.sim.camera.viewport`.
"""

from drivers.sim.onvif.device_service import SimOnvifDevice, run_sim_onvif_camera
from drivers.sim.onvif.ptz_state import Position, PtzState

__all__ = ["Position", "PtzState", "SimOnvifDevice", "run_sim_onvif_camera"]
