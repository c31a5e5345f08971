"""The latency bench's WHEP viewers as a process of their own, for the centre's namespace.

``python -m edge.bench.centre_viewers URL TOKEN_FILE [--viewers N]``: N
:class:`~edge.bench.whep_viewer.WhepViewer` sessions of `URL`, each decoding every
frame and reading back the wall-clock time burnt into the picture, as the in-process
viewers of :mod:`edge.bench.latency` do. ``edge bench latency --link`` starts it
inside the link emulator's centre namespace (a process joins a namespace whole; the
bench's own process stays outside, where the emulator relays). It prints one JSON
object a line (``v`` is the viewer's index)::

    {"v": 0, "kind": "posted", "post_wall_ms": 1700000000000, "location": "http://..."}
    {"v": 0, "kind": "state", "state": "connected", "wall_ms": ...}
    {"v": 0, "kind": "first_frame", "ms": 2140.5}
    {"v": 0, "kind": "frame", "t": <decoded, wall ms>, "r": <rendered, wall ms | null>,
     "ts": <RTP timestamp>}
    {"v": 0, "kind": "end", "state": "connected", "ended": false, "frames": 1790}
    {"v": 0, "kind": "warning", "warning": "..."}
    {"kind": "error", "error": "..."}

Each viewer's HTTP connection is open before its POST, as the centre's page has one
(it loaded the page and reads ``/api/state``): a POST then costs one round trip, not a
TCP handshake more. Lost packets are asked for again as browsers ask
(:class:`RepeatedNacks`).

It runs until SIGTERM or SIGINT (or ``--max-seconds``, a bound of its own should the
bench die without stopping it), then prints an ``end`` line per viewer, DELETEs the
sessions and exits 0. A POST that is refused or not answered is one ``error`` line and
exit 1. The clock is the host's: a process in another network namespace reads the
same wall clock as the camera that rendered the picture.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import av
from aiortc.rtcrtpreceiver import NackGenerator, RTCRtpReceiver
from aiortc.rtp import RtpPacket

from drivers.sim.camera.timestamp_blocks import MODULUS
from edge.bench.latency import _rendered_ms
from edge.bench.whep_viewer import WhepRefused, WhepViewer

# The POST crosses the emulated link: a TCP handshake and the request, 600 ms each on geo.
POST_TIMEOUT_S = 30.0
_PR_SET_PDEATHSIG = 1
# A browser that only receives has no round trip measure of its own and takes 100 ms:
# it asks for a missing packet again every 100 ms, ten times at most (Chromium's
# NackRequester).
NACK_REPEAT_S = 0.1
NACK_RETRIES = 10


class RepeatedNacks(NackGenerator):
    """aiortc's NACK bookkeeping, plus what a browser does that aiortc does not: ask again.

    aiortc's receiver sends one NACK when it sees a gap and names the packet again only
    when a later gap happens, after which it has stopped tracking it (128 packets). So a
    lost NACK or a lost repair leaves a hole for good, and its jitter buffer holds every
    later frame until 512 packets have passed: 8-10 s of the sub stream, a freeze no
    browser shows. The bench measures the uplink, so its viewers ask as browsers do.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ssrc: int | None = None
        self._asked: dict[int, tuple[float, int]] = {}  # seq -> (last asked, times)

    def add(self, packet: RtpPacket) -> bool:
        self.ssrc = packet.ssrc  # the media SSRC: a repair is unwrapped before it comes here
        missed: bool = super().add(packet)
        return missed

    def due(self, now: float) -> list[int]:
        """Missing packets to ask for again now."""
        for seq in [s for s in self._asked if s not in self.missing]:
            del self._asked[seq]
        due = []
        for seq in sorted(self.missing):
            last, times = self._asked.setdefault(seq, (now, 1))  # aiortc asked once
            if times <= NACK_RETRIES and now - last >= NACK_REPEAT_S:
                self._asked[seq] = (now, times + 1)
                due.append(seq)
        return due

    @classmethod
    def install(cls, receiver: RTCRtpReceiver) -> RepeatedNacks | None:
        """Replace `receiver`'s generator (private to aiortc: None if it has none)."""
        if not isinstance(getattr(receiver, "_RTCRtpReceiver__nack_generator", None),
                          NackGenerator) or not hasattr(receiver, "_send_rtcp_nack"):
            return None
        generator = cls()
        receiver._RTCRtpReceiver__nack_generator = generator  # type: ignore[attr-defined]
        return generator

    async def repeat(self, receiver: RTCRtpReceiver) -> None:
        while True:
            await asyncio.sleep(NACK_REPEAT_S)
            due = self.due(time.monotonic())
            if due and self.ssrc is not None:
                await receiver._send_rtcp_nack(self.ssrc, due)


def _emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


def _frame_line(index: int, frame: av.VideoFrame) -> dict[str, Any]:
    now_ms = time.time_ns() // 1_000_000
    stamp = _rendered_ms(frame)
    rendered = None if stamp is None else now_ms - ((now_ms - stamp) % MODULUS)
    return {"v": index, "kind": "frame", "t": now_ms, "r": rendered, "ts": frame.pts}


def _watch(index: int, viewer: WhepViewer) -> None:
    def on_frame(frame: av.VideoFrame) -> None:
        if viewer.stats.frames == 1:
            _emit({"v": index, "kind": "first_frame", "ms": viewer.stats.first_frame_ms})
        _emit(_frame_line(index, frame))

    def on_state() -> None:
        _emit({"v": index, "kind": "state", "state": viewer.pc.connectionState,
               "wall_ms": time.time_ns() // 1_000_000})

    viewer.on_frame = on_frame
    viewer.pc.on("connectionstatechange", on_state)


async def run(url: str, token: str, viewers: int, marker_frames: bool,
              max_seconds: float) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    repeaters: list[asyncio.Task[None]] = []
    async with aiohttp.ClientSession() as http:
        clients = [WhepViewer(url, token, http=http, marker_frames=marker_frames)
                   for _ in range(viewers)]
        try:
            async def post(index: int, viewer: WhepViewer) -> None:
                _watch(index, viewer)
                post_wall_ms = time.time_ns() // 1_000_000
                await viewer.start(timeout=POST_TIMEOUT_S)
                # No RTP before the answer is in and ICE and DTLS are through.
                receiver = viewer.pc.getTransceivers()[0].receiver
                if (nacks := RepeatedNacks.install(receiver)) is not None:
                    repeaters.append(asyncio.create_task(nacks.repeat(receiver)))
                else:
                    _emit({"v": index, "kind": "warning",
                           "warning": "aiortc's receiver changed: NACKs are not repeated"})
                _emit({"v": index, "kind": "posted", "post_wall_ms": post_wall_ms,
                       "location": viewer.location})

            async def warm() -> None:
                async with http.get(urljoin(url, "/api/state"),
                                    headers={"Authorization": f"Bearer {token}"},
                                    timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT_S)) as r:
                    await r.read()

            try:
                # together, so that each viewer has a connection of its own in the pool
                await asyncio.gather(*(warm() for _ in clients))
                await asyncio.gather(*(post(i, v) for i, v in enumerate(clients)))
            except WhepRefused as e:
                _emit({"kind": "error", "error": f"the uplink refused a viewer: {e}"})
                return 1
            except (aiohttp.ClientError, TimeoutError) as e:
                _emit({"kind": "error", "error": f"no answer to a viewer's POST: "
                                                 f"{type(e).__name__}: {e}".rstrip(": ")})
                return 1
            except Exception as e:  # one line for the bench, never a traceback
                _emit({"kind": "error", "error": f"a viewer failed to start: "
                                                 f"{type(e).__name__}: {e}".rstrip(": ")})
                return 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max_seconds)
            for i, v in enumerate(clients):
                _emit({"v": i, "kind": "end", "state": v.pc.connectionState,
                       "ended": v.ended.is_set(), "frames": v.stats.frames})
        finally:
            for task in repeaters:
                task.cancel()
            for v in clients:
                with contextlib.suppress(Exception):
                    await v.close()
    return 0


def die_with_parent() -> None:
    """A viewer process stopped by its bench or test: should that be killed outright,
    stop with it."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:
        sys.exit(1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge.bench.centre_viewers",
                                description=__doc__.partition("\n")[0] if __doc__ else None)
    p.add_argument("url", help="the WHEP endpoint, e.g. http://198.18.0.2:8800/whep/bench")
    p.add_argument("token_file", help="a file holding the uplink's bearer token")
    p.add_argument("--viewers", type=int, default=1)
    p.add_argument("--stock-receiver", action="store_true",
                   help="aiortc's own jitter buffer (adds a frame interval)")
    p.add_argument("--max-seconds", type=float, default=3600.0,
                   help="stop after this long even if nobody says so")
    args = p.parse_args(argv)
    die_with_parent()
    token = Path(args.token_file).read_text().strip()
    return asyncio.run(run(args.url, token, args.viewers, not args.stock_receiver,
                           args.max_seconds))


if __name__ == "__main__":
    sys.exit(main())
