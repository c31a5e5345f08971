"""The MPEG-PS demuxer against program streams FFmpeg wrote, and against broken ones."""

from __future__ import annotations

import os
import random
import struct

import pytest

from drivers.gb28181.ps_demux import PsAccessUnit, PsDemuxer, sniff_codec
from drivers.gb28181.ps_mux import PsMuxer, pack_header, pes_packets, program_stream_map
from drivers.gb28181.rtp_ps import RtpPsReceiver
from drivers.rtsp.annexb import Codec, join_annexb, nal_type, parameter_set_types, split_annexb
from tests.support.ps_media import (
    SSRC,
    TICKS,
    Picture,
    chunks,
    decode,
    encoded,
    ffmpeg_ps,
    rtp_frames,
    split_packs,
)

CODECS: list[Codec] = ["h264", "h265"]


def assert_same_pictures(units: list[PsAccessUnit], pictures: tuple[Picture, ...] | list[Picture],
                         codec: Codec) -> None:
    assert len(units) == len(pictures), f"{len(units)} units for {len(pictures)} pictures"
    for n, (unit, picture) in enumerate(zip(units, pictures, strict=True)):
        assert unit.codec == codec
        assert split_annexb(unit.data) == picture.nals, f"unit {n} differs in its NAL units"
        assert unit.keyframe == picture.keyframe, f"unit {n}: keyframe {unit.keyframe}"


def ps_of(codec: Codec, pictures: tuple[Picture, ...] | list[Picture]) -> list[bytes]:
    """Our muxer's PS, one pack per picture, timestamps from the encoder in 90 kHz."""
    mux = PsMuxer(codec)
    return [mux.mux(p.data, 9000 + p.pts * TICKS, 9000 + p.dts * TICKS, keyframe=p.keyframe)
            for p in encoded(codec) if p in pictures]


def demux_all(demuxer: PsDemuxer, parts: list[bytes]) -> list[PsAccessUnit]:
    units = []
    for part in parts:
        units += demuxer.feed(part)
    return units + demuxer.flush()


@pytest.mark.parametrize("fmt", ["vob", "mpeg"])
@pytest.mark.parametrize("codec", CODECS)
def test_reads_ffmpeg_ps_over_rtp(codec: Codec, fmt: str) -> None:
    """FFmpeg's PS (vob: MPEG-2, as devices send; mpeg: MPEG-1 systems), one RTP frame per
    pack: every picture comes out whole, in order, with FFmpeg's own timestamps."""
    clip = ffmpeg_ps(codec, fmt)
    receiver = RtpPsReceiver(SSRC)  # no codec hint: FFmpeg writes no program stream map
    units = []
    for frame in rtp_frames(split_packs(clip.ps)):
        for packet in frame:
            units += receiver.datagram(packet)
    units += receiver.flush()

    assert_same_pictures(units, clip.pictures, codec)
    # FFmpeg's PES carry several pictures: only the first starting in each has a PTS.
    assert [(u.pts, u.dts) for u in units] == list(clip.times)
    stamped = [(u.pts, p.pts) for u, p in zip(units, clip.pictures, strict=True) if u.pts]
    assert len(stamped) >= 5
    assert len({ours - theirs * TICKS for ours, theirs in stamped}) == 1  # one constant delay
    assert decode(codec, [u.data for u in units]) == len(clip.pictures)
    stats = receiver.demuxer.stats
    assert (stats.garbage_bytes, stats.bad_headers, stats.units_dropped) == (0, 0, 0)
    assert stats.misaligned_frames == 0  # FFmpeg's packs never looked aligned: not trusted


@pytest.mark.parametrize("codec", CODECS)
def test_bytes_split_anywhere(codec: Codec) -> None:
    clip = ffmpeg_ps(codec, "vob")
    whole = demux_all(PsDemuxer(), [clip.ps])
    for seed in range(3):
        assert demux_all(PsDemuxer(), chunks(clip.ps, seed, largest=700)) == whole
    assert demux_all(PsDemuxer(), [clip.ps[i : i + 1] for i in range(len(clip.ps))]) == whole


@pytest.mark.parametrize("codec", CODECS)
def test_program_stream_map_and_pes_per_picture(codec: Codec) -> None:
    """Our muxer's framing (a pack per picture, PSM on keyframes) with exact PTS and DTS."""
    pictures = encoded(codec)
    units = demux_all(PsDemuxer(), ps_of(codec, pictures))
    assert_same_pictures(units, pictures, codec)
    assert [(u.pts, u.dts) for u in units] == \
        [(9000 + p.pts * TICKS, 9000 + p.dts * TICKS) for p in pictures]


def test_three_byte_start_codes() -> None:
    """A PES payload that begins with 00 00 01 (no leading zero) still gets its own PTS."""
    pictures = [Picture(b"".join(b"\x00\x00\x01" + n for n in p.nals), p.pts, p.dts, p.keyframe)
                for p in encoded("h265")]
    mux = PsMuxer("h265")
    units = demux_all(PsDemuxer(), [mux.mux(p.data, 9000 + p.pts * TICKS,
                                            9000 + p.dts * TICKS, keyframe=p.keyframe)
                                    for p in pictures])
    assert_same_pictures(units, pictures, "h265")
    assert [u.data for u in units] == [p.data for p in pictures]
    assert [(u.pts, u.dts) for u in units] == \
        [(9000 + p.pts * TICKS, 9000 + p.dts * TICKS) for p in pictures]


def test_timestamps_unwrap_past_33_bits() -> None:
    pictures = encoded("h264")
    start = (1 << 33) - 5 * TICKS  # wraps after the fifth picture
    mux = PsMuxer("h264")
    units = demux_all(PsDemuxer(), [mux.mux(p.data, start + p.pts * TICKS,
                                            start + p.dts * TICKS, keyframe=p.keyframe)
                                    for p in pictures])
    assert [(u.pts, u.dts) for u in units] == \
        [(start + p.pts * TICKS, start + p.dts * TICKS) for p in pictures]


def test_program_stream_map_beats_the_hint() -> None:
    pictures = encoded("h265")
    demuxer = PsDemuxer("h264")
    units = demux_all(demuxer, ps_of("h265", pictures))
    assert_same_pictures(units, pictures, "h265")
    assert demuxer.stats.program_stream_maps == 2


def test_sniff_codec() -> None:
    assert sniff_codec(encoded("h264")[0].data) == "h264"
    assert sniff_codec(encoded("h265")[0].data) == "h265"
    assert sniff_codec(encoded("h264")[1].data) is None  # slices alone could be either
    assert sniff_codec(b"\x00\x00\x01") is None


def test_one_frame_late_until_frame_ends_are_trusted() -> None:
    """Frame ends that match NAL boundaries three times are trusted: no picture waits for the
    next one after that (units come out at their own RTP frame's marker)."""
    pictures = encoded("h264")
    receiver = RtpPsReceiver(SSRC)
    frames = rtp_frames(ps_of("h264", pictures))
    out_after: list[int] = []
    for frame in frames:
        got = []
        for packet in frame:
            got += receiver.datagram(packet)
        out_after.append(len(got))
    assert out_after[:3] == [0, 1, 1]  # learning: each picture out when the next begins
    assert out_after[3] == 2  # third match: picture 2 (late), and picture 3 at its own end
    assert out_after[4:] == [1] * (len(pictures) - 4)
    assert receiver.flush() == []
    assert receiver.demuxer.stats.access_units == len(pictures)


def test_frame_end_inside_a_pes_is_not_a_picture_end() -> None:
    pictures = encoded("h264")
    packs = ps_of("h264", pictures)
    split = 6
    head, tail = packs[split][: len(packs[split]) // 2], packs[split][len(packs[split]) // 2:]
    receiver = RtpPsReceiver(SSRC)
    units = []
    for frame in rtp_frames([*packs[:split], head, tail, *packs[split + 1:]]):
        for packet in frame:
            units += receiver.datagram(packet)
    units += receiver.flush()
    assert_same_pictures(units, pictures, "h264")
    assert receiver.demuxer.stats.misaligned_frames == 0


def test_frame_end_that_was_not_a_picture_end() -> None:
    """A device frame-aligned for a while, then one picture in two PES sent as two RTP frames:
    the half already handed on cannot be taken back, the rest is dropped and counted, and
    the next keyframe restarts the stream."""
    pictures = encoded("h264")
    packs = ps_of("h264", pictures)
    split = 6
    data = pictures[split].data
    half = len(data) // 2
    head = pack_header(0) + b"".join(pes_packets(data[:half], split * TICKS))
    tail = b"".join(pes_packets(data[half:], None))
    frames = rtp_frames([*packs[:split], head, tail, *packs[split + 1:]])
    receiver = RtpPsReceiver(SSRC)
    units = []
    for frame in frames:
        for packet in frame:
            units += receiver.datagram(packet)
    units += receiver.flush()
    stats = receiver.demuxer.stats
    assert stats.misaligned_frames == 1
    assert stats.last_problem == "an RTP frame ended inside a picture; cutting by NAL units"
    # Pictures 0-5 whole, the half of 6 that was handed on, then from the keyframe at 10.
    assert_same_pictures(units[:split], pictures[:split], "h264")
    assert len(units[split].data) < len(pictures[split].data)
    assert_same_pictures(units[split + 1:], pictures[10:], "h264")


def test_keyframe_without_parameter_sets_gets_them() -> None:
    pictures = list(encoded("h264"))
    ps_types = parameter_set_types("h264")
    bare = [n for n in pictures[10].nals if nal_type("h264", n) not in ps_types]
    pictures[10] = Picture(join_annexb(bare), pictures[10].pts, pictures[10].dts, True)
    mux = PsMuxer("h264")
    units = demux_all(PsDemuxer(), [mux.mux(p.data, p.pts * TICKS, keyframe=p.keyframe)
                                    for p in pictures])
    assert len(units) == len(pictures)
    assert split_annexb(units[10].data) == encoded("h264")[10].nals
    assert decode("h264", [u.data for u in units[10:]]) == len(pictures) - 10


def test_first_keyframe_without_parameter_sets_is_refused() -> None:
    pictures = encoded("h264")
    ps_types = parameter_set_types("h264")
    bare = [n for n in pictures[0].nals if nal_type("h264", n) not in ps_types]
    demuxer = PsDemuxer("h264")
    mux = PsMuxer("h264")
    parts = [mux.mux(join_annexb(bare), 0, keyframe=True)]
    parts += [mux.mux(p.data, p.pts * TICKS, keyframe=p.keyframe) for p in pictures[1:]]
    units = demux_all(demuxer, parts)
    assert_same_pictures(units, pictures[10:], "h264")
    assert demuxer.stats.keyframes_without_parameter_sets == 1
    assert demuxer.stats.units_before_keyframe == 9
    assert "before any parameter sets" in demuxer.stats.last_problem


def test_garbage_is_skipped_and_counted() -> None:
    """Random bytes before, between and inside packs: never an exception, the damage is
    counted, and whole pictures resume at the next keyframe."""
    pictures = encoded("h265")
    packs = ps_of("h265", pictures)
    noise = os.urandom(5000).replace(b"\x00\x00\x01", b"\x00\x00\x02")
    damaged = packs[3][:40] + noise + packs[3][40:]  # garbage inside a PES: truncates it
    stream = [noise, *packs[:3], noise, damaged, *packs[4:]]
    demuxer = PsDemuxer()
    units = demux_all(demuxer, stream)
    stats = demuxer.stats
    assert stats.garbage_bytes >= 2 * len(noise)
    assert stats.resyncs >= 1
    assert stats.units_dropped >= 1
    assert stats.last_problem == "picture dropped: PS stream lost"
    # 0 and 1 are whole (2 waits for 3's start, which is lost), then from the keyframe at 10.
    assert_same_pictures(units[:2], pictures[:2], "h265")
    assert_same_pictures(units[2:], pictures[10:], "h265")


def test_garbage_alone_does_not_grow_memory() -> None:
    demuxer = PsDemuxer()
    noise = os.urandom(1 << 20)
    for part in chunks(noise, 1, largest=4000):
        assert demuxer.feed(part) == []
        assert demuxer.buffered < 70_000  # at most one PES (16-bit length) is ever held
    assert demuxer.stats.garbage_bytes > len(noise) - 70_000
    assert demuxer.flush() == []


def test_unknown_codec_is_bounded() -> None:
    """Video without a map, hint or parameter sets: dropped, with a reason, within a bound."""
    demuxer = PsDemuxer(max_access_unit=100_000)
    slices = b"".join(pes_packets(b"\x00\x00\x01\x41" + bytes(range(1, 250)) * 4, 0))
    for _ in range(300):
        demuxer.feed(pack_header(0) + slices)
        assert demuxer.buffered <= 100_000 + 1200
    assert demuxer.stats.unknown_codec_bytes > 0
    assert "codec unknown" in demuxer.stats.last_problem


def test_truncated_pes() -> None:
    """A PES whose length claims more than it carries: the next pack's start code shows up
    inside it; the picture is dropped and the stream resumes at the next keyframe."""
    pictures = encoded("h264")
    packs = ps_of("h264", pictures)
    packs[4] = packs[4][:-100]
    demuxer = PsDemuxer()
    units = demux_all(demuxer, packs)
    assert demuxer.stats.truncated_pes == 1
    assert_same_pictures(units[:3], pictures[:3], "h264")
    assert_same_pictures(units[3:], pictures[10:], "h264")


def test_stream_ending_inside_a_pes() -> None:
    pictures = encoded("h264")
    demuxer = PsDemuxer()
    units = demuxer.feed(b"".join(ps_of("h264", pictures[:3])) + ps_of("h264", pictures)[3][:50])
    units += demuxer.flush()
    assert demuxer.stats.truncated_pes == 1
    assert "inside a packet" in demuxer.stats.last_problem
    assert_same_pictures(units, pictures[:3], "h264")


def test_bad_pes_header() -> None:
    pictures = encoded("h264")
    packs = ps_of("h264", pictures)
    pes = packs[2].find(b"\x00\x00\x01\xe0")
    bad = bytearray(packs[2])
    bad[pes + 7] = 0x40  # PTS_DTS_flags '01' is forbidden
    packs[2] = bytes(bad)
    demuxer = PsDemuxer()
    units = demux_all(demuxer, packs)
    assert demuxer.stats.bad_headers == 1
    assert demuxer.stats.last_problem == "picture dropped: bad PES header"
    assert_same_pictures(units[:1], pictures[:1], "h264")
    assert_same_pictures(units[1:], pictures[10:], "h264")


def test_bad_pack_header_resyncs() -> None:
    pictures = encoded("h264")
    packs = ps_of("h264", pictures)
    packs[5] = packs[5][:4] + b"\xff" + packs[5][5:]  # neither MPEG-1 nor MPEG-2 pack
    demuxer = PsDemuxer()
    units = demux_all(demuxer, packs)
    assert demuxer.stats.bad_headers == 1
    assert_same_pictures(units[:4], pictures[:4], "h264")
    assert_same_pictures(units[4:], pictures[10:], "h264")


def test_audio_and_private_streams_are_parsed_over() -> None:
    pictures = encoded("h264")
    packs = ps_of("h264", pictures)
    audio = b"\x00\x00\x01\xc0" + struct.pack("!H", 300) + b"\x80\x80\x05" \
        + b"\x21\x00\x01\x00\x01" + os.urandom(292)
    private = b"\x00\x00\x01\xbd" + struct.pack("!H", 10) + os.urandom(10)
    padding = b"\x00\x00\x01\xbe" + struct.pack("!H", 20) + b"\xff" * 20
    demuxer = PsDemuxer()
    units = demux_all(demuxer, [p + audio + private + padding for p in packs])
    assert_same_pictures(units, pictures, "h264")
    assert demuxer.stats.audio_pes == len(packs)
    assert demuxer.stats.other_pes == len(packs)


def test_unsupported_video_stream_type() -> None:
    """SVAC (stream_type 0x80, allowed by GB/T 28181) is named, not decoded as H.264."""
    pictures = encoded("h264")
    psm = bytearray(program_stream_map("h264"))
    psm[psm.index(b"\xe0") - 1] = 0x80
    demuxer = PsDemuxer("h264")
    units = demux_all(demuxer, [pack_header(0) + bytes(psm) + b"".join(pes_packets(p.data, 0))
                                for p in pictures])
    assert units == []
    assert "0x80 (SVAC) is not supported" in demuxer.stats.last_problem


def test_oversized_picture() -> None:
    demuxer = PsDemuxer("h264", max_access_unit=20_000)
    pictures = encoded("h264")
    big = pictures[0].data + b"\x00\x00\x01\x65\x08" + bytes(range(1, 256)) * 100
    mux = PsMuxer("h264")
    units = demux_all(demuxer, [mux.mux(big, 0, keyframe=True)]
                      + [mux.mux(p.data, p.pts * TICKS, keyframe=p.keyframe)
                         for p in pictures[1:]])
    assert demuxer.stats.oversized_access_units == 1
    assert_same_pictures(units, pictures[10:], "h264")


@pytest.mark.parametrize("seed", range(40))
def test_mangled_streams_never_raise(seed: int) -> None:
    """Bytes flipped, cut out, inserted and repeated anywhere in a PS stream, fed in random
    pieces with frame ends and losses between: no exception, and memory stays bounded."""
    rng = random.Random(seed)
    codec: Codec = rng.choice(CODECS)
    stream = bytearray(rng.choice([ffmpeg_ps(codec, "vob").ps, ffmpeg_ps(codec, "mpeg").ps,
                                   b"".join(ps_of(codec, encoded(codec)))]))
    for _ in range(rng.randint(1, 30)):
        pos = rng.randrange(len(stream))
        op = rng.random()
        if op < 0.5:
            stream[pos] = rng.randrange(256)
        elif op < 0.7:
            del stream[pos : pos + rng.randint(1, 500)]
        elif op < 0.85:
            stream[pos:pos] = rng.randbytes(rng.randint(1, 50))
        else:
            stream[pos:pos] = stream[rng.randrange(len(stream)):][: rng.randint(1, 3000)]
    demuxer = PsDemuxer(rng.choice([None, "h264", "h265"]), max_access_unit=200_000)
    for part in chunks(bytes(stream), seed, largest=2000):
        for unit in demuxer.feed(part):
            assert unit.data.startswith(b"\x00\x00")
        assert demuxer.buffered < 200_000 + 70_000  # one picture under assembly + one PES
        if rng.random() < 0.05:
            demuxer.end_of_frame()
        if rng.random() < 0.01:
            demuxer.discontinuity("lost")
    demuxer.flush()
