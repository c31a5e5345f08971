"""The failover bench's WHEP viewer: a process in the centre's namespace, paired over the tunnel.

``python -m edge.bench.failover_viewer URL TOKEN_FILE --local ADDRESS --remote ADDRESS``:
one aiortc WHEP session of `URL` (:class:`~edge.bench.whep_viewer.WhepViewer`, frames
released on the RTP marker and lost packets asked for again as browsers do, as the
latency bench's viewers), every decoded frame reported with its arrival time.

**Why the candidates are filtered.** The uplink's aioice offers a host candidate for
every address of the vehicle's namespace, the WANs' as well as the tunnel's, and a
viewer's aiortc gathers every address of the centre's. The centre's namespace reaches
the vehicle's WAN addresses directly, so a pair between two WAN addresses works without
the tunnel, and a session on it dies with its WAN: not what a failover of the tunnel
is about (nor how a centre on the other side of the internet reaches a vehicle behind
carrier NAT). So the offer keeps only this viewer's tunnel address (`--local`) and the
answer only the vehicle's (`--remote`), before either side sees them
(:func:`only_candidates`). Every other pair would have to enter the tunnel with a WAN
source address, which WireGuard drops (each end's allowed IPs are the other's tunnel
addresses), so tunnel to tunnel is the only pair that can succeed; the ``pair`` line
says which aioice nominated.

It prints one JSON object a line; ``t`` is ``time.monotonic()``, which every process
on this host reads from the same clock. `signalling` lists every signalling state the
peer connection went through (an offer and its answer; a ``signalling`` line would be a
renegotiation, which WHEP has no way to start, so none is expected)::

    {"kind": "posted", "location": "http://...", "offer": ["198.19.100.1"],
     "offer_dropped": ["198.18.0.1", ...], "answer": ["198.19.100.2"],
     "answer_dropped": ["198.18.0.2", "198.18.1.2"],
     "signalling": ["have-local-offer", "stable"]}
    {"kind": "state", "state": "connected", "t": 1234.5}
    {"kind": "pair", "local": "198.19.100.1:45000", "remote": "198.19.100.2:51000"}
    {"kind": "frame", "t": 1234.567}
    {"kind": "signalling", "state": "have-remote-offer", "t": 1240.1}
    {"kind": "end", "state": "connected", "ended": false, "frames": 1790,
     "signalling": ["have-local-offer", "stable"]}
    {"kind": "warning", "warning": "..."}
    {"kind": "error", "error": "..."}

It runs until SIGTERM or SIGINT (or ``--max-seconds``), then prints its ``end`` line,
DELETEs its session and exits 0; a POST that is refused or unanswered (after retrying
``--start-within`` seconds while the uplink answers 409 or 503, or does not listen yet)
is one ``error`` line and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import av
from aiortc import RTCSessionDescription

from edge.bench.centre_viewers import RepeatedNacks, die_with_parent
from edge.bench.whep_viewer import MarkerJitterBuffer, WhepRefused, WhepViewer
from edge.uplink.consent import sustain_consent

# The POST crosses the emulated link: a TCP handshake and the request, 600 ms each on geo.
POST_TIMEOUT_S = 30.0
_RETRY_STATUSES = (409, 503)
_ICE_WAIT_S = 0.5  # between looks at the nominated pair


def candidate_address(line: str) -> str | None:
    """The connection address of an SDP ``a=candidate:`` line (None if it is not one)."""
    if not line.startswith("a=candidate:"):
        return None
    parts = line.split()
    return parts[4] if len(parts) >= 8 else None


def only_candidates(sdp: str, address: str) -> tuple[str, list[str], list[str]]:
    """`sdp` with only the ICE candidates on `address`: (sdp, addresses kept, dropped).

    An mDNS candidate (``<uuid>.local``) is dropped like any other: it names no address.
    """
    kept: list[str] = []
    dropped: list[str] = []
    lines = []
    for line in sdp.splitlines():
        found = candidate_address(line)
        if found is not None:
            (kept if found == address else dropped).append(found)
            if found != address:
                continue
        lines.append(line)
    return "\r\n".join(lines) + "\r\n", kept, dropped


class TunnelViewer(WhepViewer):
    """A :class:`WhepViewer` whose offer and answer keep only the tunnel's candidates."""

    def __init__(self, endpoint: str, token: str, local: str, remote: str,
                 http: aiohttp.ClientSession) -> None:
        super().__init__(endpoint, token, http=http, marker_frames=True)
        self.local = local
        self.remote = remote
        self.candidates: dict[str, list[str]] = {}
        #: every signalling state the peer connection went through: an offer and its
        #: answer are ["have-local-offer", "stable"]; a renegotiation would add to it
        self.signalling: list[str] = []
        self.pc.on("signalingstatechange",
                   lambda: self.signalling.append(self.pc.signalingState))

    async def start(self, timeout: float = POST_TIMEOUT_S) -> None:
        # WhepViewer.start, with the candidates filtered between creating the offer and
        # sending it, and between receiving the answer and applying it.
        transceiver = self.pc.addTransceiver("video", direction="recvonly")
        sustain_consent(getattr(getattr(transceiver.receiver.transport, "transport", None),
                                "_connection", None))
        transceiver.receiver._RTCRtpReceiver__jitter_buffer = (  # type: ignore[attr-defined]
            MarkerJitterBuffer(capacity=512, is_video=True))
        self.pc.on("track", self._on_track)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer, self.candidates["offer"], self.candidates["offer_dropped"] = only_candidates(
            self.pc.localDescription.sdp, self.local)
        assert self._http is not None
        self.stats.post_started = time.monotonic()
        async with self._http.post(
                self.endpoint, data=offer,
                headers={"Content-Type": "application/sdp",
                         "Authorization": f"Bearer {self.token}"},
                timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            text = await resp.text()
            self.response_headers = dict(resp.headers)
            if resp.status != 201:
                raise WhepRefused(resp.status, text, self.response_headers)
            self.location = urljoin(self.endpoint, resp.headers["Location"])
        self.stats.answered = time.monotonic()
        self.answer, self.candidates["answer"], self.candidates["answer_dropped"] = (
            only_candidates(text, self.remote))
        await self.pc.setRemoteDescription(RTCSessionDescription(self.answer, "answer"))

    def ice_connection(self) -> Any:
        """aioice's Connection under the one transceiver (None if aiortc moved it)."""
        transceivers = self.pc.getTransceivers()
        if not transceivers:
            return None
        dtls = transceivers[0].receiver.transport
        return getattr(getattr(dtls, "transport", None), "_connection", None)

    def nominated(self) -> tuple[str, str] | None:
        """(local, remote) of the pair aioice nominated, as "host:port" (private to aioice:
        None until there is one, or if aioice keeps it elsewhere)."""
        pairs = getattr(self.ice_connection(), "_nominated", None)
        if not isinstance(pairs, dict) or not pairs:
            return None
        pair = next(iter(pairs.values()))
        try:
            (lh, lp), (rh, rp) = pair.local_addr, pair.remote_addr
        except (AttributeError, TypeError, ValueError):
            return None
        return f"{lh}:{lp}", f"{rh}:{rp}"


def _emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


async def _connect(url: str, token: str, local: str, remote: str,
                   http: aiohttp.ClientSession, within: float) -> TunnelViewer:
    """A viewer whose POST was answered 201, retrying what a waiting player retries."""
    deadline = time.monotonic() + within
    last = "nothing tried"
    while time.monotonic() < deadline:
        viewer = TunnelViewer(url, token, local, remote, http)
        try:
            await viewer.start()
            return viewer
        except WhepRefused as e:
            await viewer.close(delete=False)
            if e.status not in _RETRY_STATUSES:
                raise
            last = str(e)
            await asyncio.sleep(min(2.0, float(e.headers.get("Retry-After", "1") or 1)))
        except (aiohttp.ClientError, TimeoutError) as e:
            await viewer.close(delete=False)
            last = f"{type(e).__name__}: {e}".rstrip(": ")
            await asyncio.sleep(0.5)
    raise TimeoutError(f"no session within {within:g} s (last: {last})")


def _watch(viewer: TunnelViewer) -> None:
    def on_frame(frame: av.VideoFrame) -> None:
        _emit({"kind": "frame", "t": round(time.monotonic(), 4)})

    def on_state() -> None:
        _emit({"kind": "state", "state": viewer.pc.connectionState,
               "t": round(time.monotonic(), 4)})

    def on_signalling() -> None:
        _emit({"kind": "signalling", "state": viewer.pc.signalingState,
               "t": round(time.monotonic(), 4)})

    viewer.on_frame = on_frame
    viewer.pc.on("connectionstatechange", on_state)
    viewer.pc.on("signalingstatechange", on_signalling)
    on_state()  # where it is now: it may have changed before anyone listened


async def run(url: str, token: str, local: str, remote: str, start_within: float,
              max_seconds: float) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with aiohttp.ClientSession() as http:
        try:
            viewer = await _connect(url, token, local, remote, http, start_within)
        except (WhepRefused, TimeoutError) as e:
            _emit({"kind": "error", "error": f"no session: {e}"})
            return 1
        except Exception as e:  # one line for the bench, never a traceback
            _emit({"kind": "error", "error": f"the viewer failed to start: "
                                             f"{type(e).__name__}: {e}".rstrip(": ")})
            return 1
        _emit({"kind": "posted", "location": viewer.location,
               "signalling": list(viewer.signalling), **viewer.candidates})
        _watch(viewer)
        receiver = viewer.pc.getTransceivers()[0].receiver
        repeater: asyncio.Task[None] | None = None
        if (nacks := RepeatedNacks.install(receiver)) is not None:
            repeater = asyncio.create_task(nacks.repeat(receiver))
        else:
            _emit({"kind": "warning", "warning": "aiortc's receiver changed: NACKs are not "
                                                 "repeated"})
        try:
            deadline = time.monotonic() + max_seconds
            told_pair = False
            while not stop.is_set() and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), _ICE_WAIT_S)
                if not told_pair and (pair := viewer.nominated()) is not None:
                    told_pair = True
                    _emit({"kind": "pair", "local": pair[0], "remote": pair[1]})
            _emit({"kind": "end", "state": viewer.pc.connectionState,
                   "ended": viewer.ended.is_set(), "frames": viewer.stats.frames,
                   "signalling": viewer.signalling})
        finally:
            if repeater is not None:
                repeater.cancel()
            with contextlib.suppress(Exception):
                await viewer.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge.bench.failover_viewer",
                                description=__doc__.partition("\n")[0] if __doc__ else None)
    p.add_argument("url", help="the WHEP endpoint, e.g. http://198.19.100.2:8800/whep/bench")
    p.add_argument("token_file", help="a file holding the uplink's bearer token")
    p.add_argument("--local", required=True,
                   help="this end's tunnel address: the only candidate offered")
    p.add_argument("--remote", required=True,
                   help="the vehicle's tunnel address: the only candidate of the answer kept")
    p.add_argument("--start-within", type=float, default=60.0,
                   help="give up if no POST is answered 201 within this long")
    p.add_argument("--max-seconds", type=float, default=3600.0,
                   help="stop after this long even if nobody says so")
    args = p.parse_args(argv)
    die_with_parent()
    token = Path(args.token_file).read_text().strip()
    return asyncio.run(run(args.url, token, args.local, args.remote, args.start_within,
                           args.max_seconds))


if __name__ == "__main__":
    sys.exit(main())
