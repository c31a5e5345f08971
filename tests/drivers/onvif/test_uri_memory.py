"""UriMemory: the last stream URI per ONVIF device and profile, in a small file of its own."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest

from drivers.onvif.uri_memory import UriMemory, default_directory

DEVICE = "http://10.0.0.5/onvif/device_service"
URI = "rtsp://10.0.0.5:554/Streaming/Channels/101?token=abc"


def test_a_stored_uri_is_recalled_by_another_memory(tmp_path: Path) -> None:
    UriMemory(tmp_path).remember(DEVICE, "main", URI)
    again = UriMemory(tmp_path)
    assert again.recall(DEVICE, "main") == URI
    # Another profile, or another device, is another key.
    assert again.recall(DEVICE, "sub") is None
    assert again.recall("http://10.0.0.6/onvif/device_service", "main") is None


def test_the_file_is_private_whole_and_names_its_key(tmp_path: Path) -> None:
    memory = UriMemory(tmp_path)
    memory.remember(DEVICE, "main", URI)
    memory.remember(DEVICE, "main", URI.replace("101", "102"))
    path = memory.path(DEVICE, "main")
    assert path is not None and path.parent == tmp_path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # a URI can carry a token
    assert json.loads(path.read_text()) == {
        "version": 1, "address": DEVICE, "profile": "main", "uri": URI.replace("101", "102")}
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp file left


@pytest.mark.parametrize("content", [
    b"", b"{not json", b"\xff\xfe", b"[]", b'{"version": 1, "address": 5}',
    json.dumps({"version": 99, "address": DEVICE, "profile": "main", "uri": URI}).encode(),
    b" " * 20000 + b"{}",
])
def test_a_malformed_file_is_nothing_remembered_said_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes) -> None:
    memory = UriMemory(tmp_path)
    path = memory.path(DEVICE, "main")
    assert path is not None
    path.write_bytes(content)
    with caplog.at_level(logging.DEBUG, logger="drivers.onvif.uri_memory"):
        assert memory.recall(DEVICE, "main") is None
        assert memory.recall(DEVICE, "main") is None
    said = [r for r in caplog.records if r.name == "drivers.onvif.uri_memory"]
    assert len(said) == 1 and str(path) in said[0].getMessage()
    assert "\n" not in said[0].getMessage()


def test_a_file_for_another_device_is_not_read(tmp_path: Path) -> None:
    memory = UriMemory(tmp_path)
    path = memory.path(DEVICE, "main")
    assert path is not None
    path.write_text(json.dumps({"version": 1, "address": "http://10.0.0.9/onvif/device_service",
                                "profile": "main", "uri": URI}))
    assert memory.recall(DEVICE, "main") is None


@pytest.mark.parametrize("uri", ["http://10.0.0.5/stream", "file:///etc/passwd", "rtsp:/x",
                                 "RTSP is fine"])
def test_only_an_rtsp_uri_is_used_from_memory(tmp_path: Path, uri: str) -> None:
    memory = UriMemory(tmp_path)
    memory.remember(DEVICE, "main", uri)
    assert memory.recall(DEVICE, "main") is None
    memory.remember(DEVICE, "main", "rtsps://10.0.0.5:322/main")
    assert memory.recall(DEVICE, "main") == "rtsps://10.0.0.5:322/main"


def test_an_unwritable_directory_is_said_once_and_ignored(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A file where the directory should be: read-only even for root, which this may run as.
    (tmp_path / "cache").write_text("")
    where = tmp_path / "cache" / "onvif"
    memory = UriMemory(where)
    with caplog.at_level(logging.WARNING, logger="drivers.onvif.uri_memory"):
        memory.remember(DEVICE, "main", URI)
        memory.remember(DEVICE, "sub", URI)
        UriMemory(where).remember(DEVICE, "main", URI)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(where) in warnings[0] and "\n" not in warnings[0]
    assert memory.recall(DEVICE, "main") is None


def test_the_default_directory_is_systemds_then_xdgs_then_home(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert default_directory() == tmp_path / "home" / ".cache" / "edge" / "onvif"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # the XDG spec: ignored
    assert default_directory() == tmp_path / "home" / ".cache" / "edge" / "onvif"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_directory() == tmp_path / "xdg" / "edge" / "onvif"
    monkeypatch.setenv("CACHE_DIRECTORY", f"{tmp_path / 'var-cache-edge'}:/var/cache/other")
    assert default_directory() == tmp_path / "var-cache-edge" / "onvif"
    assert UriMemory().directory == tmp_path / "var-cache-edge" / "onvif"
