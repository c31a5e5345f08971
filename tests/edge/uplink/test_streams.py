"""Which stream a request gets: `auto` reads the configured links and the viewer's round trip."""

from __future__ import annotations

from pathlib import Path

import zmq

from edge.bus.endpoints import Endpoints
from edge.config import parse_config
from edge.uplink.state import UplinkState
from edge.uplink.streams import SATELLITE_RTT_MS, Streams


def streams_for(tmp_path: Path, links: list[dict[str, object]]) -> tuple[Streams, UplinkState]:
    config = parse_config({
        "cameras": [{"id": "gate", "name": "Gate", "main": "rtsp://127.0.0.1:1/gate/main",
                     "sub": "rtsp://127.0.0.1:1/gate/sub"}],
        "links": links})
    state = UplinkState(config)
    return Streams(config.uplink, state, zmq.Context.instance(),
                   Endpoints("ipc://a", "ipc://b", "ipc://c", tmp_path)), state


def test_auto_sends_sub_to_a_viewer_behind_a_satellite_hop(tmp_path: Path) -> None:
    streams, state = streams_for(tmp_path, [{"id": "lte", "name": "4G", "kind": "lte-private"}])
    cam = state.camera("gate")
    assert cam is not None
    assert streams.resolve(cam, "auto").profile == "main"  # nothing measured yet: the links
    assert streams.resolve(cam, "auto", viewer_rtt_ms=60).profile == "main"
    assert streams.resolve(cam, "auto", viewer_rtt_ms=SATELLITE_RTT_MS + 300).profile == "sub"
    # Asked for by name, a stream is what the viewer gets, whatever its round trip.
    assert streams.resolve(cam, "main", viewer_rtt_ms=600).profile == "main"


def test_auto_sends_sub_when_every_link_up_is_constrained(tmp_path: Path) -> None:
    streams, state = streams_for(tmp_path, [
        {"id": "sat", "name": "Satellite", "kind": "satellite", "constrained": True}])
    cam = state.camera("gate")
    assert cam is not None
    assert streams.resolve(cam, "auto", viewer_rtt_ms=40).profile == "sub"
