"""The uplink to the city centre: WHEP over aiortc, a viewer page, and a state API.

One process (`edge run uplink`, :mod:`edge.services.uplink`) on one event loop:

- :mod:`~edge.uplink.whep` maps HTTP to the rest: WHEP (`POST /whep/<camera>`),
  the viewer page, `/api/state` + `/api/events`, auth, CORS, status codes;
- :mod:`~edge.uplink.session` keeps the viewer sessions, from offer to close;
- :mod:`~edge.uplink.streams` chooses a request's stream (main, sub, auto),
  admits or refuses it (:class:`~edge.uplink.streams.Refusal`), and keeps one
  fanout (and transcoder) per stream;
- :mod:`~edge.uplink.peer` is one peer connection sending one stream, as the
  answering side (WHEP) or the offering side (WHIP);
- :mod:`~edge.uplink.fanout` subscribes to a camera's media plane once per
  stream and shares the access units among that stream's viewers;
- :mod:`~edge.uplink.track` hands access units to aiortc as encoded packets
  (never decoded) with RTP timestamps of its own;
- :mod:`~edge.uplink.sdp` pins the description to H.264 with the camera's own
  profile-level-id (:mod:`~edge.uplink.offer_check` checks offers first);
- :mod:`~edge.uplink.history` sizes each sender's NACK history for the
  worst round trip;
- :mod:`~edge.uplink.transcode` turns an H.265 camera's sub stream into
  H.264 in a worker thread (the only decode on this path);
- :mod:`~edge.uplink.state` keeps what the bus says about cameras, drones,
  links and sessions, for the API and the page.

The WHEP viewer the tests and `edge bench latency` use is
:mod:`edge.bench.whep_viewer`, a separate code path.
"""
