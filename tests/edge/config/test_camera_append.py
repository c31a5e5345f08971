"""A camera appended to a config file as text: the file's own text kept, checked before it is
written, written atomically with its permissions, and refused with one line."""

from __future__ import annotations

import os
import stat
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.config import VehicleConfig, load_config, parse_config
from edge.config.camera_append import (
    AppendError,
    TomlValue,
    append_camera,
    camera_table,
    gb_channel_cameras,
    toml_string,
)
from edge.config.cameras import Gb28181SourceConfig

DEVICE = "34020000001320000001"
CHANNELS = ("34020000001310000001", "34020000001310000002")

CONFIG = f"""# The test vehicle. Comments, blank lines and order must survive.
vehicle = "test"   # trailing comment

[[cameras]]
id = "dome"
name = "Dome"  # the first channel
main = {{ gb28181 = "{DEVICE}/{CHANNELS[0]}" }}

[uplink]
listen = "127.0.0.1:8443"

[demo]
# the last table of the file: an appended [[cameras]] must not land in it
"""


def source(channel: str) -> dict[str, str | dict[str, str]]:
    return {"name": "布控球通道2", "main": {"gb28181": f"{DEVICE}/{channel}"}}


def write(tmp_path: Path, text: str = CONFIG, mode: int = 0o640) -> Path:
    path = tmp_path / "vehicle.toml"
    path.write_bytes(text.encode())
    path.chmod(mode)
    return path


def test_the_camera_is_appended_and_the_text_before_it_kept(tmp_path: Path) -> None:
    path = write(tmp_path)
    assert append_camera(path, "gb-0001-2", source(CHANNELS[1]),
                         comment="Adopted by test: device, channel.") == path.resolve()
    text = path.read_text()
    assert text.startswith(CONFIG)
    assert text[len(CONFIG):] == (
        '\n# Adopted by test: device, channel.\n[[cameras]]\nid = "gb-0001-2"\n'
        f'name = "布控球通道2"\nmain = {{ gb28181 = "{DEVICE}/{CHANNELS[1]}" }}\n')
    cfg = load_config(path)
    cam = cfg.cameras[-1]
    assert (cam.id, cam.name) == ("gb-0001-2", "布控球通道2")
    assert isinstance(cam.main, Gb28181SourceConfig)
    assert (cam.main.device_id, cam.main.channel_id) == (DEVICE, CHANNELS[1])
    # The tables before it are what they were: it did not land inside [demo].
    before = parse_config(tomllib.loads(CONFIG))
    assert (cfg.demo, cfg.uplink, cfg.cameras[:-1]) == (before.demo, before.uplink,
                                                        before.cameras)
    assert gb_channel_cameras(cfg) == {(DEVICE, CHANNELS[0]): "dome",
                                       (DEVICE, CHANNELS[1]): "gb-0001-2"}
    # Same permission bits, and no temporary file left beside it.
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["vehicle.toml"]


def test_a_file_without_a_final_newline_and_with_crlf_lines(tmp_path: Path) -> None:
    crlf = CONFIG.replace("\n", "\r\n").rstrip("\r\n")  # the last line has no line end
    path = write(tmp_path, crlf)
    append_camera(path, "cam2", source(CHANNELS[1]))
    raw = path.read_bytes()
    assert raw.startswith(crlf.encode()) and b"\n" not in raw.replace(b"\r\n", b"")
    assert load_config(path).cameras[-1].id == "cam2"


def test_an_empty_file_gets_just_the_table(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    append_camera(path, "cam", source(CHANNELS[0]))
    assert path.read_text().startswith("[[cameras]]\n")
    assert load_config(path).cameras[0].id == "cam"


def test_a_symlink_stays_a_link_and_its_target_changes(tmp_path: Path) -> None:
    real = write(tmp_path)
    link = tmp_path / "current.toml"
    link.symlink_to(real.name)
    assert append_camera(link, "cam2", source(CHANNELS[1])) == real
    assert link.is_symlink() and load_config(real).cameras[-1].id == "cam2"


def test_any_name_round_trips_through_toml() -> None:
    for name in ('say "hi"', "back\\slash", "tab\there", "nul\x00 del\x7f esc\x1b",
                 "emoji 🚒 and 中文", "line\nbreak"):
        parsed = tomllib.loads(camera_table({"id": "x", "name": name}))
        assert parsed["cameras"][0]["name"] == name
    assert toml_string("a\x7fb") == '"a\\u007Fb"'
    # A comment cannot break out of its line or carry what TOML refuses in one.
    assert tomllib.loads(camera_table({"id": "x"}, comment="one\nid = 'two'\x00"))[
        "cameras"] == [{"id": "x"}]


def refused(path: Path, camera_id: str,
            refuse: Callable[[VehicleConfig], str | None] = lambda cfg: None) -> str:
    before = path.read_bytes()
    with pytest.raises(AppendError) as e:
        append_camera(path, camera_id, source(CHANNELS[1]), refuse=refuse)
    assert path.read_bytes() == before, "a refusal wrote the file"
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    line = str(e.value)
    assert "\n" not in line and "Traceback" not in line
    return line


def test_refusals_are_one_line_and_write_nothing(tmp_path: Path) -> None:
    path = write(tmp_path)
    assert refused(path, "dome") == f"camera id dome is taken in {path} (by 'Dome'); " \
        "choose another"
    assert refused(path, "Bad Id").startswith('camera id "Bad Id" is not an id')
    assert refused(path, "cam2", refuse=lambda cfg: "channel 2 is camera x already") == \
        "channel 2 is camera x already"
    too_long: dict[str, TomlValue] = {"name": "n" * 65,
                                      "main": {"gb28181": f"{DEVICE}/{CHANNELS[1]}"}}
    with pytest.raises(AppendError) as e:
        append_camera(path, "cam2", too_long)
    assert str(e.value).startswith(f"with camera cam2 added, {path} would not load: ")
    assert "cameras[1].name" in str(e.value)


def test_a_read_only_file_is_refused_even_to_root(tmp_path: Path) -> None:
    path = write(tmp_path, mode=0o444)
    assert refused(path, "cam2") == f"{path} is not writable (mode 0444); nothing written"


def test_a_place_we_cannot_write_in_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        path = write(tmp_path)
        tmp_path.chmod(0o555)
        try:
            assert refused(path, "cam2").startswith(f"cannot write beside {path}")
        finally:
            tmp_path.chmod(0o755)
        return
    # Root writes in any directory whatever its mode: a read-only mount stops it too.
    folder = tmp_path / "ro"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], check=True)
    try:
        path = write(folder)
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        assert refused(path, "cam2") == (f"{path} is not writable (a read-only file system); "
                                         "nothing written")
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_file_that_does_not_load_now_is_left_alone(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG + "\nnot toml at all\n")
    line = refused(path, "cam2")
    assert line.startswith(f"{path} does not load as it is (not valid TOML: ")
    assert line.endswith("fix it first: nothing written")
    path = write(tmp_path, CONFIG + "\n[bus]\nbogus = 1\n")
    assert "bus.bogus: unknown key" in refused(path, "cam2")


def test_cameras_written_as_an_inline_array_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, 'cameras = [{ id = "a", name = "A", main = "rtsp://10.0.0.1/a" }]\n')
    line = refused(path, "cam2")
    assert line.startswith(f"with camera cam2 added, {path} would not load: not valid TOML")


def test_a_file_saved_meanwhile_wins(tmp_path: Path) -> None:
    path = write(tmp_path)

    def someone_saves(cfg: object) -> None:
        # Another editor saves between our read and our rename (the check runs between).
        path.write_text(CONFIG + "\n# edited meanwhile\n")

    with pytest.raises(AppendError) as e:
        append_camera(path, "cam2", source(CHANNELS[1]), refuse=someone_saves)
    assert str(e.value) == f"{path} changed while the camera was being added; nothing " \
        "written, try again"
    assert path.read_text().endswith("# edited meanwhile\n")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
