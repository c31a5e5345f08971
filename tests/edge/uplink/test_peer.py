"""The peer as the offering side (a WHIP client's role): our offer, a real answerer, real video.

The answering side is plain aiortc (none of the uplink's code), standing in for
the centre's WHIP server; the video is a real High-profile H.264 stream from
the simulated camera's encoder, sent through the passthrough track as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from fractions import Fraction

import av
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from drivers.rtsp.annexb import join_annexb
from drivers.sim.camera.encoder import EncoderSettings
from drivers.sim.camera.loop_cache import get_loop
from edge.media.wire import MediaFrame
from edge.uplink.fanout import Sink
from edge.uplink.peer import BadAnswer, Peer
from edge.uplink.sdp import AIORTC_PLID, h264_payload_type, label_profile
from tests.support import eventually

pytestmark = pytest.mark.timeout(60)

TB = Fraction(1, 90_000)
FPS = 30


async def camera_units(width: int, height: int) -> tuple[list[MediaFrame], str]:
    """Two seconds of a High-profile camera as media-plane units, and its profile-level-id."""
    loop = await asyncio.to_thread(
        get_loop, EncoderSettings("peer", width, height, fps=FPS, profile="high"), 2.0)
    units = [MediaFrame(1, i + 1, au.keyframe, i * 3000, i * 3000, TB, "h264",
                        time.time_ns(), join_annexb(au.nals)) for i, au in enumerate(loop.aus)]
    return units, loop.params.sps[1:4].hex()


async def feed(sink: Sink, units: list[MediaFrame]) -> None:
    """The camera's units at the camera's pace, looped, with pts and receipt times running on."""
    step = 0
    while True:
        for unit in units:
            sink.offer(MediaFrame(unit.epoch, step + 1, unit.keyframe, step * 3000, step * 3000,
                                  TB, unit.codec, time.time_ns(), unit.data))
            step += 1
            await asyncio.sleep(1 / FPS)


async def test_our_offer_is_answered_and_the_answerer_decodes_the_camera() -> None:
    units, plid = await camera_units(640, 360)
    assert plid.startswith("64")  # High: a profile aiortc's own table does not know
    sink = Sink()
    peer = Peer(sink, plid, ice=[], worst_rtt_ms=1000, name="whip")
    server = RTCPeerConnection()
    decoded: list[av.VideoFrame] = []

    async def read(track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                assert isinstance(frame, av.VideoFrame)
                decoded.append(frame)

    readers: list[asyncio.Task[None]] = []
    server.on("track", lambda track: readers.append(asyncio.create_task(read(track))))
    feeder = asyncio.create_task(feed(sink, units))
    try:
        offer = await peer.offer()
        # One format: H.264 labelled with the camera's real profile, and its RTX.
        pt = h264_payload_type(offer)
        assert pt is not None and f"profile-level-id={plid}" in offer
        assert "VP8" not in offer and "a=sendonly" in offer

        # The stand-in server's aiortc knows only constrained baseline: it reads the
        # offer relabelled, and answers with the real profile, as a server that knows
        # High does (our WHEP server answers the same way).
        await server.setRemoteDescription(RTCSessionDescription(
            label_profile(offer, pt, AIORTC_PLID), "offer"))
        await server.setLocalDescription(await server.createAnswer())
        answer = label_profile(server.localDescription.sdp, pt, plid)
        assert f"profile-level-id={plid}" in answer

        await peer.accept(answer)
        assert peer.payload_type == pt and peer.history is not None
        # 15 s for ICE, DTLS and the first GOP on a loaded machine.
        await eventually(lambda: len(decoded) >= 10, within=15,
                         what="ten frames decoded at the answering side")
        assert (decoded[-1].width, decoded[-1].height) == (640, 360)
        assert peer.connection_state == "connected" and peer.track.sent >= 10
    finally:
        feeder.cancel()
        await peer.close()
        await server.close()
        for task in readers:
            task.cancel()
        await asyncio.gather(feeder, *readers, return_exceptions=True)
    assert peer.connection_state == "closed"


async def test_an_unusable_answer_is_one_sentence() -> None:
    peer = Peer(Sink(), "42e01f", ice=[], worst_rtt_ms=1000)
    try:
        offer = await peer.offer()
        with pytest.raises(BadAnswer) as e:
            await peer.accept("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
                              "a=rtpmap:96 VP8/90000\r\n")
        assert str(e.value) == "the answer accepts no H.264 in its first video section"
        # H.264 it accepts, but nothing aiortc can connect with (no ICE, no DTLS).
        pt = h264_payload_type(offer)
        with pytest.raises(BadAnswer) as e:
            await peer.accept(f"v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF {pt}\r\n"
                              f"a=rtpmap:{pt} H264/90000\r\n")
        assert "\n" not in str(e.value) and "answer cannot be used" in str(e.value)
    finally:
        await peer.close()
