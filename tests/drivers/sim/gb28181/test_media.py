"""The simulated GB/T 28181 device's view loops: kept on disk in the camera simulator's loop
cache, so that a device whose loops are all there never loads OpenCV (issue 17, memory)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from drivers.gb28181 import ptz_cmd
from drivers.gb28181.platform import GbPlatform
from drivers.sim.camera import loop_cache
from drivers.sim.camera.encoder import EncoderSettings
from drivers.sim.gb28181.device import channel_ids
from drivers.sim.gb28181.media import WIDTH, View, view_loop, view_loop_key
from tests.support import REPO, die_with_test, eventually
from tests.support.gb28181_media import MediaPort, media_port

pytestmark = pytest.mark.timeout(60)

NAME = "0001 ch1"
PLATFORM_ID = "34020000002000000001"
DEVICE_ID = "34020000001320000001"
PASSWORD = "12345678"


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "edge" / "sim-camera"


def loop_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.loop")) if directory.is_dir() else []


def test_a_hit_is_the_encode_that_stored_it(private_cache: Path) -> None:
    first = view_loop(NAME, View(pan=1))
    (path,) = loop_files(private_cache)
    stored = path.stat()
    again = view_loop(NAME, View(pan=1))
    assert again == first
    assert len(first) == 25 and first[0].keyframe
    # Read, not written again: a second encode would have replaced the file.
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (stored.st_ino, stored.st_mtime_ns)
    assert "p1t0z0" in path.name  # which view a file holds, for a person looking


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_file_is_encoded_again(private_cache: Path, damage: str) -> None:
    view_loop(NAME, View())
    (path,) = loop_files(private_cache)
    good = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(good[: len(good) // 2])
    else:
        path.write_bytes(good[:200] + bytes([good[200] ^ 0xFF]) + good[201:])
    again = view_loop(NAME, View())
    assert len(again) == 25 and again[0].keyframe
    assert [p.name for p in private_cache.iterdir()] == [path.name]  # no temp files left
    assert loop_cache.load_entry(view_loop_key(NAME, View()), path) is not None  # whole again


def test_an_unwritable_cache_still_serves_the_loop(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert view_loop(NAME, View())[0].keyframe


def test_the_key_differs_per_view_and_per_setting() -> None:
    base = view_loop_key(NAME, View())
    variants = [
        view_loop_key(NAME, View(pan=1)),
        view_loop_key(NAME, View(pan=-1)),
        view_loop_key(NAME, View(tilt=1)),
        view_loop_key(NAME, View(zoom=1)),
        view_loop_key(NAME, View(pan=1, tilt=1, zoom=-1)),
        view_loop_key("0001 ch2", View()),
        view_loop_key(NAME, View(), codec="h265"),
        view_loop_key(NAME, View(), width=352),
        view_loop_key(NAME, View(), height=288),
        view_loop_key(NAME, View(), fps=30),
        # Never a camera's loop, whatever the settings.
        loop_cache.cache_key(EncoderSettings(name=NAME, width=320, height=180, fps=25,
                                             bitrate=400_000, gop=25, viewport=True), 1.0),
    ]
    assert base not in variants and len(set(variants)) == len(variants)
    assert "x264 - core" in base  # the encoder build itself
    assert "x265" in view_loop_key(NAME, View(), codec="h265")


# -- the real `edge sim gb28181`, started twice on one cache ---------------------------------


def loaded(pid: int, package: str) -> bool:
    """Whether a package with a compiled part (cv2, numpy) is imported in process `pid`.
    Read from outside, so the simulator runs exactly as the demo runs it, no debug hook."""
    return f"/{package}/" in Path(f"/proc/{pid}/maps").read_text()


def output(log: Path) -> str:
    return log.read_text(errors="replace")


@pytest.fixture
async def platform() -> AsyncIterator[GbPlatform]:
    gb = GbPlatform(platform_id=PLATFORM_ID, password=PASSWORD, host="127.0.0.1", port=0)
    await gb.start()
    yield gb
    await gb.close()


@contextlib.asynccontextmanager
async def simulator(gb: GbPlatform, cache_home: Path,
                    log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """`edge sim gb28181` registered to `gb`, with `cache_home` as XDG_CACHE_HOME; SIGTERM
    after the block (it unregisters on its way out)."""
    host, port = gb.address
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home)}
    # A file, not a pipe: nobody reads a pipe while the test runs.
    err = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge", "sim", "gb28181", "--id", DEVICE_ID,
            "--platform", f"udp:{host}:{port}", "--platform-id", PLATFORM_ID,
            "--password", PASSWORD, "--keepalive-s", "5", cwd=REPO, env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=err,
            preexec_fn=die_with_test)
    finally:
        os.close(err)
    try:
        # Generous: the interpreter, PyAV and (cold) the first loops' encode, on a shared
        # machine.
        await eventually(lambda: gb.registrar.get(DEVICE_ID), within=30,
                         what=f"the simulator to register ({log})")
        yield proc
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 20)
        assert proc.returncode == 0, output(log)
        await eventually(lambda: gb.registrar.get(DEVICE_ID) is None,
                         what="the simulator to unregister")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def watch(gb: GbPlatform, channel: str, media: MediaPort, ssrc: str) -> None:
    """Invite `channel` to `media` and wait for pictures of its home view."""
    await gb.invite(DEVICE_ID, channel, media_host="127.0.0.1", media_port=media.port,
                    ssrc=ssrc)
    await eventually(lambda: media.sink.pictures >= 5, within=20,
                     what=f"five decoded pictures of {channel}")
    home = media.sink.marker_x()
    assert home is not None and abs(home - WIDTH / 2) < 8


@pytest.mark.timeout(180)  # two simulator starts, one of them encoding, on a shared machine
async def test_a_warm_start_serves_from_disk_without_opencv(platform: GbPlatform,
                                                             tmp_path: Path) -> None:
    cache_home = tmp_path / "cache"
    directory = cache_home / "edge" / "sim-camera"
    async with simulator(platform, cache_home, tmp_path / "cold.log") as cold:
        await eventually(lambda: len(loop_files(directory)) == 2, within=30,
                         what="both channels' home loops on disk")
        # A cold start drew: the check below does see OpenCV when it is there.
        assert loaded(cold.pid, "cv2") and loaded(cold.pid, "numpy")

    first, second = channel_ids(DEVICE_ID, 2)
    async with simulator(platform, cache_home, tmp_path / "warm.log") as warm, \
            media_port("udp", 200001234) as one, media_port("udp", 200001235) as two:
        # Both channels' loops are ready once both send pictures: nothing left to encode.
        await watch(platform, first, one, "0200001234")
        await watch(platform, second, two, "0200001235")
        assert not loaded(warm.pid, "cv2")
        assert not loaded(warm.pid, "numpy")
        assert len(loop_files(directory)) == 2

        # A position never cached is drawn now: OpenCV comes in, the picture pans.
        await platform.ptz(DEVICE_ID, first, ptz_cmd.ptz(pan=-1))
        await eventually(lambda: (x := one.sink.marker_x()) is not None
                         and x > WIDTH / 2 + WIDTH / 16, within=20, what="the picture to pan")
        assert loaded(warm.pid, "cv2")
        assert len(loop_files(directory)) == 3
