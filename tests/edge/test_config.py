"""The vehicle config: the shipped files pass; every kind of mistake is named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge.config import ConfigError, SecretRef, load_config, parse_config
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


def test_errors_name_the_line(tmp_path: Path) -> None:
    p = tmp_path / "v.toml"
    p.write_text('vehicle = "v"\n\n[[drones]]\nid = "a"\nconnection = "tcp:h:1"\n'
                 '[[drones.endpoints]]\nname = "qgc"\nurl = "udpout:h:1"\nmode = "rw"\n'
                 '[[drones.endpoints]]\nname = "x"\nurl = "nope"\n')
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert e.value.problems[0].startswith("12: drones[0].endpoints[1].url: ")
    assert str(e.value).startswith(f"{p}:12: drones[0].endpoints[1].url: ")


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
