"""A drone link's raw MAVLink in a `.tlog` (the format of QGroundControl and MAVProxy).

Each record is an 8-byte big-endian timestamp (µs since the Unix epoch)
followed by one raw MAVLink frame, exactly as received: a signed frame keeps
its signature block, and nothing is re-packed. pymavlink reads the file with
``mavutil.mavlink_connection("x.tlog")`` (``msg._timestamp`` is the time in s).

**Crash safety.** Records are buffered here and handed to the OS whole, by an
unbuffered write, when the buffer holds ``flush_bytes`` (64 KiB) or its
oldest record is ``flush_seconds`` old (0.5 s), checked on every write and on
:meth:`TlogWriter.poll`. So a ``kill -9`` loses at most the buffer (~0.5 s,
given a ``poll`` at least every 0.5 s while the link is quiet) and never
leaves half a record. A power cut can lose more: only :meth:`TlogWriter.close`
fsyncs. A torn tail (a power cut, a full disk) is cut off by
:func:`valid_length` when a file is reopened with ``append=True``.

Synchronous and cheap (a bytes append per frame), so it may run on the event
loop of the process that sees the raw frames; not thread-safe.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path

_STAMP = struct.Struct(">Q")
_MAGIC_V2 = 0xFD
_MAGIC_V1 = 0xFE
_SIGNED = 0x01
_SIG_LEN = 13
_U64_MAX = 2**64 - 1


class TlogError(Exception):
    """A tlog that cannot be opened or written; the message is one line."""


def frame_length(head: bytes | bytearray | memoryview) -> int | None:
    """The length of the MAVLink frame starting `head` (at least 3 bytes), None if not one."""
    if len(head) < 3:
        return None
    if head[0] == _MAGIC_V2:
        return 12 + head[1] + (_SIG_LEN if head[2] & _SIGNED else 0)
    if head[0] == _MAGIC_V1:
        return 8 + head[1]
    return None


@dataclass(slots=True)
class TlogStats:
    frames: int = 0
    bytes: int = 0  # in the file, timestamps included
    flushes: int = 0


class TlogWriter:
    """Appends timestamped raw MAVLink frames to one `.tlog` file."""

    def __init__(self, path: str | os.PathLike[str], *, append: bool = False,
                 flush_bytes: int = 64 * 1024, flush_seconds: float = 0.5) -> None:
        """Create `path` (it must not exist) or, with `append`, continue it.

        Appending first cuts a torn tail, so the records stay aligned.
        """
        if flush_bytes <= 0 or flush_seconds <= 0:
            raise ValueError("flush_bytes and flush_seconds must be positive")
        self.path = Path(path)
        self.stats = TlogStats()
        self._flush_bytes = flush_bytes
        self._flush_ns = int(flush_seconds * 1e9)
        self._buffer = bytearray()
        self._oldest_ns = 0  # monotonic time of the oldest buffered record
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
        try:
            if append:
                self._fd = os.open(self.path, flags, 0o644)
                good = valid_length(self.path)
                os.ftruncate(self._fd, good)
                os.lseek(self._fd, good, os.SEEK_SET)
            else:
                self._fd = os.open(self.path, flags | os.O_EXCL, 0o644)
        except FileExistsError:
            raise TlogError(f"{self.path}: already exists (pass append=True to continue it)"
                            ) from None
        except OSError as e:
            raise TlogError(f"{self.path}: cannot open: {e.strerror}") from None

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def write(self, frame: bytes, time_ns: int | None = None) -> None:
        """Append one raw frame, received at `time_ns` (wall clock; default now).

        Raises ``ValueError`` for bytes that are not one whole MAVLink frame
        (they would misalign every record after them), ``OSError`` on a disk
        error, ``TlogError`` once closed.
        """
        if self._fd < 0:
            raise TlogError(f"{self.path}: closed")
        if frame_length(frame) != len(frame):
            raise ValueError(f"not one whole MAVLink frame ({len(frame)} bytes starting "
                             f"{bytes(frame[:3]).hex() or 'empty'})")
        if time_ns is None:
            time_ns = time.time_ns()
        us = time_ns // 1000
        if not 0 <= us <= _U64_MAX:
            raise ValueError(f"time {time_ns} ns is outside the tlog's range")
        now = time.monotonic_ns()
        if not self._buffer:
            self._oldest_ns = now
        self._buffer += _STAMP.pack(us)
        self._buffer += frame
        self.stats.frames += 1
        if len(self._buffer) >= self._flush_bytes or now - self._oldest_ns >= self._flush_ns:
            self.flush()

    def poll(self) -> bool:
        """Hand the buffer to the OS if it is due; True when it did. Call it while idle too."""
        if self._buffer and time.monotonic_ns() - self._oldest_ns >= self._flush_ns:
            self.flush()
            return True
        return False

    def flush(self) -> None:
        """Hand every buffered record to the OS now (no fsync)."""
        if self._fd < 0 or not self._buffer:
            return
        view = memoryview(self._buffer)
        done = 0
        try:
            while done < len(view):  # a regular file takes it all unless the disk is full
                done += os.write(self._fd, view[done:])
        finally:
            view.release()
            del self._buffer[:done]
        self.stats.bytes += done
        self.stats.flushes += 1

    def close(self) -> None:
        """Write what is buffered, fsync and close; closing twice is harmless."""
        if self._fd < 0:
            return
        try:
            self.flush()
            os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> TlogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def valid_length(path: str | os.PathLike[str]) -> int:
    """Bytes of `path` up to the end of its last whole record (a torn tail excluded).

    Walks the records by the frame lengths their headers declare; stops at
    the first record that is cut short or does not start like a MAVLink frame.
    """
    with open(path, "rb") as f:
        n = os.fstat(f.fileno()).st_size
        if n == 0:
            return 0
        with mmap.mmap(f.fileno(), n, access=mmap.ACCESS_READ) as data:
            good = 0
            while good + _STAMP.size + 3 <= n:
                at = good + _STAMP.size
                length = frame_length(data[at:at + 3])
                if length is None or at + length > n:
                    break
                good = at + length
            return good
