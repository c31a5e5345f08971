"""Real encoded video for the media tests, and tools nobody here wrote to read it back.

Units come from the simulated camera's encoder (x264 / x265 through PyAV, closed GOPs,
parameter sets before every keyframe, as a dome camera sends them), loops cached on
disk by `drivers.sim.camera.loop_cache`, repeated and stamped as the camera service
would put them on the media plane.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from drivers.rtsp.annexb import Codec, join_annexb
from drivers.sim.camera.encoder import EncoderSettings
from drivers.sim.camera.loop_cache import get_loop
from edge.media.wire import MediaFrame

TB = Fraction(1, 90_000)
# The smallest picture the simulated camera's scene draws its timestamp blocks into.
WIDTH, HEIGHT = 416, 240
START_NS = 1_796_150_880_000_000_000  # 2026-12-01T18:48:00Z: names are predictable


def encoded_units(codec: Codec = "h264", seconds: float = 4.0, *, fps: int = 30,
                  gop: int = 30, width: int = WIDTH, height: int = HEIGHT, epoch: int = 1,
                  first_seq: int = 1, first_pts: int | None = 0,
                  start_ns: int = START_NS) -> list[MediaFrame]:
    """`seconds` of a camera as media-plane units: a keyframe every `gop` units, pts in
    1/90000 s (None throughout when `first_pts` is None), received `1/fps` s apart."""
    loop_frames = gop * math.ceil(2 * fps / gop)  # whole GOPs, so that the loop repeats
    loop = get_loop(EncoderSettings(f"rec-{codec}", width, height, fps=fps, gop=gop,
                                    codec=codec, bitrate=300_000), loop_frames / fps)
    count = round(seconds * fps)
    units = []
    for i in range(count):
        au = loop.aus[i % len(loop.aus)]
        pts = None if first_pts is None else first_pts + i * 90_000 // fps
        units.append(MediaFrame(epoch, first_seq + i, au.keyframe, pts, pts, TB, codec,
                                start_ns + i * 1_000_000_000 // fps, join_annexb(au.nals)))
    return units


def has_ffprobe() -> bool:
    return shutil.which("ffprobe") is not None


def ffprobe(path: Path) -> dict[str, Any]:
    """ffprobe's JSON for the file's first video stream, format and every packet."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_streams",
         "-show_format", "-show_packets", "-show_entries",
         "packet=pts,dts,duration,flags,pos:stream:format", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0 and not out.stderr.strip(), \
        f"ffprobe failed on {path} ({out.returncode}): {out.stderr.strip()[:500]}"
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def decode_all(path: Path) -> int:
    """Decode every frame of the file's video with FFmpeg (PyAV), raising on any error;
    returns how many frames it gave."""
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))
