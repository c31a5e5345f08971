"""Ingest from a server that is not ours: GStreamer's RTSP server.

Needs Debian's python3 with GObject introspection and GStreamer:
apt-get install -y --no-install-recommends python3-gi gir1.2-gst-rtsp-server-1.0 \
    gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from drivers.rtsp import probe
from drivers.rtsp.renew_stream import RenewUnsupported, renew_stream
from tests.support import free_port, require
from tests.support.rtsp import IngestFactory, decode_access_units, h264_nal_types, take

# Generous: the first Gst.init on a machine builds GStreamer's plugin registry.
pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]

SYSTEM_PYTHON = "/usr/bin/python3"
HAVE_SYSTEM_PYTHON = Path(SYSTEM_PYTHON).exists()
SERVER_SCRIPT = Path(__file__).with_name("gst_rtsp_server.py")
APT_PACKAGES = (
    "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base "
    "gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly"
)
MISSING = 3  # the server script's exit status for "not installed"
# Only against a hang: a slow start is waited for, and one that never comes is a failure,
# never "not installed".
START_TIMEOUT_S = 60.0


@pytest.fixture
async def gst_url() -> AsyncIterator[str]:
    require(HAVE_SYSTEM_PYTHON,
            f"{SYSTEM_PYTHON} is not installed (apt-get install {APT_PACKAGES})")
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        SYSTEM_PYTHON,
        str(SERVER_SCRIPT),
        str(port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )

    async def stderr() -> str:
        assert process.stderr is not None
        if process.returncode is None:
            return "(still running)"
        return (await process.stderr.read()).decode(errors="replace")[-2000:]

    try:
        assert process.stdout is not None
        line: str | None = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(START_TIMEOUT_S):
                line = (await process.stdout.readline()).decode(errors="replace").strip()
                if not line:  # it ended without a word: wait for its status and stderr
                    await process.wait()
        if line is None:
            pytest.fail(f"GStreamer's RTSP server did not come up within {START_TIMEOUT_S:g} s "
                        "(installed, but slow or hung)", pytrace=False)
        if line.startswith("MISSING "):
            await process.wait()
            assert process.returncode == MISSING, (line, process.returncode)
            require(False, f"{line.removeprefix('MISSING ')} (apt-get install {APT_PACKAGES})")
        if line != "READY":
            pytest.fail(f"GStreamer's RTSP server did not start: {line or '(no output)'}, "
                        f"exit {process.returncode}:\n{await stderr()}", pytrace=False)
        yield f"rtsp://127.0.0.1:{port}/test"
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                async with asyncio.timeout(5):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_ingest_from_gstreamer(
    gst_url: str, ingest_factory: IngestFactory, transport: str
) -> None:
    ingest = await ingest_factory(gst_url, transport=transport)
    aus = await take(ingest, 35, within=15)
    info = ingest.stream_info
    assert info is not None
    assert (info.codec, info.width, info.height) == ("h264", 320, 240)
    assert info.profile in {"Constrained Baseline", "Baseline"}
    # Every keyframe carries SPS and PPS ahead of its slices (x264enc sends them
    # in-band after an access unit delimiter; the ingest adds them otherwise).
    assert aus[0].keyframe
    for au in aus:
        if au.keyframe:
            types = h264_nal_types(au.data)
            assert types.index(7) < types.index(8) < types.index(5), types
    frames = await asyncio.to_thread(decode_access_units, "h264", aus)
    assert len(frames) >= 30 and (frames[0].width, frames[0].height) == (320, 240)


async def test_probe_gstreamer(gst_url: str) -> None:
    result = await probe(gst_url, 1.5)
    assert (result.codec, result.width, result.height) == ("h264", 320, 240)
    # From GStreamer's presentation timestamps: about 30 (a loaded machine may drop frames
    # upstream, never add any); a misread time base would be off by orders of magnitude.
    assert result.fps is not None and 1 < result.fps <= 32, result
    assert result.gop == 30


async def test_a_camera_that_cannot_renew_its_stream_says_so_once(
        gst_url: str, ingest_factory: IngestFactory) -> None:
    # GStreamer's server knows no Renew-Stream: a keyframe request is refused
    # (451), the source remembers it and does not ask that camera again.
    with pytest.raises(RenewUnsupported, match="451"):
        await renew_stream(gst_url)
    ingest = await ingest_factory(gst_url)
    await take(ingest, 5, within=30)
    first = await ingest.request_keyframe()
    assert first is not None and "does not renew streams" in first
    assert await ingest.request_keyframe() == first
