"""The uplink to the city centre: WHEP over aiortc, a viewer page, and a state API.

One process (`edge run uplink`, :mod:`edge.services.uplink`) on one event loop:

- :mod:`~edge.uplink.whep` answers WHEP (`POST /whep/<camera>`), serves the
  viewer page and `/api/state` + `/api/events`;
- :mod:`~edge.uplink.session` turns an SDP offer into a peer connection that
  sends one camera stream, and keeps the list of sessions;
- :mod:`~edge.uplink.fanout` subscribes to a camera's media plane once per
  stream and shares the access units among that stream's viewers;
- :mod:`~edge.uplink.track` hands access units to aiortc as encoded packets
  (never decoded) with RTP timestamps of its own;
- :mod:`~edge.uplink.sdp` pins the answer to H.264 with the camera's own
  profile-level-id;
- :mod:`~edge.uplink.history` sizes each sender's NACK history for the
  worst round trip;
- :mod:`~edge.uplink.transcode` turns an H.265 camera's sub stream into
  H.264 in a worker thread (the only decode on this path);
- :mod:`~edge.uplink.state` keeps what the bus says about cameras, drones,
  links and sessions, for the API and the page;
- :mod:`~edge.uplink.client` is a WHEP client (aiortc), a separate code path
  used by the latency benchmark and the tests.
"""
