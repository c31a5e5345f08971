"""Simulated 5G dome camera: a real RTSP/1.0 server with synthetic H.264/H.265 video.

Streams: ``rtsp://HOST:PORT/NAME/main`` (1280x720, ~2 Mbit/s) and
``rtsp://HOST:PORT/NAME/sub`` (640x360, ~512 kbit/s), 30 fps, 1 s GOP, RTP over
TCP-interleaved or UDP unicast, optional Basic/Digest authentication.

Entry point for ``edge sim camera --name NAME --port P`` (blocks until cancelled)::

    async def run_sim_camera(name: str, port: int, host: str = "127.0.0.1", **options) -> None

`options` are the keyword arguments of `SimCamera`:

    main=(1280, 720), sub=(640, 360) or None, main_bitrate=2_000_000,
    sub_bitrate=512_000, fps=30, gop=30, codec="h264"|"h265",
    profile="baseline"|"main"|"high", live=False, loop_seconds=2.0,
    user=None, password=None, auth="digest"|"basic",
    garbage=False, close_after_s=None, stall_after_s=None,
    repeat_parameter_sets=True, session_timeout=60.0, mtu=1400, view=None

``view`` (a callable returning a `viewport.View`) makes it a PTZ camera whose
picture is a window onto a larger world: the pre-encoded loop while the view is
home, a live encode of the window elsewhere (`source.SteerableSource`). The ONVIF
device (`drivers.sim.onvif`, ``edge sim camera --onvif PORT``) steers it.

By default each stream encodes `loop_seconds` once (libx264 veryfast,
zerolatency, no B-frames) and replays it with live RTP timestamps, so an idle
camera costs nothing and a viewed one costs only packetisation.  Encoded loops
are cached on disk under ``$XDG_CACHE_HOME/edge/sim-camera/`` (see
`loop_cache`), so only the first start with given settings pays for the
encode.  The camera listens at once; while a stream is being prepared its
DESCRIBE is answered ``503 Service Unavailable`` with ``Retry-After: 1``.
`start()` waits for every stream; `start(wait=False)` does not.
``live=True`` encodes in real time (preset ultrafast, one encoder thread per
stream, running only while somebody plays it) so the picture's timestamp blocks
carry the real encode time; read them back with `decode_timestamp_blocks`.
In loop mode the blocks carry the time of the start-up encode, which is
useless for latency measurement.

Fault injection (real server behaviour): ``garbage=True`` sends random bytes
instead of RTP after PLAY; ``close_after_s=N`` drops the connection N seconds
after PLAY; ``stall_after_s=N`` stops sending media N seconds after PLAY but
keeps the connection (a hung encoder); ``repeat_parameter_sets=False`` sends
SPS/PPS only with the very first IDR of the loop; ``stop()`` then ``start()``
reopens on the same port.

A keyframe on request: ``SET_PARAMETER`` with ``Renew-Stream: yes`` (Axis's
RTSP request; see `server`), counted in ``SimCamera.keyframes_requested``.

Run it stand-alone with ``edge sim camera --name cam1 --port 8554``.

Several cameras in one process (``edge sim cameras``, the demo's ``sim-cameras``)::

    async def run_sim_cameras(specs: Sequence[CameraSpec], host: str = "127.0.0.1",
                              **options) -> None

Each `CameraSpec` is one camera, an ONVIF one too; a camera that cannot listen is one
error line and is tried again while the others serve (`host`).
"""

from typing import TYPE_CHECKING, Any

from drivers.sim.camera.host import CameraSpec, run_sim_cameras
from drivers.sim.camera.server import SimCamera, StreamSpec, run_sim_camera
from drivers.sim.camera.session import SessionInfo

if TYPE_CHECKING:
    from drivers.sim.camera.timestamp_blocks import (
        decode_timestamp_blocks,
        draw_timestamp_blocks,
        wall_ms,
    )


def __getattr__(name: str) -> Any:
    # The timestamp blocks need numpy, which a camera serving cached loops never
    # imports otherwise: loaded when a benchmark or a test asks for them.
    if name in ("decode_timestamp_blocks", "draw_timestamp_blocks", "wall_ms"):
        from drivers.sim.camera import timestamp_blocks

        return getattr(timestamp_blocks, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CameraSpec",
    "SessionInfo",
    "SimCamera",
    "StreamSpec",
    "decode_timestamp_blocks",
    "draw_timestamp_blocks",
    "run_sim_camera",
    "run_sim_cameras",
    "wall_ms",
]
