"""`picture_nal_types`: an access unit's NAL types read only up to its first slice.

The ingest reads these for every unit instead of scanning the whole unit, so they
must say what the full scan says about a unit FFmpeg's parser framed: whether it is
a keyframe and whether it carries parameter sets.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.rtsp.annexb import (
    keyframe_nal_types,
    nal_types,
    parameter_set_types,
    picture_nal_types,
)
from drivers.source import Codec
from tests.support.rtsp import HEVC_CAMERA, CameraFactory, IngestFactory, take

pytestmark = pytest.mark.timeout(60)

START3, START4 = b"\x00\x00\x01", b"\x00\x00\x00\x01"
# Where FFmpeg's parser starts a new packet when one follows a slice (h264_parser.c,
# hevc/parser.c): parameter sets, AUD, (prefix) SEI and the like.
CUTS: dict[str, set[int]] = {
    "h264": {6, 7, 8, 9},
    "h265": {*range(32, 38), 39, *range(41, 45), *range(48, 56)},
}


def h264(t: int, payload: bytes = b"\x88\x84") -> bytes:
    return bytes([0x60 | t]) + payload


def h265(t: int, payload: bytes = b"\xaf\x09") -> bytes:
    return bytes([t << 1, 0x01]) + payload


def unit(*nals: bytes) -> bytes:
    return b"".join((START4 if i == 0 else START3) + n for i, n in enumerate(nals))


@pytest.mark.parametrize(
    "codec, data, expected",
    [
        # AUD, SEI, SPS, PPS, two IDR slices: read up to the first slice.
        ("h264", unit(h264(9), h264(6), h264(7), h264(8), h264(5), h264(5)), [9, 6, 7, 8, 5]),
        # A P picture of three slices: one header read.
        ("h264", unit(h264(1), h264(1), h264(1)), [1]),
        # Parameter sets alone (no slice): every unit.
        ("h264", unit(h264(7), h264(8)), [7, 8]),
        # Padding zeros before a 4-byte start code are not a unit.
        ("h264", START3 + h264(9) + b"\x00" + START4 + h264(1), [9, 1]),
        ("h264", b"", []),
        # VPS, SPS, PPS, prefix SEI, IDR_W_RADL, suffix SEI.
        ("h265", unit(h265(32), h265(33), h265(34), h265(39), h265(19), h265(40)),
         [32, 33, 34, 39, 19]),
        # AUD, then a TRAIL_R picture of two slice segments.
        ("h265", unit(h265(35), h265(1), h265(1)), [35, 1]),
        # TRAIL_N: its first header byte is zero, yet it is a slice, not padding.
        ("h265", unit(h265(35), h265(0), h265(0)), [35, 0]),
        ("h265", START3 + h265(35) + b"\x00" + START4 + h265(1), [35, 1]),
    ],
)
def test_types_up_to_the_first_slice(codec: Codec, data: bytes, expected: list[int]) -> None:
    assert picture_nal_types(codec, data) == expected


def is_slice(codec: str, t: int) -> bool:
    return 1 <= t <= 5 if codec == "h264" else t < 32


def verdict(codec: Codec, types: list[int]) -> tuple[bool, bool]:
    """(keyframe, carries parameter sets), as the ingest decides them."""
    found = set(types)
    return (bool(found & set(keyframe_nal_types(codec))),
            bool(found & set(parameter_set_types(codec))))


# Payload bytes are never zero, so no start code appears inside a unit (emulation
# prevention guarantees that in a real stream).
payloads = st.binary(min_size=1, max_size=40).map(lambda b: bytes(x or 1 for x in b))


def same_picture(codec: str, first: int, t: int) -> int:
    """Slice type `t` made one that may share a picture with a first slice of type `first`.

    All slices of an H.265 picture have one type; an H.264 picture is IDR in all its
    slices or in none.
    """
    if not is_slice(codec, t) or codec == "h265":
        return first if is_slice(codec, t) else t
    return 5 if first == 5 else min(t, 4)


@st.composite
def framed_units(draw: st.DrawFn) -> tuple[Codec, list[int], bytes]:
    """One picture as FFmpeg's parser frames it: no cut type after its first slice."""
    codec: Codec = draw(st.sampled_from(["h264", "h265"]))
    types = draw(st.lists(st.integers(1, 23) if codec == "h264" else st.integers(0, 63),
                          max_size=8))
    first = next((i for i, t in enumerate(types) if is_slice(codec, t)), len(types))
    types = types[:first] + [same_picture(codec, types[first], t) for t in types[first:]
                             if t not in CUTS[codec]]
    make = h264 if codec == "h264" else h265
    data = unit(*(make(t, draw(payloads)) for t in types))
    return codec, types, data


@given(framed_units())
@settings(max_examples=300, deadline=None)
def test_reads_to_the_first_slice_and_agrees_with_the_full_scan(
    case: tuple[Codec, list[int], bytes],
) -> None:
    codec, types, data = case
    first = next((i for i, t in enumerate(types) if is_slice(codec, t)), len(types) - 1)
    read = picture_nal_types(codec, data)
    assert read == types[: first + 1]
    assert verdict(codec, read) == verdict(codec, nal_types(codec, data)) == verdict(codec, types)


@pytest.mark.asyncio
@pytest.mark.parametrize("camera_options", [{"sub": None}, HEVC_CAMERA], ids=["h264", "h265"])
async def test_units_framed_by_ffmpeg_get_the_same_verdict(
    sim_camera: CameraFactory, ingest_factory: IngestFactory, camera_options: dict[str, object]
) -> None:
    """Encoded units through FFmpeg's RTSP demuxer: the short read agrees with the full scan."""
    camera = await sim_camera(**camera_options)
    ingest = await ingest_factory(camera.url())
    aus = await take(ingest, 40, within=20)
    codec = aus[0].codec
    assert any(au.keyframe for au in aus)
    for au in aus:
        full, read = nal_types(codec, au.data), picture_nal_types(codec, au.data)
        assert read == full[: len(read)]
        assert verdict(codec, read) == verdict(codec, full)
        assert au.keyframe == verdict(codec, full)[0]
