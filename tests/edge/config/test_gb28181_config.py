"""`[gb28181]` and the `gb28181` camera source: what is taken, and what is refused and how."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge.config import ConfigError, load_config, parse_config
from edge.config.cameras import Gb28181SourceConfig
from edge.services import SERVICES

DEVICE = "34020000001320000001"
CHANNEL = "34020000001310000001"


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as e:
        parse_config(data, "v.toml")
    return e.value.problems


def enabled(**section: Any) -> dict[str, Any]:
    return {"gb28181": {"enabled": True, "password": {"file": "gb.secret"}, **section}}


def test_defaults_and_a_full_section() -> None:
    off = parse_config({})
    assert not off.gb28181.enabled and "gb28181" not in SERVICES["gb28181"].names(off)
    cfg = parse_config(enabled(
        platform_id="11010000002000000001", listen="[::]:5061", media_host="10.8.0.1",
        rtp_ports="31000-31010", invite_transport="tcp-passive",
        devices=[{"id": DEVICE, "name": "North", "password": {"credential": "gb-north"}}]))
    gb = cfg.gb28181
    assert (gb.sip_host, gb.sip_port, gb.rtp_port_range) == ("::", 5061, (31000, 31010))
    assert gb.invite_transport == "tcp-passive" and gb.devices[0].name == "North"
    assert SERVICES["gb28181"].names(cfg) == ["gb28181"]


def test_ids_must_be_20_digits_with_an_example() -> None:
    assert problems(enabled(devices=[{"id": "1234"}])) == [
        'gb28181.devices[0].id: id must be 20 digits (GB/T 28181), like '
        '"34020000001320000001", got "1234"']
    assert problems(enabled(platform_id="3402000000200000000x"))[0].startswith(
        "gb28181.platform_id: id must be 20 digits")


def test_devices_must_be_able_to_authenticate() -> None:
    assert problems({"gb28181": {"enabled": True}}) == [
        'gb28181: password: devices must authenticate: give a shared password '
        '(password = { file = "…" }) '
        "or [[gb28181.devices]] with their own"]
    assert problems({"gb28181": {"enabled": True, "devices": [
        {"id": DEVICE, "password": {"file": "a"}}, {"id": CHANNEL}]}}) == [
        "gb28181: devices[1].password: no password, and no shared one in [gb28181] password"]
    # A password is only ever a reference.
    assert problems({"gb28181": {"password": "12345678"}})[0].startswith(
        "gb28181.password: ")


@pytest.mark.parametrize(("key", "value", "problem"), [
    ("listen", "0.0.0.0", 'gb28181.listen: expected HOST:PORT, got "0.0.0.0"'),
    ("rtp_ports", "30000", 'gb28181.rtp_ports: expected a port range like "30000-30999", '
                           'got "30000"'),
    ("rtp_ports", "40000-30000", "gb28181.rtp_ports: port range 40000-30000 must lie within "
                                 "1024-65535, low end first"),
    ("invite_transport", "tcp", "gb28181.invite_transport: "),
    ("media_host", "not a host!", 'gb28181.media_host: "not a host!" is not a valid host name '
                                  "or IP address"),
])
def test_bad_values_name_their_key(key: str, value: str, problem: str) -> None:
    out = problems(enabled(**{key: value}))
    assert len(out) == 1 and out[0].startswith(problem), out


def test_duplicate_devices_refused() -> None:
    out = problems(enabled(devices=[{"id": DEVICE}, {"id": DEVICE}]))
    assert out == [f'gb28181: devices[1].id: "{DEVICE}" is already devices[0]']


def test_a_camera_reads_a_device_channel() -> None:
    cfg = parse_config({"cameras": [{"id": "dome", "name": "Dome",
                                     "main": {"gb28181": f"{DEVICE}/{CHANNEL}"},
                                     "sub": {"gb28181": f"{DEVICE}/{CHANNEL}",
                                             "transport": "tcp-active"}}]})
    main, sub = cfg.cameras[0].streams.values()
    assert isinstance(main, Gb28181SourceConfig) and isinstance(sub, Gb28181SourceConfig)
    assert (main.device_id, main.channel_id, main.transport) == (DEVICE, CHANNEL, None)
    assert sub.transport == "tcp-active"


@pytest.mark.parametrize(("value", "problem"), [
    (DEVICE, 'expected "DEVICE-ID/CHANNEL-ID" (two 20-digit GB/T 28181 ids), like '
             f'"{DEVICE}/34020000001310000001", got "{DEVICE}"'),
    (f"123/{CHANNEL}", 'device id must be 20 digits (GB/T 28181), like "34020000001320000001",'
                       ' got "123"'),
    (f"{DEVICE}/abc", 'channel id must be 20 digits'),
])
def test_a_bad_channel_reference_says_how_to_write_it(value: str, problem: str) -> None:
    out = problems({"cameras": [{"id": "dome", "name": "Dome", "main": {"gb28181": value}}]})
    assert len(out) == 1 and out[0].startswith(f"cameras[0].main.gb28181: {problem}"), out


def test_from_toml_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "vehicle.toml"
    path.write_text('[gb28181]\nenabled = true\npassword = { file = "gb.secret" }\n\n'
                    '[[gb28181.devices]]\nid = "1234"\n')
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).splitlines()[-1].startswith(f"{path}:6: gb28181.devices[0].id: ")
