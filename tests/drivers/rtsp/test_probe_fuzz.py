"""The camera probe's parsers on hostile input, and `edge camera probe` against a camera that lies.

Hypothesis throws mutated and random input at the SDP parser, the RTSP reply
parser and the H.264/H.265 SPS parsers: each returns a sane result or raises
its own error type with a one-line message; nothing else escapes. Then a tiny
RTSP server of the test's own answers the real probe with a bad SDP and with
mangled status lines.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from drivers.rtsp import ProbeError, probe
from drivers.rtsp.errors import MalformedReply
from drivers.rtsp.rtsp_reply import parse_reply
from drivers.rtsp.sdp import parse_video
from drivers.rtsp.sps import (
    MAX_DIMENSION,
    MAX_FPS,
    SpsError,
    SpsInfo,
    parse_h264_sps,
    parse_h265_sps,
)
from tests.support import run_edge

pytestmark = pytest.mark.timeout(60)

INTERNALS = re.compile(r"Error:|Traceback|NoneType|StopIteration|not in list|"
                       r"object has no attribute|operation not permitted", re.IGNORECASE)

# Real parameter sets from x264 and x265 (1280x720 and 1920x1080, cropped from 1088).
H264_SPS = [bytes.fromhex(h) for h in (
    "6764001facd9405005ba10000003001000000303c0f1831960",
    "6742c01fd9005005ba10000003001000000303c0f1832480",
    "67640028acd940780227e584000003000400000300c83c60c658")]
H265_SPS = [bytes.fromhex(h) for h in (
    "42010101600000030090000003000003005da00280802d165959a4932b9a020000030002000003003c10",
    "420101016000000300900000030000030078a003c08010e596566924cae68080000003008000000c84")]
PPS = bytes.fromhex("68ebe3cb22c0")
SDP = "\r\n".join([
    "v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=camera", "c=IN IP4 0.0.0.0", "t=0 0",
    "a=control:*", "m=video 0 RTP/AVP 96", "a=rtpmap:96 H264/90000",
    "a=fmtp:96 packetization-mode=1;profile-level-id=42C01F;sprop-parameter-sets="
    f"{base64.b64encode(H264_SPS[1]).decode()},{base64.b64encode(PPS).decode()}",
    "a=control:trackID=0"]) + "\r\n"
BAD_SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=camera\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\n"
REPLY = (b"RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Type: application/sdp\r\n"
         b"Content-Base: rtsp://127.0.0.1:554/cam/\r\nContent-Length: " +
         str(len(SDP)).encode() + b"\r\n\r\n" + SDP.encode())


def assert_one_line(error: Exception) -> None:
    text = str(error)
    assert text and "\n" not in text and not INTERNALS.search(text), repr(text)


# --------------------------------------------------------------------------- mutations

def mutated(seed: bytes | str) -> st.SearchStrategy[bytes]:
    """`seed` (bytes) with lines dropped, duplicated or cut, bytes flipped, garbage put in."""
    raw = seed.encode() if isinstance(seed, str) else seed

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        data = bytearray(raw)
        for _ in range(draw(st.integers(1, 4))):
            kind = draw(st.sampled_from(["drop line", "dup line", "cut", "flip", "insert",
                                         "number", "truncate line"]))
            lines = bytes(data).split(b"\n")
            i = draw(st.integers(0, max(0, len(lines) - 1)))
            if kind == "drop line" and len(lines) > 1:
                del lines[i]
            elif kind == "dup line":
                lines.insert(i, lines[i])
            elif kind == "truncate line":
                lines[i] = lines[i][:draw(st.integers(0, len(lines[i])))]
            elif kind == "number":
                # A number where the seed has one: huge, negative, empty or not a number.
                lines[i] = re.sub(rb"\d+", draw(st.sampled_from(
                    [b"0", b"-1", b"99999999999999999999", b"", b"x", b"65536", b"128"])),
                    lines[i], count=1)
            data = bytearray(b"\n".join(lines))
            if kind == "cut" and data:
                data = data[:draw(st.integers(0, len(data)))]
            elif kind == "flip" and data:
                at = draw(st.integers(0, len(data) - 1))
                data[at] ^= 1 << draw(st.integers(0, 7))
            elif kind == "insert":
                at = draw(st.integers(0, len(data)))
                data[at:at] = draw(st.binary(min_size=1, max_size=8))
        return bytes(data)

    return build()


# --------------------------------------------------------------------------- SDP

@settings(max_examples=300, deadline=None)
@given(st.one_of(mutated(SDP).map(lambda b: b.decode("utf-8", "replace")),
                 st.text(max_size=300), mutated(BAD_SDP).map(lambda b: b.decode("latin-1"))))
@example(BAD_SDP)
def test_sdp_parser_returns_a_video_stream_or_says_why(text: str) -> None:
    try:
        video = parse_video(text)
    except MalformedReply as e:
        assert_one_line(e)
        return
    assert 0 <= video.payload_type <= 127
    assert video.encoding and video.clock_rate > 0


def test_sdp_without_rtpmap_is_named() -> None:
    with pytest.raises(MalformedReply, match=r"no a=rtpmap for payload type 96 of "
                                             r'"m=video 0 RTP/AVP 96"'):
        parse_video(BAD_SDP)
    assert parse_video(SDP).encoding == "H264"
    assert parse_video(BAD_SDP.replace(" 96", " 26")).encoding == "JPEG"  # static: no rtpmap


# --------------------------------------------------------------------------- RTSP replies

@settings(max_examples=300, deadline=None)
@given(st.one_of(mutated(REPLY), st.binary(max_size=300)))
@example(REPLY.replace(b"200 OK", b"2x0 OK"))
@example(REPLY.replace(b"Content-Length: ", b"Content-Length: -"))
def test_reply_parser_returns_a_reply_or_says_why(data: bytes) -> None:
    try:
        reply = parse_reply(data)
    except MalformedReply as e:
        assert_one_line(e)
        return
    assert 100 <= reply.status <= 599
    assert len(reply.body) == reply.content_length


def test_a_mangled_status_line_is_named() -> None:
    with pytest.raises(MalformedReply, match='status line "RTSP/1.0 2x0 OK" has no status code'):
        parse_reply(REPLY.replace(b"200 OK", b"2x0 OK"))
    assert parse_reply(REPLY).status == 200


# --------------------------------------------------------------------------- SPS

def check_sps(parse: Callable[[bytes], SpsInfo], nal: bytes) -> None:
    try:
        info = parse(nal)
    except SpsError as e:
        assert_one_line(e)
        return
    assert 0 < info.width <= MAX_DIMENSION and 0 < info.height <= MAX_DIMENSION, info
    assert info.fps is None or 0 < info.fps <= MAX_FPS, info
    assert info.level and info.profile, info


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.sampled_from(H264_SPS).flatmap(mutated),
                 st.binary(max_size=40).map(lambda b: b"\x67" + b)))
def test_h264_sps_parser_is_sane_or_says_why(nal: bytes) -> None:
    check_sps(parse_h264_sps, nal)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.sampled_from(H265_SPS).flatmap(mutated),
                 st.binary(max_size=60).map(lambda b: b"\x42\x01" + b)))
@example(bytes.fromhex("42010101000000000000000000005da122627c"))
def test_h265_sps_parser_is_sane_or_says_why(nal: bytes) -> None:
    check_sps(parse_h265_sps, nal)


class Bits:
    """Writes an SPS field by field (H.264 7.3.2.1), for cases a camera never encodes."""

    def __init__(self) -> None:
        self.bits = ""

    def u(self, n: int, value: int) -> Bits:
        self.bits += format(value, f"0{n}b") if n else ""
        return self

    def ue(self, value: int) -> Bits:
        code = format(value + 1, "b")
        self.bits += "0" * (len(code) - 1) + code
        return self

    def nal(self) -> bytes:
        bits = self.bits + "1"  # rbsp_stop_one_bit
        bits += "0" * (-len(bits) % 8)
        return b"\x67" + int(bits, 2).to_bytes(len(bits) // 8, "big")


def h264_sps(width_mbs: int, height_mbs: int, crop: tuple[int, int, int, int] | None) -> bytes:
    b = Bits().u(8, 66).u(8, 0xC0).u(8, 31).ue(0)  # constrained baseline 3.1, SPS id 0
    b.ue(0).ue(2).ue(1).u(1, 0)  # frame_num bits, poc type 2, one ref frame, no gaps
    b.ue(width_mbs - 1).ue(height_mbs - 1).u(1, 1).u(1, 1)  # frame_mbs_only, direct_8x8
    b.u(1, crop is not None)
    for offset in crop or ():
        b.ue(offset)
    return b.u(1, 0).nal()  # no VUI


def test_sps_crop_larger_than_the_picture_is_an_error() -> None:
    assert (parse_h264_sps(h264_sps(80, 68, (0, 0, 0, 4))).width,
            parse_h264_sps(h264_sps(80, 68, (0, 0, 0, 4))).height) == (1280, 1080)
    with pytest.raises(SpsError, match="cropping window"):
        parse_h264_sps(h264_sps(2, 2, (0, 16, 0, 0)))
    with pytest.raises(SpsError, match="cropping window"):
        parse_h265_sps(bytes.fromhex("42010101000000000000000000005da122627c"))


# --------------------------------------------------------------------------- the real probe

class TinyCamera:
    """An RTSP server that answers like a camera, with `sdp` and `mangle(method, reply)`."""

    def __init__(self, sdp: str, mangle: Callable[[str, bytes], bytes] = lambda m, r: r) -> None:
        self.sdp = sdp
        self.mangle = mangle
        self.port = 0
        self.methods: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode()
                method = head.split(" ", 1)[0]
                self.methods.append(method)
                cseq = re.search(r"(?im)^CSeq:\s*(\d+)", head)
                lines = ["RTSP/1.0 200 OK", f"CSeq: {cseq.group(1) if cseq else 0}"]
                body = b""
                if method == "OPTIONS":
                    lines.append("Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN")
                elif method == "DESCRIBE":
                    body = self.sdp.encode()
                    lines += ["Content-Type: application/sdp",
                              f"Content-Base: rtsp://127.0.0.1:{self.port}/cam/",
                              f"Content-Length: {len(body)}"]
                elif method == "SETUP":
                    lines += ["Session: 12345678;timeout=60",
                              "Transport: RTP/AVP/TCP;unicast;interleaved=0-1"]
                elif method in ("PLAY", "TEARDOWN"):
                    lines.append("Session: 12345678")
                reply = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
                writer.write(self.mangle(method, reply))
                await writer.drain()
        writer.close()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            yield f"rtsp://127.0.0.1:{self.port}/cam"


async def test_edge_camera_probe_names_an_sdp_without_rtpmap() -> None:
    async with TinyCamera(BAD_SDP).serving() as url:
        code, out, err = await run_edge("camera", "probe", url, "--seconds", "1")
    lines = err.strip().split("\n")
    assert code == 1, (code, out, err)  # the documented failure: exit 1, one line
    assert len(lines) == 1 and lines[0].startswith(f"edge: {url}: "), err
    assert "a=rtpmap" in lines[0] and "96" in lines[0], err
    assert not INTERNALS.search(err), err


@pytest.mark.parametrize(("method", "status_line"), [
    ("PLAY", b"RTSP/1.0 2 OK"),
    ("PLAY", b"RTSP/1.0 OK"),
    ("DESCRIBE", b"RTSP/1.0 2x0 OK"),
    ("SETUP", b"RTSP/1.0 20 OK"),
])
async def test_probe_names_a_mangled_status_line(method: str, status_line: bytes) -> None:
    def mangle(m: str, reply: bytes) -> bytes:
        return reply.replace(b"RTSP/1.0 200 OK", status_line, 1) if m == method else reply

    async with TinyCamera(SDP, mangle).serving() as url:
        with pytest.raises(ProbeError) as e:
            await probe(url, 1.0, open_timeout=3.0)
    assert_one_line(e.value)
    assert f"the reply to {method} is malformed" in str(e.value), str(e.value)
    assert status_line.decode() in str(e.value)


@pytest.mark.parametrize(("url", "words"), [
    ("rtsp://[::1/cam", 'no closing "]"'),
    ("rtsp://cam:70000/main", "port 70000"),
])
async def test_edge_camera_probe_refuses_a_malformed_url(url: str, words: str) -> None:
    code, _, err = await run_edge("camera", "probe", url)
    assert code == 1 and err.count("\n") == 1 and words in err, err
    assert not INTERNALS.search(err), err
