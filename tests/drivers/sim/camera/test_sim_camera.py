"""The simulated dome camera, checked on the wire and by independent RTSP clients."""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import Awaitable, Callable

import av
import cv2
import numpy as np
import pytest

from drivers.rtsp import ProbeError, probe
from drivers.sim.camera import SimCamera, decode_timestamp_blocks, wall_ms
from tests.support import eventually, standing_still
from tests.support.rtsp import (
    HEVC_CAMERA,
    CameraFactory,
    RawRtspClient,
    RtpPacket,
    parse_rtp,
    poll_until,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

RawClientFactory = Callable[..., Awaitable[RawRtspClient]]


def _sdp_attrs(sdp: str) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for line in sdp.splitlines():
        if line.startswith("a="):
            key, _, value = line[2:].partition(":")
            attrs.setdefault(key, value)
    return attrs


async def _setup_play_tcp(client: RawRtspClient, url: str) -> tuple[int, int, int]:
    """SETUP (interleaved 0-1) and PLAY; returns (ssrc, seq, rtptime) from the replies."""
    reply = await client.request(
        "SETUP", f"{url}/trackID=0", {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}
    )
    assert reply.status == 200, reply
    transport = reply.headers["transport"]
    assert "interleaved=0-1" in transport
    ssrc = int(transport.split("ssrc=")[1].split(";")[0], 16)
    session = reply.headers["session"].split(";")[0]
    assert "timeout=" in reply.headers["session"]
    client.session = session
    reply = await client.request("PLAY", url, {"Session": session, "Range": "npt=0.000-"})
    assert reply.status == 200
    info = dict(part.split("=", 1) for part in reply.headers["rtp-info"].split(";"))
    assert info["url"].endswith("/trackID=0")
    return ssrc, int(info["seq"]), int(info["rtptime"])


async def test_rtsp_wire_format_tcp(
    sim_camera: CameraFactory, raw_client: RawClientFactory
) -> None:
    camera = await sim_camera()
    client = await raw_client(camera)
    url = camera.url()

    reply = await client.request("OPTIONS", url)
    assert reply.status == 200
    for method in ("DESCRIBE", "SETUP", "PLAY", "TEARDOWN", "GET_PARAMETER"):
        assert method in reply.headers["public"]

    reply = await client.request("DESCRIBE", url, {"Accept": "application/sdp"})
    assert reply.status == 200 and reply.headers["content-type"] == "application/sdp"
    sdp = reply.body.decode()
    attrs = _sdp_attrs(sdp)
    assert "m=video 0 RTP/AVP 96" in sdp
    assert attrs["rtpmap"] == "96 H264/90000"
    fmtp = dict(p.split("=", 1) for p in attrs["fmtp"].removeprefix("96 ").split(";"))
    assert fmtp["packetization-mode"] == "1"
    sps_b64, pps_b64 = fmtp["sprop-parameter-sets"].split(",")
    sps, pps = base64.b64decode(sps_b64), base64.b64decode(pps_b64)
    assert sps[0] & 0x1F == 7 and pps[0] & 0x1F == 8
    assert fmtp["profile-level-id"].lower() == sps[1:4].hex()
    assert "a=control:trackID=0" in sdp

    assert (await client.request("DESCRIBE", camera.url().replace("/main", "/nope"))).status == 404
    assert (await client.request("PLAY", url, {"Session": "bogus"})).status == 454

    ssrc, seq0, rtptime0 = await _setup_play_tcp(client, url)
    packets: list[RtpPacket] = []
    rtcp: list[bytes] = []
    # Read until there is enough to check (a count, not a time: a loaded machine is slower):
    # the first access unit and several frames after it, and the first RTCP report.
    async with asyncio.timeout(20):
        while len(packets) < 60 or sum(p.marker for p in packets) < 4 or not rtcp:
            channel, data = await client.read_interleaved()
            if channel == 0:
                packets.append(parse_rtp(data))
            else:
                rtcp.append(data)
    assert all(p.payload_type == 96 and p.ssrc == ssrc and p.size <= 1400 for p in packets)
    assert packets[0].seq == seq0
    assert all((b.seq - a.seq) & 0xFFFF == 1 for a, b in zip(packets, packets[1:], strict=False))
    # Frame boundaries: the marker ends an access unit and the timestamp moves on.
    frame_ts = [p.timestamp for p in packets if p.marker]
    steps = {(b - a) & 0xFFFFFFFF for a, b in zip(frame_ts, frame_ts[1:], strict=False)}
    assert steps == {3000}, steps  # 90 kHz / 30 fps
    assert 0 <= (packets[0].timestamp - rtptime0) & 0xFFFFFFFF < 90_000
    for a, b in zip(packets, packets[1:], strict=False):
        if not a.marker:
            assert a.timestamp == b.timestamp
    # First access unit: STAP-A with SPS+PPS (or the single NALs), then an IDR in FU-A.
    first = packets[0].payload
    assert first[0] & 0x1F in (24, 6, 7)
    assert any(p.payload[0] & 0x1F == 28 and p.payload[1] & 0x1F == 5 for p in packets[:60])
    # RTCP: a sender report (PT 200) with our SSRC, then SDES.
    assert rtcp and rtcp[0][1] == 200 and int.from_bytes(rtcp[0][4:8], "big") == ssrc

    session = client.session
    assert (await client.request("GET_PARAMETER", url, {"Session": session})).status == 200
    assert [s.playing for s in camera.sessions()] == [True]
    assert (await client.request("TEARDOWN", url, {"Session": session})).status == 200
    assert camera.sessions() == []


async def test_rtsp_udp_unicast(sim_camera: CameraFactory, raw_client: RawClientFactory) -> None:
    camera = await sim_camera()
    client = await raw_client(camera)
    rtp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtcp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rtp_sock.bind(("127.0.0.1", 0))
        rtcp_sock.bind(("127.0.0.1", 0))
        rtp_sock.setblocking(False)
        ports = f"{rtp_sock.getsockname()[1]}-{rtcp_sock.getsockname()[1]}"
        url = camera.url("sub")
        reply = await client.request(
            "SETUP", f"{url}/trackID=0", {"Transport": f"RTP/AVP;unicast;client_port={ports}"}
        )
        assert reply.status == 200
        assert f"client_port={ports}" in reply.headers["transport"]
        assert "server_port=" in reply.headers["transport"]
        session = reply.headers["session"].split(";")[0]
        assert (await client.request("PLAY", url, {"Session": session})).status == 200
        loop = asyncio.get_running_loop()
        packets: list[RtpPacket] = []
        async with asyncio.timeout(5):
            while len(packets) < 30:
                packets.append(parse_rtp(await loop.sock_recv(rtp_sock, 2048)))
        assert len({p.ssrc for p in packets}) == 1
        assert sum(p.marker for p in packets) >= 1
        assert camera.sessions()[0].transport == "udp"
    finally:
        rtp_sock.close()
        rtcp_sock.close()


async def test_udp_session_times_out_without_keepalive(
    sim_camera: CameraFactory, raw_client: RawClientFactory
) -> None:
    camera = await sim_camera(session_timeout=1.0)
    client = await raw_client(camera)
    url = camera.url("sub")
    reply = await client.request("SETUP", url, {"Transport": "RTP/AVP;unicast;client_port=9-10"})
    assert reply.status == 200
    assert (
        await client.request("PLAY", url, {"Session": reply.headers["session"].split(";")[0]})
    ).status == 200
    assert len(camera.sessions()) == 1
    await poll_until(lambda: not camera.sessions(), within=5)


async def test_auth_digest_and_basic_on_the_wire(
    sim_camera: CameraFactory, raw_client: RawClientFactory
) -> None:
    for scheme in ("digest", "basic"):
        camera = await sim_camera(user="admin", password="s3cret", auth=scheme, sub=None)
        client = await raw_client(camera)
        url = camera.url()
        reply = await client.request("DESCRIBE", url)
        assert reply.status == 401
        assert reply.headers["www-authenticate"].lower().startswith(scheme)
        if scheme == "digest":
            client.set_digest("admin", "wrong", reply.headers["www-authenticate"], "DESCRIBE", url)
            assert (await client.request("DESCRIBE", url)).status == 401
            client.set_digest("admin", "s3cret", reply.headers["www-authenticate"], "DESCRIBE", url)
        else:
            client.set_basic("admin", "s3cret")
        assert (await client.request("DESCRIBE", url)).status == 200
        # FFmpeg (and so OpenCV) authenticates the same way.
        result = await probe(camera.url(with_credentials=True), 0.5)
        assert result.width == 1280
        with pytest.raises(ProbeError, match="401 unauthorized"):
            await probe(url, 0.5)
        await camera.close()


def _decode_with_pyav(url: str, transport: str, count: int) -> list[np.ndarray]:
    with av.open(url, options={"rtsp_transport": transport}, timeout=(5, 5)) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="bgr24"))
            if len(frames) >= count:
                return frames
    return frames


@pytest.mark.parametrize(
    ("stream", "transport", "size"), [("main", "tcp", (720, 1280)), ("sub", "udp", (360, 640))]
)
async def test_plain_pyav_decodes_the_simulator(
    sim_camera: CameraFactory, stream: str, transport: str, size: tuple[int, int]
) -> None:
    camera = await sim_camera()
    frames = await asyncio.to_thread(_decode_with_pyav, camera.url(stream), transport, 10)
    assert len(frames) == 10
    assert all(f.shape[:2] == size for f in frames)
    # The loop's timestamp code survives even the sub stream's bitrate.
    assert sum(decode_timestamp_blocks(f) is not None for f in frames) >= 8


def _read_with_opencv(url: str, count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
    frames: list[np.ndarray] = []
    try:
        assert capture.isOpened(), "OpenCV could not open the stream"
        while len(frames) < count:
            ok, frame = capture.read()
            assert ok, "OpenCV read failed"
            frames.append(frame)
    finally:
        capture.release()
    return frames


async def test_opencv_reads_the_simulator(
    sim_camera: CameraFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
    camera = await sim_camera()
    frames = await asyncio.to_thread(_read_with_opencv, camera.url("sub"), 5)
    assert [f.shape for f in frames] == [(360, 640, 3)] * 5


def _timestamp_latencies(url: str, count: int) -> list[int]:
    latencies = []
    options = {"rtsp_transport": "tcp", "analyzeduration": "100000"}
    with av.open(url, options=options, timeout=(5, 5)) as container:
        for frame in container.decode(video=0):
            stamp = decode_timestamp_blocks(frame.to_ndarray(format="bgr24"))
            assert stamp is not None
            latencies.append(wall_ms() - stamp)
            if len(latencies) >= count:
                break
    return latencies


async def test_live_mode_timestamps_are_wall_clock(sim_camera: CameraFactory) -> None:
    camera = await sim_camera(name="live", live=True, main=(640, 360), sub=None)
    latencies = await asyncio.to_thread(_timestamp_latencies, camera.url(), 45)
    # Stream probing at open leaves a backlog that the decoder then catches up
    # on; after that each frame is decoded about as old as the pipeline is long.
    steady = sorted(latencies[-10:])
    # Stamped with the time each picture was rendered, read on the same clock: never in
    # the future, and seconds old at most (a stamp from when the loop was encoded, or in
    # another unit, would be far off). How small it is, is `edge bench latency`'s figure.
    assert steady[0] >= 0, latencies
    assert steady[len(steady) // 2] < 10_000, latencies


async def test_several_viewers_and_a_stuck_one(
    sim_camera: CameraFactory, raw_client: RawClientFactory
) -> None:
    """A viewer that stops reading is resynchronised alone; others keep receiving."""
    camera = await sim_camera()
    stuck = await raw_client(camera, rcvbuf=4096)
    await _setup_play_tcp(stuck, camera.url())
    # Its socket and send buffers (about a second of video) fill up, and then the server
    # sends it nothing: wait until its count stands still over looks half a second apart
    # (the camera makes 30 frames a second).
    await eventually(standing_still(lambda: camera.sessions()[0].frames_sent), within=30,
                     every=0.5, what="the stuck viewer's buffers full")
    (blocked,) = camera.sessions()
    # Meanwhile others are served: frames keep coming to each (a count, not a rate: 10 is
    # a third of a second of the camera's 30 fps; a server held up by the stuck viewer
    # would send none).
    results = await asyncio.gather(
        probe(camera.url(), 1.5, "tcp"),
        probe(camera.url(), 1.5, "udp"),
        probe(camera.url("sub"), 1.5, "tcp"),
    )
    for result in results:
        assert result.frames >= 10, result
    # ... and the stuck one is held back, alone: a few frames while the others got dozens.
    assert camera.sessions()[0].frames_sent < blocked.frames_sent + 10
    # The viewer wakes up: it first gets what was buffered, then, after a gap,
    # a keyframe with its parameter sets, never a frame it cannot decode.
    packets: list[RtpPacket] = []
    async with asyncio.timeout(10):
        while (
            not packets or (packets[-1].timestamp - packets[0].timestamp) & 0xFFFFFFFF < 5 * 90_000
        ):
            channel, data = await stuck.read_interleaved()
            if channel == 0:
                packets.append(parse_rtp(data))
            if (
                len(packets) > 2
                and (packets[-1].timestamp - packets[-2].timestamp) & 0xFFFFFFFF > 9_000
            ):
                break
    first_after_gap = packets[-1].payload
    assert first_after_gap[0] & 0x1F in (24, 7), "resumed on something other than a keyframe"
    assert camera.sessions()[0].frames_dropped > 0


async def test_vanished_client_is_cleaned_up(
    sim_camera: CameraFactory, raw_client: RawClientFactory
) -> None:
    camera = await sim_camera()
    client = await raw_client(camera)
    await _setup_play_tcp(client, camera.url())
    assert len(camera.sessions()) == 1
    client.writer.transport.abort()
    await poll_until(lambda: not camera.sessions(), within=3)


async def test_stop_and_start_on_the_same_port(sim_camera: CameraFactory) -> None:
    camera: SimCamera = await sim_camera()
    port = camera.port
    await camera.stop()
    with pytest.raises(ProbeError, match="connection refused"):
        await probe(camera.url(), 0.5)
    await camera.start()
    assert camera.port == port
    assert (await probe(camera.url(), 0.3)).width == 1280


async def test_h265_sdp(sim_camera: CameraFactory, raw_client: RawClientFactory) -> None:
    camera = await sim_camera(**HEVC_CAMERA)
    client = await raw_client(camera)
    reply = await client.request("DESCRIBE", camera.url())
    attrs = _sdp_attrs(reply.body.decode())
    assert attrs["rtpmap"] == "96 H265/90000"
    fmtp = dict(p.split("=", 1) for p in attrs["fmtp"].removeprefix("96 ").split(";"))
    assert (base64.b64decode(fmtp["sprop-vps"])[0] >> 1) & 0x3F == 32
    assert (base64.b64decode(fmtp["sprop-sps"])[0] >> 1) & 0x3F == 33
    assert (base64.b64decode(fmtp["sprop-pps"])[0] >> 1) & 0x3F == 34
    await _setup_play_tcp(client, camera.url())
    types = set()
    for _ in range(40):
        channel, data = await client.read_interleaved()
        if channel == 0:
            types.add((parse_rtp(data).payload[0] >> 1) & 0x3F)
    assert 49 in types  # fragmentation units
