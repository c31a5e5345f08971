"""`[demo]`'s simulated ONVIF cameras and GB/T 28181 devices: what is taken, what is
refused and how, and where a simulated device reaches the demo's own platform."""

from __future__ import annotations

from typing import Any

import pytest

from edge.config import ConfigError, parse_config
from edge.config.demo import gb_platform_address

DEVICE = "34020000001320000001"


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as e:
        parse_config(data, "v.toml")
    return e.value.problems


def test_an_onvif_camera_and_a_gb_device() -> None:
    demo = parse_config({"demo": {
        "sim_cameras": [{"name": "pier", "port": 8559, "onvif_port": 8580,
                         "credentials": {"file": "onvif.credentials"}}],
        "sim_gb28181": [{"id": DEVICE, "channels": 3, "transport": "tcp"}]}}).demo
    assert demo.sim_cameras[0].onvif_port == 8580
    gb = demo.sim_gb28181[0]
    assert (gb.channels, gb.transport, gb.codec, gb.password) == (3, "tcp", "h264", None)


@pytest.mark.parametrize(("demo", "says"), [
    ({"sim_cameras": [{"name": "pier", "port": 8559, "onvif_port": 8559}]},
     "demo.sim_cameras[0]: onvif_port 8559 is the camera's RTSP port too: give another"),
    ({"sim_cameras": [{"name": "pier", "port": 8559, "credentials": {"file": "c"}}]},
     "demo.sim_cameras[0]: credentials are for an ONVIF camera: give onvif_port too"),
    ({"sim_cameras": [{"name": "a", "port": 8559, "onvif_port": 8580},
                      {"name": "b", "port": 8580}]},
     "demo: sim_cameras[1].port: port 8580 is already sim_cameras[0].onvif_port"),
    ({"sim_gb28181": [{"id": DEVICE}, {"id": DEVICE}]},
     f'demo: sim_gb28181[1].id: "{DEVICE}" is already sim_gb28181[0]'),
    ({"sim_gb28181": [{"id": "1234"}]}, "demo.sim_gb28181[0].id: id must be 20 digits"),
    ({"sim_gb28181": [{"id": DEVICE, "channels": 0}]},
     "demo.sim_gb28181[0].channels: input should be greater"),
    ({"sim_gb28181": [{"id": DEVICE, "password": "12345678"}]},
     "demo.sim_gb28181[0].password: a secret is never written"),
])
def test_refused_with_the_key_that_is_wrong(demo: dict[str, Any], says: str) -> None:
    found = problems({"demo": demo})
    assert len(found) == 1 and found[0].startswith(says), found


def gb(**section: Any) -> Any:
    return parse_config({"gb28181": {"enabled": True, "password": {"file": "gb.secret"},
                                     **section}}).gb28181


def test_a_simulated_device_reaches_the_platform_where_it_listens() -> None:
    assert gb_platform_address(gb(listen="127.0.0.1:5060"), "udp") == "udp:127.0.0.1:5060"
    # A wildcard address is reached on loopback.
    assert gb_platform_address(gb(listen="0.0.0.0:5062"), "tcp") == "tcp:127.0.0.1:5062"
    assert gb_platform_address(gb(listen="[::]:5060"), "udp") == "udp:[::1]:5060"
    with pytest.raises(ValueError, match="need a fixed port"):
        gb_platform_address(gb(listen="127.0.0.1:0"), "udp")
    with pytest.raises(ValueError, match=r"set \[gb28181\] enabled = true"):
        gb_platform_address(parse_config({}).gb28181, "udp")


def test_a_simulated_device_uses_the_password_the_platform_asks_of_it() -> None:
    config = parse_config({
        "gb28181": {"enabled": True, "password": {"file": "shared"},
                    "devices": [{"id": DEVICE, "password": {"file": "own"}}]},
        "demo": {"sim_gb28181": [{"id": DEVICE}, {"id": "34020000001320000002"},
                                 {"id": "34020000001320000003", "password": {"file": "x"}}]}})
    refs = [d.password_ref(config.gb28181) for d in config.demo.sim_gb28181]
    assert [r.file if r else None for r in refs] == ["own", "shared", "x"]
