"""The centre page: every vehicle live in one browser page, one timeline, roll-call.

- :mod:`~edge.centre.page.state` is the model: one vehicle model (the bus's
  :class:`~edge.bus.mirror.Mirror`) per vehicle, its last contact, and the timeline of
  alerts, marks and commands across vehicles;
- :mod:`~edge.centre.page.feed` reads the centre's JetStream into it (each vehicle's
  sourced stream, two ordered consumers);
- :mod:`~edge.centre.page.uplinks` asks the vehicles' uplinks for roll-call (WHEP,
  relayed with the vehicle's token) and thumbnails;
- :mod:`~edge.centre.page.media_server` relays roll-call of a camera whose push is live
  to the centre's media server (``[page] media_whep_url``) instead;
- :mod:`~edge.centre.page.server` is the HTTP side (:class:`CentrePage`): the page in
  ``web/``, its state API and server-sent events, the WHEP relay.
"""

from edge.centre.page.server import CentrePage
from edge.centre.page.uplinks import VehicleUplink

__all__ = ["CentrePage", "VehicleUplink"]
