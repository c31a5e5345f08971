"""Torn fragmented MP4 files cut back to their last complete fragment, on real segments
written by the segment writer and then truncated, extended or spliced as a crash or a
filesystem would leave them."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from edge.recorder.mp4_repair import (
    Box,
    Mp4FormatError,
    iter_boxes,
    list_fragments,
    read_index,
    repair,
)
from edge.recorder.mp4_segment import SegmentWriter
from tests.support.media import decode_all, encoded_units

pytestmark = pytest.mark.timeout(60)


def segment(tmp: Path, seconds: float = 3.0, gop: int = 30) -> Path:
    """A real segment file, closed cleanly: ftyp, moov, one moof+mdat a second, mfra."""
    writer = SegmentWriter(tmp / "rec", "cam", "main", segment_seconds=60.0)
    for unit in encoded_units("h264", seconds, gop=gop):
        writer.write(unit)
    info = writer.close()
    assert info is not None
    return info.path


def boxes(path: Path) -> list[Box]:
    with open(path, "rb") as f:
        return list(iter_boxes(f, path.stat().st_size))


def copy_cut(src: Path, dest: Path, size: int) -> Path:
    shutil.copy(src, dest)
    with open(dest, "r+b") as f:
        f.truncate(size)
    return dest


def test_the_writers_files_have_the_layout_repair_expects(tmp_path: Path) -> None:
    path = segment(tmp_path)
    assert [b.type for b in boxes(path)] == ["ftyp", "moov"] + ["moof", "mdat"] * 3 + ["mfra"]
    assert all(b.complete for b in boxes(path))


def test_a_whole_file_is_left_exactly_as_it_is(tmp_path: Path) -> None:
    path = segment(tmp_path)
    before = path.read_bytes()
    for _ in range(2):
        result = repair(path)
        assert (result.changed, result.bytes_cut, result.fragments, result.playable) == \
            (False, 0, 3, True)
        assert path.read_bytes() == before


@pytest.mark.parametrize(("where", "kept"), [
    ("inside the last mdat", 2),
    ("inside the header of the last moof", 2),
    ("after a moof whose mdat never came", 2),
    ("inside the mfra written at close", 3),
    ("inside the second mdat", 1),
])
def test_a_torn_file_is_cut_after_its_last_complete_fragment(tmp_path: Path, where: str,
                                                             kept: int) -> None:
    whole = segment(tmp_path)
    b = boxes(whole)
    moofs = [x for x in b if x.type == "moof"]
    mdats = [x for x in b if x.type == "mdat"]
    cut = {
        "inside the last mdat": mdats[2].offset + 100,
        "inside the header of the last moof": moofs[2].offset + 5,
        "after a moof whose mdat never came": moofs[2].end,
        "inside the mfra written at close": b[-1].offset + 10,
        "inside the second mdat": mdats[1].end - 1,
    }[where]
    torn = copy_cut(whole, tmp_path / "torn.mp4", cut)

    result = repair(torn)
    assert result.size_before == cut
    assert result.size_after == mdats[kept - 1].end
    assert result.bytes_cut == cut - mdats[kept - 1].end
    assert (result.fragments, result.playable) == (kept, True)
    assert torn.read_bytes() == whole.read_bytes()[:result.size_after]
    assert decode_all(torn) == 30 * kept == read_index(torn).samples
    again = repair(torn)
    assert not again.changed and again.fragments == kept


def test_a_file_with_only_ftyp_and_moov_is_reported_empty_and_kept(tmp_path: Path) -> None:
    whole = segment(tmp_path)
    moov = boxes(whole)[1]
    header_only = copy_cut(whole, tmp_path / "header.mp4", moov.end)
    result = repair(header_only)
    assert (result.changed, result.fragments, result.playable) == (False, 0, False)
    assert header_only.stat().st_size == moov.end

    torn_moov = copy_cut(whole, tmp_path / "torn-moov.mp4", moov.offset + 50)
    result = repair(torn_moov)
    assert (result.size_after, result.fragments, result.playable) == (moov.offset, 0, False)
    assert torn_moov.exists()

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    result = repair(empty)
    assert (result.changed, result.playable) == (False, False)


def test_64_bit_sizes_are_walked_and_a_zeroed_tail_is_cut(tmp_path: Path) -> None:
    whole = segment(tmp_path)
    data = whole.read_bytes()
    b = boxes(whole)
    mdats = [x for x in b if x.type == "mdat"]
    # A free box with a 64-bit size between the first two fragments (players skip it),
    # then the tail a power cut can leave: the file grew but its last blocks are zeros.
    free = struct.pack(">I4sQ", 1, b"free", 16 + 1000) + b"\xff" * 1000
    spliced = data[:mdats[0].end] + free + data[mdats[0].end:b[-1].offset] + b"\0" * 4096
    path = tmp_path / "spliced.mp4"
    path.write_bytes(spliced)

    assert [x.type for x in boxes(path)][4] == "free"
    assert boxes(path)[4].size == 1016
    result = repair(path)
    assert (result.bytes_cut, result.fragments) == (4096, 3)
    assert decode_all(path) == 90
    assert [o for o, _ in list_fragments(path)][1] == mdats[0].end + 1016


def test_a_box_running_to_the_end_of_the_file_is_whole(tmp_path: Path) -> None:
    whole = segment(tmp_path)
    path = tmp_path / "to-end.mp4"
    path.write_bytes(whole.read_bytes() + struct.pack(">I4s", 0, b"free") + b"\x01" * 100)
    assert not repair(path).changed


def test_a_file_that_is_not_an_mp4_is_refused_untouched(tmp_path: Path) -> None:
    for name, data in [("photo.mp4", b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"\x00" * 200),
                       ("notes.mp4", b"not a video at all, just some text\n" * 10)]:
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(Mp4FormatError, match=f"{name} is not an MP4 file"):
            repair(path)
        with pytest.raises(Mp4FormatError, match=f"{name} is not an MP4 file"):
            read_index(path)
        assert path.read_bytes() == data


def test_fragments_are_listed_with_what_replay_seeks_by(tmp_path: Path) -> None:
    # GOPs of 2 s in fragments of at most 1 s: every other fragment starts mid-GOP.
    path = segment(tmp_path, seconds=4.0, gop=60)
    index = read_index(path)
    b = boxes(path)
    assert index.timescale == 90_000 and index.whole
    assert [(f.decode_time, f.samples, f.duration, f.keyframe) for f in index.fragments] == [
        (0, 30, 90_000, True), (90_000, 30, 90_000, False),
        (180_000, 30, 90_000, True), (270_000, 30, 90_000, False)]
    pairs = list_fragments(path)
    assert pairs == [(f.offset, f.size) for f in index.fragments]
    assert pairs[0][0] == b[1].end  # right after the moov
    for (offset, size), (nxt, _) in zip(pairs, pairs[1:], strict=False):
        assert offset + size == nxt
    assert pairs[-1][0] + pairs[-1][1] == b[-1].offset  # then the mfra
