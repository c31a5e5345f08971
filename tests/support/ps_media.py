"""Encoded clips, MPEG-PS by FFmpeg and RTP by aiortc, for the GB/T 28181 media tests.

Everything here comes from implementations nobody here wrote: x264/x265 and
FFmpeg's PS muxer through PyAV, aiortc's RTP packet writer. Clips are tiny
(160x120, 20 pictures, a keyframe every 10, B-frames as the encoders choose)
and cached per process, so the tests pay for each encode once.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from typing import Any

import av
import numpy as np
from aiortc.rtp import RtpPacket

from drivers.rtsp.annexb import Codec, split_annexb

WIDTH, HEIGHT = 160, 120
FRAMES = 20
GOP = 10
FPS = 25
TICKS = 90_000 // FPS  # one picture in 90 kHz units
SSRC = 0x0BEBC201  # what an INVITE's y=0200000001 would ask for, as a number


@dataclass(frozen=True)
class Picture:
    """One encoded picture as the encoder gave it (Annex-B), times in 1/FPS s."""

    data: bytes
    pts: int
    dts: int
    keyframe: bool

    @property
    def nals(self) -> list[bytes]:
        return split_annexb(self.data)


def _encoder_options(codec: Codec) -> dict[str, Any]:
    if codec == "h265":
        return {"x265-params": f"log-level=none:keyint={GOP}:min-keyint={GOP}:scenecut=0"}
    return {"g": str(GOP), "keyint_min": str(GOP), "sc_threshold": "0"}


def _pictures() -> list[av.VideoFrame]:
    # Noise that moves: keyframes of several kB, so pictures span several PS packets.
    rng = np.random.default_rng(7)
    base = rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    frames = []
    for i in range(FRAMES):
        frame = av.VideoFrame.from_ndarray(np.roll(base, 3 * i, axis=1), format="rgb24")
        frame.pts = i
        frames.append(frame)
    return frames


@cache
def encoded(codec: Codec) -> tuple[Picture, ...]:
    """The clip as the encoder output it (in-band parameter sets before each keyframe)."""
    cc = av.CodecContext.create("libx264" if codec == "h264" else "libx265", "w")
    cc.width, cc.height, cc.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    cc.time_base = Fraction(1, FPS)
    cc.framerate = Fraction(FPS)
    cc.options = _encoder_options(codec)
    packets = []
    for frame in [*_pictures(), None]:
        packets += cc.encode(frame)
    return tuple(Picture(bytes(p), int(p.pts or 0), int(p.dts or 0), bool(p.is_keyframe))
                 for p in packets)


@dataclass(frozen=True)
class FfmpegPs:
    """A clip muxed by FFmpeg into a program stream, and what FFmpeg reads back from it."""

    pictures: tuple[Picture, ...]
    ps: bytes
    # (pts, dts) per picture as FFmpeg's own PS demuxer reports them (None where no PES gave one)
    times: tuple[tuple[int | None, int | None], ...]


@cache
def ffmpeg_ps(codec: Codec, fmt: str = "vob") -> FfmpegPs:
    """The clip encoded and muxed with FFmpeg's `fmt` muxer: "vob" writes MPEG-2 PS (what
    GB/T 28181 devices send), "mpeg" MPEG-1 system streams."""
    buf = io.BytesIO()
    pictures = []
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream("libx264" if codec == "h264" else "libx265", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = _encoder_options(codec)
        for frame in [*_pictures(), None]:
            for packet in stream.encode(frame):
                pictures.append(Picture(bytes(packet), int(packet.pts or 0),
                                        int(packet.dts or 0), bool(packet.is_keyframe)))
                out.mux(packet)
    ps = buf.getvalue()
    with av.open(io.BytesIO(ps), "r", format=fmt) as back:
        times = tuple((p.pts, p.dts) for p in back.demux(video=0) if p.size)
    return FfmpegPs(tuple(pictures), ps, times)


def split_packs(ps: bytes) -> list[bytes]:
    """The program stream cut before each pack header (00 00 01 BA)."""
    starts = []
    i = ps.find(b"\x00\x00\x01\xba")
    while i >= 0:
        starts.append(i)
        i = ps.find(b"\x00\x00\x01\xba", i + 4)
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    return [ps[a:b] for a, b in zip(starts, [*starts[1:], len(ps)], strict=True)]


def rtp_frames(frames: list[bytes], *, ssrc: int = SSRC, first_seq: int = 0,
               payload_type: int = 96, max_packet: int = 1400,
               first_ts: int = 0) -> list[list[bytes]]:
    """Each chunk of PS as one RTP frame (GB/T 28181 C.2): packets of at most `max_packet`
    bytes with one 90 kHz timestamp, the marker bit on the last; written by aiortc."""
    room = max_packet - 12
    seq = first_seq
    out = []
    for n, chunk in enumerate(frames):
        pieces = [chunk[i : i + room] for i in range(0, len(chunk), room)]
        packets = []
        for k, piece in enumerate(pieces):
            packet = RtpPacket(payload_type=payload_type, marker=int(k == len(pieces) - 1),
                               sequence_number=seq & 0xFFFF,
                               timestamp=(first_ts + n * TICKS) & 0xFFFFFFFF, ssrc=ssrc,
                               payload=piece)
            packets.append(packet.serialize())
            seq += 1
        out.append(packets)
    return out


def chunks(data: bytes, seed: int, largest: int = 3000) -> list[bytes]:
    """`data` cut at random places (the same ones for the same seed)."""
    rng = random.Random(seed)
    out = []
    pos = 0
    while pos < len(data):
        n = rng.randint(1, largest)
        out.append(data[pos : pos + n])
        pos += n
    return out


def decode(codec: Codec, units: list[bytes]) -> int:
    """How many pictures FFmpeg decodes from these access units, raising on a decode error."""
    cc = av.CodecContext.create("h264" if codec == "h264" else "hevc", "r")
    count = 0
    for data in units:
        count += len(cc.decode(av.Packet(data)))
    count += len(cc.decode(None))
    return count
