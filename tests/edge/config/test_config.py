"""The vehicle config: the shipped files pass; every kind of mistake is named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge.config import (
    ConfigError,
    DroneSourceConfig,
    RtspSourceConfig,
    SecretRef,
    key_lines,
    load_config,
    parse_config,
)
from tests.support import REPO

BASE = {"cameras": [{"id": "a", "name": "A", "main": "rtsp://h/a"}]}


@pytest.mark.parametrize("name", ["demo.toml", "vehicle.example.toml"])
def test_shipped_configs_pass(name: str) -> None:
    cfg = load_config(REPO / "config" / name)
    assert cfg.cameras


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as e:
        parse_config(data, "v.toml")
    return e.value.problems


def test_bad_url_names_index_key_and_value() -> None:
    cams = [dict(BASE["cameras"][0], id=f"c{i}") for i in range(3)]
    cams[2]["main"] = "htp://x"
    assert problems({"cameras": cams}) == ['cameras[2].main: expected rtsp:// URL, got "htp://x"']


def test_unknown_key_refused() -> None:
    assert problems({"camras": []}) == ["camras: unknown key (check its spelling)"]


def test_wrong_type_and_missing_key() -> None:
    out = problems({"uplink": {"max_sessions": "lots"}, "cameras": [{"id": "a"}]})
    assert "cameras[0].name: required key is missing" in out
    assert any(p.startswith("uplink.max_sessions: ") and "'lots'" in p for p in out)


def test_camera_needs_a_url_or_a_drone() -> None:
    out = problems({"cameras": [{"id": "a", "name": "A"}]})
    assert out == ['cameras[0]: camera "a": expected exactly one of `main` (an RTSP URL) or '
                   "`drone` (a drone id whose camera announces its URL)"]
    parse_config({"cameras": [{"id": "a", "name": "A", "drone": "alpha-1"}]})


def test_duplicate_ids_refused() -> None:
    out = problems({"cameras": BASE["cameras"] * 2})
    assert out == ['cameras[1].id: "a" is already the id of cameras[0]']


def test_bad_drone_connection() -> None:
    out = problems({"drones": [{"id": "d", "connection": "bogus"}]})
    assert out[0].startswith("drones[0].connection: expected udpin:HOST:PORT")


def test_secret_needs_exactly_one_reference() -> None:
    out = problems({"uplink": {"token": {"file": "a", "credential": "b"}}})
    assert out == ["uplink.token: expected exactly one of `file` or `credential`"]
    # A secret's value can never sit in the TOML itself.
    assert problems({"uplink": {"token": "s3cret"}})[0].startswith("uplink.token: ")


def test_secret_from_systemd_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "uplink-token").write_text("abc\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert SecretRef(credential="uplink-token").read_text() == "abc"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(ConfigError, match="CREDENTIALS_DIRECTORY"):
        SecretRef(credential="uplink-token").read_text()


def test_secret_file_relative_to_config(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("xyz")
    assert SecretRef(file="t").read_text(tmp_path) == "xyz"
    with pytest.raises(ConfigError, match="cannot read secret"):
        SecretRef(file="missing").read_text(tmp_path)


def load_error(path: Path, text: str) -> ConfigError:
    """What loading `text` from the file `path` raises."""
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    return e.value


def test_errors_name_the_line(tmp_path: Path) -> None:
    p = tmp_path / "v.toml"
    e = load_error(p, 'vehicle = "v"\n\n[[drones]]\nid = "a"\nconnection = "tcp:h:1"\n'
                      '[[drones.endpoints]]\nname = "qgc"\nurl = "udpout:h:1"\nmode = "rw"\n'
                      '[[drones.endpoints]]\nname = "x"\nurl = "nope"\n')
    assert e.problems[0].startswith("12: drones[0].endpoints[1].url: ")
    assert str(e).startswith(f"{p}:12: drones[0].endpoints[1].url: ")


def test_not_toml(tmp_path: Path) -> None:
    p = tmp_path / "v.toml"
    p.write_text("cameras = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(p)


def test_cli_check_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[cameras]]\nid = "a"\nname = "A"\nmain = "htp://x"\n')
    r = subprocess.run([sys.executable, "-m", "edge", "config", "check", str(bad)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr.strip() == f'{bad}:4: cameras[0].main: expected rtsp:// URL, got "htp://x"'
    assert "Traceback" not in r.stderr
    ok = subprocess.run([sys.executable, "-m", "edge", "config", "check",
                         str(REPO / "config" / "demo.toml")], capture_output=True, timeout=30)
    assert ok.returncode == 0


def test_a_key_named_like_a_type_is_still_named() -> None:
    # pydantic's union branches ("int", "str") are dropped from locations, not every
    # key that merely starts like one.
    out = problems({"links": [{"id": "s", "name": "S", "kind": "satellite", "interface": 5}]})
    assert out == ["links[0].interface: input should be a valid string, got 5"]


def test_a_long_or_multiline_value_is_shown_on_one_short_line() -> None:
    out = problems({"cameras": [{"id": "a", "name": "A", "main": "rtsp://h/\n" + "x" * 5000}]})
    assert len(out) == 1 and "\n" not in out[0] and len(out[0]) <= 300, out
    assert out[0].startswith("cameras[0].main: ")


# --------------------------------------------------------------------------- camera sources

def test_a_stream_source_is_a_table_naming_its_kind() -> None:
    long = parse_config({"cameras": [
        {"id": "a", "name": "A", "main": {"rtsp": "rtsp://h/a"}, "sub": {"rtsp": "rtsp://h/b"}},
        {"id": "d", "name": "D", "main": {"drone": "alpha-1"}},
    ]})
    # The shorthands of before sources had kinds mean the same.
    short = parse_config({"cameras": [
        {"id": "a", "name": "A", "main": "rtsp://h/a", "sub": "rtsp://h/b"},
        {"id": "d", "name": "D", "drone": "alpha-1"},
    ]})
    for cfg in (long, short):
        a, d = cfg.cameras
        assert a.streams == {"main": RtspSourceConfig(rtsp="rtsp://h/a"),
                             "sub": RtspSourceConfig(rtsp="rtsp://h/b")}
        assert d.streams == {"main": DroneSourceConfig(drone="alpha-1")}
        assert (a.drone, d.drone) == (None, "alpha-1")


def test_a_bad_source_is_named_by_its_key() -> None:
    usage = ('expected an RTSP URL or a table with one kind of source: { rtsp = "rtsp://…" } '
             'or { drone = "DRONE-ID" } or { gb28181 = "DEVICE-ID/CHANNEL-ID" } '
             'or { onvif = "http://HOST", profile = "main" }')
    assert problems({"cameras": [{"id": "a", "name": "A", "main": {"rtps": "rtsp://h"}}]}) == [
        f"cameras[0].main: {usage}, got {{'rtps': 'rtsp://h'}}"]
    two = {"rtsp": "rtsp://h", "drone": "d"}
    assert problems({"cameras": [{"id": "a", "name": "A", "main": two}]})[0].startswith(
        f"cameras[0].main: {usage}, got ")
    assert problems({"cameras": [{"id": "a", "name": "A", "main": {"rtsp": "htp://x"}}]}) == [
        'cameras[0].main.rtsp: expected rtsp:// URL, got "htp://x"']
    assert problems({"cameras": [{"id": "a", "name": "A", "main": {"drone": "Alpha 1"}}]}) == [
        'cameras[0].main.drone: expected an id (a-z, 0-9, - and _, at most 32), got "Alpha 1"']
    assert problems({"cameras": [{"id": "a", "name": "A", "drone": "Alpha 1"}]}) == [
        'cameras[0].drone: expected an id (a-z, 0-9, - and _, at most 32), got "Alpha 1"']
    both = {"id": "a", "name": "A", "main": {"rtsp": "rtsp://h"}, "drone": "alpha-1"}
    assert problems({"cameras": [both]})[0].startswith('cameras[0]: camera "a": expected exactly')


# --------------------------------------------------------------------------- line numbers

def test_a_multiline_string_does_not_move_the_lines_after_it(tmp_path: Path) -> None:
    e = load_error(tmp_path / "v.toml",
                   '[[cameras]]\nid = "a"\nname = "A"\nmain = "rtsp://h/a"\n'
                   'notes = """\n[[cameras]]\nid = "x"\n"""\n'
                   "[[cameras]]\nid = 'b'\nname = '''B\n[[drones]]\n'''\nmain = \"htp://x\"\n")
    assert e.problems == ["5: cameras[0].notes: unknown key (check its spelling)",
                          '14: cameras[1].main: expected rtsp:// URL, got "htp://x"']


def test_key_lines_skip_strings_and_arrays_that_span_lines() -> None:
    text = ('a = [\n  "[[cameras]]",\n  [1, 2],\n]\n'  # an array over four lines
            'b = """x \\"""\n[[cameras]]\n"""  # not closed by the escaped quotes\n'
            'c = """two quotes end it"""""\n'
            "d = 'one line [[x]]'  # [[y]]\n"
            "[[cameras]]\nid = \"a\"\n")
    assert key_lines(text) == {("a",): 1, ("b",): 5, ("c",): 8, ("d",): 9,
                               ("cameras", 0): 10, ("cameras", 0, "id"): 11}


# --------------------------------------------------------------------------- secrets

def test_the_tls_key_is_a_secret_reference(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    by_file = parse_config({"uplink": {"tls_cert": "c.pem", "tls_key": {"file": "k.pem"}}})
    assert by_file.uplink.tls_key == SecretRef(file="k.pem")
    # A bare path, as configs gave it before, is a file reference.
    bare = parse_config({"uplink": {"tls_key": "k.pem"}})
    assert bare.uplink.tls_key == by_file.uplink.tls_key
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    by_credential = parse_config({"uplink": {"tls_key": {"credential": "uplink-tls-key"}}})
    assert by_credential.uplink.tls_key is not None
    assert by_credential.uplink.tls_key.path() == tmp_path / "uplink-tls-key"
    # The key itself pasted in is refused, and not repeated back.
    out = problems({"uplink": {"tls_key": "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG\n"}})
    assert out == ['uplink.tls_key: a private key never sits in the config itself: give '
                   '{ file = "key.pem" } or { credential = "name" }']


def test_turn_servers_need_a_username_and_a_credential(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    out = problems({"uplink": {"ice_servers": ["stun:stun.example.org", "turn:turn.example.org"]}})
    assert out == ['uplink.ice_servers[1]: "turn:turn.example.org": a TURN server needs a '
                   'username and a credential, e.g. { url = "turn:HOST", username = "…", '
                   'credential = { file = "…" } }']
    no_credential = {"url": "turns:turn.example.org:5349?transport=tcp", "username": "edge"}
    assert problems({"uplink": {"ice_servers": [no_credential]}})[0].startswith(
        'uplink.ice_servers[0]: "turns:turn.example.org:5349?transport=tcp": a TURN server')
    # The credential is a secret: never its value in the config.
    inline = {"url": "turn:turn.example.org", "username": "edge", "credential": "pw"}
    assert problems({"uplink": {"ice_servers": [inline]}}) == [
        'uplink.ice_servers[0].credential: a secret is never written in the config itself: '
        'give { file = "…" } or { credential = "name" }']
    stun = {"url": "stun:stun.example.org", "username": "edge", "credential": {"file": "t"}}
    assert problems({"uplink": {"ice_servers": [stun]}}) == [
        "uplink.ice_servers[0]: a STUN server takes no username or credential "
        "(in stun:stun.example.org)"]

    (tmp_path / "turn.secret").write_text("s3cret\n")
    (tmp_path / "turn-credential").write_text("from-systemd\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    cfg = parse_config({"uplink": {"ice_servers": [
        "stun:stun.example.org",
        {"url": "turn:turn.example.org", "username": "edge", "credential": {"file": "turn.secret"}},
        {"url": "turn:b.example.org", "username": "edge",
         "credential": {"credential": "turn-credential"}},
    ]}})
    # Read where it is used (a peer connection), not when the config loads.
    assert [s.password(tmp_path) for s in cfg.uplink.ice] == [None, "s3cret", "from-systemd"]
    assert cfg.uplink.ice[1].username == "edge"
    assert "s3cret" not in repr(cfg)


def test_the_recordings_budget() -> None:
    cfg = parse_config({"recorder": {"max_bytes": "50G", "min_free_percent": 10}}).recorder
    assert (cfg.max_bytes, cfg.min_free_percent, cfg.retention_hours) == (50 << 30, 10.0, 72)
    assert parse_config({"recorder": {"max_bytes": 123_456}}).recorder.max_bytes == 123_456
    assert parse_config({"recorder": {"max_bytes": "1.5 TiB"}}).recorder.max_bytes == 3 << 39
    assert parse_config({"recorder": {"max_bytes": "800m"}}).recorder.max_bytes == 800 << 20
    unset = parse_config({}).recorder
    assert (unset.max_bytes, unset.min_free_percent) == (None, 5.0)  # the disk is shared

    usage = 'expected a whole number of bytes or a size such as "800M", "50G" or "1.5T"'
    assert problems({"recorder": {"max_bytes": "lots"}}) == [
        f'recorder.max_bytes: {usage}, got "lots"']
    assert problems({"recorder": {"max_bytes": 1.5}}) == [f"recorder.max_bytes: {usage}, got 1.5"]
    assert problems({"recorder": {"max_bytes": True}}) == [
        f"recorder.max_bytes: {usage}, got true"]
    assert problems({"recorder": {"max_bytes": "0G"}}) == [
        'recorder.max_bytes: expected a size above 0 bytes, got "0G"']
    assert problems({"recorder": {"min_free_percent": 100}}) == [
        "recorder.min_free_percent: input should be less than or equal to 99, got 100"]
    assert problems({"recorder": {"min_free_percent": -1}}) == [
        "recorder.min_free_percent: input should be greater than or equal to 0, got -1"]
    assert problems({"recorder": {"retention_hours": 0}}) == [
        "recorder.retention_hours: input should be greater than 0, got 0"]
