"""Fragmented MP4 files read box by box: their fragments listed, and a torn tail cut off.

A segment written by `mp4_segment` is ``ftyp``, ``moov`` (with ``mvex``: no samples
in it), then one ``moof`` + ``mdat`` pair per fragment, and ``mfra`` once the file
was closed. A writer killed mid-fragment leaves a file that ends inside a box; players
give up on it, but everything up to the last complete ``moof`` + ``mdat`` pair is
valid. `repair` walks the top-level boxes (32-bit size, 64-bit ``largesize`` when
the size is 1, size 0 for "to the end of the file") and truncates the file right
after that pair. Only whole boxes are judged; the samples inside them are not read.

`read_index` lists the complete fragments with what replay and a rebuilt catalog
need to seek: byte offset and size, decode time, sample count and duration (in the
track's timescale) and whether the fragment starts with a keyframe. It reads box
headers and the small ``moof`` boxes only, never the media data.

Single-track files are assumed (ours are); of several tracks only the first is read.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# ISO/IEC 14496-12 sample flags: sample_is_non_sync_sample.
_NON_SYNC = 0x0001_0000
_HEADER = struct.Struct(">I4s")


class Mp4FormatError(ValueError):
    """The file is not a fragmented MP4 this module may read or cut."""


@dataclass(frozen=True, slots=True)
class Box:
    """One top-level box: where it starts, its whole size (header included), its type.
    `complete` is False for a box that runs past the end of the file."""

    offset: int
    size: int
    type: str
    complete: bool

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass(frozen=True, slots=True)
class Fragment:
    """One complete ``moof`` + ``mdat`` pair. Times are in the track's timescale."""

    offset: int  # of the moof
    size: int  # moof and mdat together
    decode_time: int  # tfdt baseMediaDecodeTime: the first sample's decode time
    samples: int
    duration: int
    keyframe: bool  # its first sample is a sync sample: a decoder can start here

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass(frozen=True, slots=True)
class Mp4Index:
    """What `read_index` found: the track's timescale and every complete fragment."""

    path: Path
    size: int
    timescale: int
    fragments: tuple[Fragment, ...]
    whole: bool  # every top-level box complete, no moof without its mdat

    @property
    def samples(self) -> int:
        return sum(f.samples for f in self.fragments)


@dataclass(frozen=True, slots=True)
class RepairResult:
    path: Path
    size_before: int
    size_after: int
    fragments: int  # complete fragments kept

    @property
    def bytes_cut(self) -> int:
        return self.size_before - self.size_after

    @property
    def changed(self) -> bool:
        return self.size_after != self.size_before

    @property
    def playable(self) -> bool:
        """False when no complete fragment is left: the file holds no picture."""
        return self.fragments > 0


def _valid_type(raw: bytes) -> bool:
    # Box types are four printable ASCII characters ("©nam" is not top-level). A zeroed
    # tail, as a filesystem may leave after a power cut, fails this and is cut.
    return all(0x20 <= b <= 0x7E for b in raw)


def iter_boxes(f: BinaryIO, size: int) -> Iterator[Box]:
    """The top-level boxes of an open file of `size` bytes, in order. Stops after the first
    box that is incomplete (it runs past the end); a header that is itself torn or not a
    box header ends the walk with an incomplete box of the bytes that are left."""
    pos = 0
    while pos < size:
        f.seek(pos)
        head = f.read(16)
        if len(head) < 8:
            yield Box(pos, size - pos, "", False)
            return
        box_size, raw_type = _HEADER.unpack_from(head)
        header = 8
        if box_size == 1:
            if len(head) < 16:
                yield Box(pos, size - pos, "", False)
                return
            (box_size,) = struct.unpack_from(">Q", head, 8)
            header = 16
        elif box_size == 0:
            box_size = size - pos
        if box_size < header or not _valid_type(raw_type):
            yield Box(pos, size - pos, "", False)
            return
        complete = pos + box_size <= size
        yield Box(pos, box_size if complete else size - pos, raw_type.decode("ascii"), complete)
        if not complete:
            return
        pos += box_size


def _children(data: bytes, start: int = 0,
              end: int | None = None) -> Iterator[tuple[str, int, int]]:
    """(type, payload start, payload end) of the boxes inside a box's payload."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        box_size, raw_type = _HEADER.unpack_from(data, pos)
        header = 8
        if box_size == 1:
            if pos + 16 > end:
                return
            (box_size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif box_size == 0:
            box_size = end - pos
        if box_size < header or pos + box_size > end:
            return
        yield raw_type.decode("latin-1"), pos + header, pos + box_size
        pos += box_size


def _find(data: bytes, path: tuple[str, ...], start: int = 0,
          end: int | None = None) -> tuple[int, int] | None:
    for kind, s, e in _children(data, start, end):
        if kind == path[0]:
            return (s, e) if len(path) == 1 else _find(data, path[1:], s, e)
    return None


@dataclass(frozen=True, slots=True)
class _TrackDefaults:
    timescale: int
    duration: int
    flags: int


def _track_defaults(moov: bytes) -> _TrackDefaults:
    timescale = 0
    mdhd = _find(moov, ("trak", "mdia", "mdhd"))
    if mdhd is not None:
        s, _ = mdhd
        version = moov[s]
        (timescale,) = struct.unpack_from(">I", moov, s + (20 if version == 1 else 12))
    duration = flags = 0
    trex = _find(moov, ("mvex", "trex"))
    if trex is not None:
        s, e = trex
        if e - s >= 24:
            # version+flags, track_ID, sample_description_index, duration, size, flags
            _, _, _, duration, _, flags = struct.unpack_from(">IIIIII", moov, s)
    return _TrackDefaults(timescale, duration, flags)


def _fragment(moof: bytes, offset: int, size: int, defaults: _TrackDefaults) -> Fragment:
    traf = _find(moof, ("traf",))
    if traf is None:
        raise Mp4FormatError(f"moof at {offset} has no traf")
    ts, te = traf
    default_duration, default_flags = defaults.duration, defaults.flags
    decode_time = 0
    samples = duration = 0
    first_flags: int | None = None
    for kind, s, e in _children(moof, ts, te):
        if kind == "tfhd":
            (vf,) = struct.unpack_from(">I", moof, s)
            tf = vf & 0xFFFFFF
            pos = s + 8  # version+flags, track_ID
            if tf & 0x01:
                pos += 8  # base_data_offset
            if tf & 0x02:
                pos += 4  # sample_description_index
            if tf & 0x08:
                (default_duration,) = struct.unpack_from(">I", moof, pos)
                pos += 4
            if tf & 0x10:
                pos += 4  # default_sample_size
            if tf & 0x20:
                (default_flags,) = struct.unpack_from(">I", moof, pos)
        elif kind == "tfdt":
            version = moof[s]
            (decode_time,) = struct.unpack_from(">Q" if version == 1 else ">I", moof, s + 4)
        elif kind == "trun":
            (vf, count) = struct.unpack_from(">II", moof, s)
            tf = vf & 0xFFFFFF
            pos = s + 8
            if tf & 0x01:
                pos += 4  # data_offset
            run_first: int | None = None
            if tf & 0x04:
                (run_first,) = struct.unpack_from(">I", moof, pos)
                pos += 4
            fields = [bit for bit in (0x100, 0x200, 0x400, 0x800) if tf & bit]
            width = 4 * len(fields)
            if pos + width * count > e:
                raise Mp4FormatError(f"trun at {offset} is shorter than its sample count")
            if 0x100 in fields:
                at = pos + 4 * fields.index(0x100)
                run_duration = sum(struct.unpack_from(">I", moof, at + i * width)[0]
                                   for i in range(count))
            else:
                run_duration = count * default_duration
            if samples == 0 and count:
                if run_first is None and 0x400 in fields:
                    (run_first,) = struct.unpack_from(">I", moof, pos + 4 * fields.index(0x400))
                first_flags = run_first
            samples += count
            duration += run_duration
    flags = default_flags if first_flags is None else first_flags
    return Fragment(offset, size, decode_time, samples, duration,
                    samples > 0 and not flags & _NON_SYNC)


def _read_payload(f: BinaryIO, box: Box) -> bytes:
    f.seek(box.offset)
    header = 16 if _HEADER.unpack(f.read(8))[0] == 1 else 8
    f.seek(box.offset + header)
    return f.read(box.size - header)


def _check_start(path: Path, f: BinaryIO, size: int) -> None:
    """Refuse a file that is not an MP4 before anything is cut from it: its first box must
    be ``ftyp`` (a file too short to tell is a torn header of ours)."""
    f.seek(0)
    head = f.read(8)
    if b"ftyp".startswith(head[4:8]) and (size < 8 or _HEADER.unpack(head)[0] >= 8):
        return
    raise Mp4FormatError(f"{path} is not an MP4 file (it does not start with an 'ftyp' box)")


def _walk(path: Path) -> tuple[int, list[Box]]:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        _check_start(path, f, size)
        return size, list(iter_boxes(f, size))


def _good_end(boxes: list[Box]) -> tuple[int, int, bool]:
    """(offset to keep up to, complete fragments before it, whether the file is whole)."""
    keep = fragments = 0
    moov_seen = False
    i = 0
    while i < len(boxes):
        box = boxes[i]
        if not box.complete:
            return keep, fragments, False
        if box.type == "moov":
            moov_seen = True
            keep = box.end
        elif box.type == "moof":
            following = boxes[i + 1] if i + 1 < len(boxes) else None
            if following is None or following.type != "mdat" or not following.complete:
                return keep, fragments, False
            if moov_seen:
                keep = following.end
                fragments += 1
            i += 1
        elif box.type == "ftyp" and i == 0:
            keep = box.end
        i += 1
    return (boxes[-1].end if boxes else 0), fragments, True


def read_index(path: str | os.PathLike[str]) -> Mp4Index:
    """The complete fragments of a (possibly torn) fragmented MP4, in file order."""
    p = Path(path)
    with open(p, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        _check_start(p, f, size)
        boxes = list(iter_boxes(f, size))
        _, _, whole = _good_end(boxes)
        moov = next((b for b in boxes if b.type == "moov" and b.complete), None)
        if moov is None:
            return Mp4Index(p, size, 0, (), whole)
        fragments: list[Fragment] = []
        try:
            defaults = _track_defaults(_read_payload(f, moov))
            for box, nxt in zip(boxes, boxes[1:], strict=False):
                if (box.type == "moof" and box.complete and nxt.type == "mdat"
                        and nxt.complete and box.offset > moov.offset):
                    fragments.append(_fragment(_read_payload(f, box), box.offset,
                                               box.size + nxt.size, defaults))
        except struct.error:
            # A box whose declared contents run past its own end: not something we wrote.
            raise Mp4FormatError(f"{p}: malformed box inside moov or moof") from None
    return Mp4Index(p, size, defaults.timescale, tuple(fragments), whole)


def list_fragments(path: str | os.PathLike[str]) -> list[tuple[int, int]]:
    """(offset, size) of every complete ``moof`` + ``mdat`` pair, in file order."""
    return [(f.offset, f.size) for f in read_index(path).fragments]


def repair(path: str | os.PathLike[str]) -> RepairResult:
    """Cut a torn fragmented MP4 right after its last complete ``moof`` + ``mdat`` pair.

    A whole file (every box complete) is left exactly as it is, so repairing twice, or
    repairing a file that was closed cleanly, changes nothing. A file with no complete
    fragment keeps what is whole of ``ftyp`` and ``moov`` and is reported not
    `playable`; it is not deleted (the caller decides). Raises `Mp4FormatError` for a
    file that does not start with ``ftyp`` (it is not ours to cut) and `OSError` when
    the file cannot be read or truncated.
    """
    p = Path(path)
    size, boxes = _walk(p)
    keep, fragments, whole = _good_end(boxes)
    if not whole and keep < size:
        with open(p, "r+b") as f:
            f.truncate(keep)
            os.fsync(f.fileno())
        return RepairResult(p, size, keep, fragments)
    return RepairResult(p, size, size, fragments)
