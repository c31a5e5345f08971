"""The simulated camera's start-up: encoded loops cached on disk, 503 until a stream is ready."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from drivers.rtsp import RtspSource
from drivers.sim.camera import SimCamera, loop_cache, source
from drivers.sim.camera.encoder import EncodeCancelled, EncodedLoop, EncoderSettings, encode_loop
from drivers.source import SourceState
from tests.support.rtsp import poll_until, wait_state

pytestmark = pytest.mark.timeout(60)

# Tiny: these tests are about the cache, not the picture.
TINY = EncoderSettings(name="tiny", width=448, height=128, bitrate=200_000, gop=5)
SECONDS = 0.5


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(loop_cache, "_memory", {})  # a fresh "process" for every test
    return tmp_path / "edge" / "sim-camera"


def test_loop_round_trips_through_the_disk_cache(private_cache: Path) -> None:
    loop = loop_cache.get_loop(TINY, SECONDS)
    files = list(private_cache.iterdir())
    assert [f.suffix for f in files] == [".loop"]
    loop_cache._memory.clear()
    again = loop_cache.get_loop(TINY, SECONDS)
    assert again is not loop and again.aus == loop.aus and again.params == loop.params
    assert again.keyframe_indices == [0, 5, 10]


def test_key_covers_everything_that_changes_the_bytes() -> None:
    base = loop_cache.cache_key(TINY, SECONDS)
    variants = [
        EncoderSettings(name="other", width=448, height=128, bitrate=200_000, gop=5),
        EncoderSettings(name="tiny", width=464, height=128, bitrate=200_000, gop=5),
        EncoderSettings(name="tiny", width=448, height=128, bitrate=300_000, gop=5),
        EncoderSettings(name="tiny", width=448, height=128, bitrate=200_000, gop=10),
        EncoderSettings(name="tiny", width=448, height=128, bitrate=200_000, gop=5, fps=25),
        EncoderSettings(name="tiny", width=448, height=128, bitrate=200_000, gop=5,
                        profile="high"),
        EncoderSettings(name="tiny", width=448, height=128, bitrate=200_000, gop=5,
                        codec="h265"),
        EncoderSettings(name="tiny", width=448, height=128, bitrate=200_000, gop=5,
                        repeat_parameter_sets=False),
        EncoderSettings(name="tiny", width=448, height=128, bitrate=200_000, gop=5,
                        viewport=True),
    ]
    keys = {loop_cache.cache_key(v, SECONDS) for v in variants}
    keys.add(loop_cache.cache_key(TINY, 1.0))
    assert base not in keys and len(keys) == len(variants) + 1
    assert "x264 - core" in base  # the encoder build itself
    # A plain camera's key is what it was before PTZ cameras: its cached loops stay valid.
    assert "viewport" not in base


def test_a_camera_key_names_what_it_did_before_other_loops_shared_the_cache() -> None:
    # The GB/T 28181 device's loops came later: every camera's cached file stays valid.
    key = json.loads(loop_cache.cache_key(TINY, SECONDS))
    assert set(key) == {"format", "settings", "seconds", "encoder", "pyav", "opencv", "numpy"}


def test_a_callers_field_cannot_stand_for_the_caches_own() -> None:
    with pytest.raises(ValueError, match="encoder"):
        loop_cache.canonical_key({"encoder": "mine", "view": 1}, "h264")


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "other-key"])
def test_damaged_cache_file_is_ignored_and_rewritten(private_cache: Path, damage: str) -> None:
    loop = loop_cache.get_loop(TINY, SECONDS)
    (path,) = private_cache.iterdir()
    good = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "flip":
        path.write_bytes(good[:100] + bytes([good[100] ^ 0xFF]) + good[101:])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        other = loop_cache.serialise("{}", loop.aus)
        path.write_bytes(other)
    loop_cache._memory.clear()
    assert loop_cache.load(TINY, SECONDS) is None
    again = loop_cache.get_loop(TINY, SECONDS)
    assert [au.keyframe for au in again.aus] == [au.keyframe for au in loop.aus]
    assert loop_cache.load(TINY, SECONDS) is not None  # rewritten whole
    assert [p.name for p in private_cache.iterdir()] == [path.name]  # no temp files left


def test_unwritable_cache_still_serves_the_loop(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert loop_cache.get_loop(TINY, SECONDS).aus


def test_encode_can_be_cancelled() -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(EncodeCancelled):
        encode_loop(TINY, SECONDS, cancel)


async def test_camera_listens_at_once_and_answers_503_until_ready(
        monkeypatch: pytest.MonkeyPatch) -> None:
    camera = SimCamera("slow-start", main=(448, 256), sub=None, loop_seconds=1.0)
    release = threading.Event()
    real_get_loop = loop_cache.get_loop

    def held_get_loop(settings: EncoderSettings, seconds: float,
                      cancel: threading.Event | None = None) -> EncodedLoop:
        release.wait(60)  # an encode that takes as long as the test wants
        return real_get_loop(settings, seconds, cancel)

    monkeypatch.setattr(source, "get_loop", held_get_loop)
    try:
        await camera.start(wait=False)
        assert camera.running and not camera.ready
        ingest = RtspSource(camera.url())
        await ingest.start()
        try:
            # It retries (about every second) and is told "not yet" each time.
            await poll_until(lambda: ingest.stats.connect_attempts >= 2, within=30)
            assert ingest.state is SourceState.CONNECTING
            assert ingest.reason == "camera busy or starting (RTSP 5xx)"
            release.set()
            await camera.wait_ready()
            await wait_state(ingest, SourceState.LIVE, within=20)
            assert ingest.stats.reconnects == 0  # never live before: not a reconnect
        finally:
            await ingest.stop()
    finally:
        release.set()
        await camera.close()
