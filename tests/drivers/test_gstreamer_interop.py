"""Ingest from a server that is not ours: GStreamer's RTSP server.

Needs Debian's python3 with GObject introspection and GStreamer:
apt-get install -y --no-install-recommends python3-gi gir1.2-gst-rtsp-server-1.0 \
    gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from rtsp_testkit import IngestFactory, decode_access_units, free_port, h264_nal_types, take

from drivers.rtsp import probe

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(30)]

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("gst_rtsp_server.py")


_CHECK = """
import sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
Gst.init(None)
needed = ("videotestsrc", "x264enc", "rtph264pay")
sys.exit(0 if all(Gst.ElementFactory.find(name) for name in needed) else 1)
"""
APT_PACKAGES = (
    "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base "
    "gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly"
)


def _gstreamer_available() -> bool:
    try:
        result = subprocess.run([SYSTEM_PYTHON, "-c", _CHECK], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


pytestmark.append(
    pytest.mark.skipif(
        sys.platform != "linux" or not _gstreamer_available(),
        reason=f"GStreamer RTSP server not installed (apt-get install {APT_PACKAGES})",
    )
)


@pytest.fixture
async def gst_url() -> AsyncIterator[str]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        SYSTEM_PYTHON,
        str(SERVER_SCRIPT),
        str(port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(10):
            line = await process.stdout.readline()
        assert line.strip() == b"READY", line
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
    assert result.fps is not None and abs(result.fps - 30) < 2
    assert result.gop == 30
