"""The recorder's bus log: every control-bus message, byte for byte, in MCAP.

**Files.** One MCAP file (https://mcap.dev/spec) per period; the caller names
each and rotates (:meth:`BusLogWriter.rotate`). Messages go into zstd chunks.
A chunk is closed, with its message indexes, and handed to the OS (flushed,
not fsynced) when it holds ``chunk_bytes`` of messages (1 MiB) or when its
first message is ``chunk_seconds`` old (1 s), whichever comes first; the age
is checked on every write and on :meth:`BusLogWriter.poll`. So a ``kill -9``
loses at most the open chunk: at most 1 MiB, and at most ``chunk_seconds`` plus
the interval between polls of traffic (1.25 s with ``poll`` every 0.25 s while
the bus is quiet). A power cut can lose more: only
:meth:`BusLogWriter.close` fsyncs. Close writes the summary (schemas,
channels, statistics, chunk indexes); a file without one was torn by a crash:
:func:`read` still reads every complete chunk of it and :func:`recover`
rewrites it as a whole, indexed file.

**Messages.** A message record's

- ``data`` is one msgpack array of bin: the multipart frames
  ``[topic, header, body, *blobs]`` exactly as they were on the bus (also a
  malformed message's frames, however many). ``msgpack.unpackb(data)`` gives
  the list of frames back; replay hands it to ``send_multipart`` and
  republishes byte-identical messages. (Not length prefixes: msgpack is
  self-describing, any msgpack tool can open it, and it is what the channel's
  ``message_encoding``, ``"msgpack"``, promises.)
- ``log_time`` is the wall clock (ns) when the recorder received it,
  ``publish_time`` the header's wall-clock ns, ``sequence`` the header's
  ``seq`` (mod 2**32). Records are in the order received; readers that sort by
  ``log_time`` (mcap's default) see the same order unless the clock stepped
  back, :func:`read` always sees it.

**Channels and schemas.** A channel per (topic, message type), created on
first sight: a topic carries one type in practice, and then it has exactly
one channel; should one carry several, each type gets its own channel with
the same topic, so a schema always names the type of every message on its
channel (MCAP readers filter by topic, so they still see all of them).
Schemas are shared by type: the schema's ``name`` is the header's ``type``
(``cam.status``), its encoding ``edge-bus-type``, and its data a JSON object
describing the message: ``type``, ``version`` and ``fields`` (name → Python
annotation) when the type is one of :data:`edge.bus.messages.MESSAGE_TYPES`
(null for a type this recorder does not know), and ``data``, a sentence on
the framing above.

**Bad input is kept as evidence, never fatal.** The recorder does not judge
messages (subscribers do): it needs only the header's type (a string) and
ts (an integer that fits MCAP's unsigned 64 bits). A message without them
(fewer than three frames, a header that is not such a msgpack array) is
recorded all the same, frames untouched, under the schema ``!malformed`` with
``publish_time`` = ``log_time``. A topic that is not UTF-8 is no reason to
refuse either: its channel's topic shows the bytes escaped, the data holds
them exactly. MCAP numbers channels with 16 bits, so past ``max_channels``
(topic, type) pairs in one file (a flood of invented topics) further new pairs
share one channel, topic and schema ``!unfiled``: still recorded, exactly.

**Threads.** :class:`BusLogWriter` is synchronous and not thread-safe. It is
meant to run in one dedicated thread (not the event loop) that owns a SUB
socket subscribed to everything: wait for the socket with a timeout of at
most 0.25 s, take what is queued, :meth:`~BusLogWriter.write` each message,
:meth:`~BusLogWriter.poll` after each wake-up, :meth:`~BusLogWriter.rotate` at
each period's end. About 4 µs of CPU per message here (250,000 msg/s alone;
a 40,000 msg/s stream through the broker lost nothing).
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import sys
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from io import BufferedWriter, BytesIO
from pathlib import Path
from typing import IO, Any, Literal

import msgpack
from mcap.data_stream import ReadDataStream
from mcap.opcode import Opcode
from mcap.reader import make_reader
from mcap.records import Channel, Chunk, Header, Schema
from mcap.records import Message as McapMessage
from mcap.stream_reader import breakup_chunk
from mcap.writer import CompressionType, Writer

from edge.bus.messages import MESSAGE_TYPES

MESSAGE_ENCODING = "msgpack"
SCHEMA_ENCODING = "edge-bus-type"
#: schema of messages without a readable type and timestamp (kept as received)
MALFORMED = "!malformed"
#: topic and schema of the channel that takes new (topic, type) pairs once a file is full
UNFILED = "!unfiled"
#: MCAP channel ids are 16 bits; keep a margin for the unfiled channel
MAX_CHANNELS = 65_000
LIBRARY = "edge recorder bus log"

Compression = Literal["zstd", "lz4", "none"]
_COMPRESSION = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4,
                "none": CompressionType.NONE}
_MAGIC = b"\x89MCAP0\r\n"
_RECORD_HEAD = struct.Struct("<BQ")
_FOOTER = struct.Struct("<BQQQI")  # opcode, length, summary_start, summary_offset_start, crc
_FOOTER_LEN = 20
_MESSAGE_OVERHEAD = 31  # opcode, length, channel, sequence, two times
_U64_MAX = 2**64 - 1
_U32 = 0xFFFFFFFF
# Chunks are closed here, by size and age, each followed by a flush; never by
# the mcap writer on its own, which would leave a closed chunk in our buffer.
_NEVER = sys.maxsize

_packb = msgpack.Packer(use_bin_type=True).pack
_unpackb = msgpack.unpackb

_FRAMING = ("msgpack array of bin: the bus frames [topic, header, body, *blobs] byte for byte; "
            "header = msgpack [type, version, source, seq, ts_ns, epoch]; "
            "body = msgpack map of the fields")


class BusLogError(Exception):
    """A bus log that cannot be opened, read or recovered; the message is one line."""


@dataclass(frozen=True, slots=True)
class BusLogFile:
    """A file the writer finished."""

    path: Path
    messages: int
    size: int
    first_ns: int | None  # log time of its first and last message
    last_ns: int | None


@dataclass(slots=True)
class WriterStats:
    messages: int = 0
    malformed: int = 0  # recorded under the `!malformed` schema
    unfiled: int = 0  # recorded on the `!unfiled` channel
    chunks: int = 0
    files: int = 0


@dataclass(frozen=True, slots=True)
class LoggedMessage:
    topic: str  # the channel's topic (a non-UTF-8 topic escaped; frames[0] is exact)
    type: str  # the schema name: the message type, `!malformed` or `!unfiled`
    log_time_ns: int
    publish_time_ns: int
    frames: list[bytes]


@dataclass(frozen=True, slots=True)
class Recovered:
    path: Path
    messages: int  # messages in the file now
    rewritten: bool  # False: the file was whole and is untouched
    dropped_bytes: int = 0  # of the torn file, not carried over (the torn tail)
    bad_chunks: int = 0  # complete chunks that did not decompress or check, skipped


def _schema_data(type_name: str) -> bytes:
    cls = MESSAGE_TYPES.get(type_name)
    fields = None if cls is None else {f.name: str(f.type) for f in dataclasses.fields(cls)}
    framing = {MALFORMED: "msgpack array of bin: the frames as received (not an envelope "
                          "with a readable type and ts)",
               UNFILED: "msgpack array of bin: the frames as received, of any type and "
                        "topic (frames[0]), past the file's channel limit",
               }.get(type_name, _FRAMING)
    return json.dumps({"type": type_name, "version": None if cls is None else cls.VERSION,
                       "fields": fields, "data": framing}).encode()


class BusLogWriter:
    """Writes bus messages into one MCAP file at a time (see the module docstring)."""

    def __init__(self, *, chunk_bytes: int = 1 << 20, chunk_seconds: float = 1.0,
                 compression: Compression = "zstd", max_channels: int = MAX_CHANNELS) -> None:
        if chunk_bytes <= 0 or chunk_seconds <= 0:
            raise ValueError("chunk_bytes and chunk_seconds must be positive")
        if not 1 <= max_channels <= MAX_CHANNELS:
            raise ValueError(f"max_channels must be 1..{MAX_CHANNELS}")
        self.stats = WriterStats()
        self._chunk_limit = chunk_bytes
        self._chunk_ns = int(chunk_seconds * 1e9)
        self._compression = _COMPRESSION[compression]
        self._max_channels = max_channels
        self._file: BufferedWriter | None = None
        self._mcap: Writer | None = None
        self._path: Path | None = None
        self._reset()

    def _reset(self) -> None:
        self._channels: dict[tuple[bytes, str], int] = {}
        self._schemas: dict[str, int] = {}
        self._unfiled_channel = 0
        self._chunk_size = 0
        self._chunk_start = 0
        self._messages = 0
        self._first_ns: int | None = None
        self._last_ns: int | None = None

    @property
    def path(self) -> Path | None:
        """The file being written, or None."""
        return self._path

    def open(self, path: str | os.PathLike[str]) -> None:
        """Start a new file at `path`; an existing file is never overwritten."""
        if self._mcap is not None:
            raise BusLogError(f"{path}: {self._path} is still open (close or rotate first)")
        p = Path(path)
        try:
            f = open(p, "xb")
        except FileExistsError:
            raise BusLogError(f"{p}: already exists (a bus log is never overwritten)") from None
        except OSError as e:
            raise BusLogError(f"{p}: cannot create: {e.strerror}") from None
        writer = Writer(f, chunk_size=_NEVER, compression=self._compression)
        try:
            writer.start(library=LIBRARY)
            # A crash right after this leaves a file recover() can tell from a stranger's.
            f.flush()
        except OSError as e:
            f.close()
            raise BusLogError(f"{p}: cannot write: {e.strerror}") from None
        self._reset()
        self._file, self._mcap, self._path = f, writer, p

    def write(self, frames: list[bytes] | tuple[bytes, ...], log_time_ns: int | None = None
              ) -> None:
        """Record one multipart message, received at `log_time_ns` (default: now).

        Any frames at all are recorded, as they are; see the module docstring.
        Raises only with no file open, or ``OSError`` on a disk error: then
        :meth:`abandon` the file (it stays torn, for :func:`recover`) and open
        another when the disk has room again.
        """
        mcap = self._mcap
        if mcap is None:
            raise BusLogError("no bus log is open")
        if log_time_ns is None:
            log_time_ns = time.time_ns()
        try:
            h = _unpackb(frames[1])
            kind = h[0]
            ts = h[4]
            if (type(h) is not list or type(kind) is not str or type(ts) is not int
                    or not 0 <= ts <= _U64_MAX or len(frames) < 3):
                raise ValueError
            seq = h[3]
            if type(seq) is not int:
                seq = 0
        except Exception:  # msgpack raises many types for garbage; all mean "malformed"
            kind, ts, seq = MALFORMED, log_time_ns, 0
            self.stats.malformed += 1
        cid = self._channels.get((frames[0] if frames else b"", kind))
        if cid is None:
            cid = self._new_channel(frames[0] if frames else b"", kind)
        data = _packb(frames)
        mcap.add_message(cid, log_time_ns, data, ts, seq & _U32)
        self.stats.messages += 1
        self._messages += 1
        if self._first_ns is None:
            self._first_ns = log_time_ns
        self._last_ns = log_time_ns
        if self._chunk_size == 0:
            self._chunk_start = log_time_ns
        self._chunk_size += len(data) + _MESSAGE_OVERHEAD
        # A clock stepped back also closes the chunk, rather than holding it open.
        if (self._chunk_size >= self._chunk_limit
                or not 0 <= log_time_ns - self._chunk_start < self._chunk_ns):
            self._end_chunk()

    def _new_channel(self, topic: bytes, kind: str) -> int:
        assert self._mcap is not None
        if len(self._channels) >= self._max_channels:
            self.stats.unfiled += 1
            if not self._unfiled_channel:
                self._unfiled_channel = self._mcap.register_channel(
                    UNFILED, MESSAGE_ENCODING, self._schema(UNFILED))
            return self._unfiled_channel
        cid = self._mcap.register_channel(topic.decode("utf-8", "backslashreplace"),
                                          MESSAGE_ENCODING, self._schema(kind))
        self._channels[(topic, kind)] = cid
        return cid

    def _schema(self, kind: str) -> int:
        assert self._mcap is not None
        sid = self._schemas.get(kind)
        if sid is None:
            sid = self._schemas[kind] = self._mcap.register_schema(
                kind, SCHEMA_ENCODING, _schema_data(kind))
        return sid

    def _end_chunk(self) -> None:
        assert self._mcap is not None
        # Closes the chunk, writes its message indexes, flushes our buffer to the OS.
        self._mcap.flush()  # type: ignore[no-untyped-call]
        self._chunk_size = 0
        self.stats.chunks += 1

    def poll(self, now_ns: int | None = None) -> bool:
        """Close the open chunk if it is due; True when it did. Call it while idle too."""
        if self._mcap is None or self._chunk_size == 0:
            return False
        if now_ns is None:
            now_ns = time.time_ns()
        if 0 <= now_ns - self._chunk_start < self._chunk_ns:
            return False
        self._end_chunk()
        return True

    def close(self) -> BusLogFile | None:
        """Finish the file (summary, fsync); None when none is open.

        On a disk error the file is closed unfinished (torn, for :func:`recover`)
        and the ``OSError`` raised; the writer is ready to open another.
        """
        mcap, f, path = self._mcap, self._file, self._path
        if mcap is None or f is None or path is None:
            return None
        self._mcap = self._file = self._path = None
        try:
            if self._chunk_size:
                self.stats.chunks += 1
            mcap.finish()  # type: ignore[no-untyped-call]
            f.flush()
            os.fsync(f.fileno())
            size = f.tell()
        finally:
            f.close()
        _fsync_dir(path.parent)
        self.stats.files += 1
        return BusLogFile(path, self._messages, size, self._first_ns, self._last_ns)

    def rotate(self, path: str | os.PathLike[str]) -> BusLogFile | None:
        """Close the current file (if any) and open the next one."""
        done = self.close()
        self.open(path)
        return done

    def abandon(self) -> None:
        """Drop the open file unfinished, e.g. after a write error: it stays torn."""
        f = self._file
        self._mcap = self._file = self._path = None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass  # what is buffered is lost; the file is torn either way


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the rename still happened
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- reading


def _check_magic(f: IO[bytes], path: Path) -> bool:
    """True when the file starts with the MCAP magic; False for a prefix of it (torn).

    Anything else is not ours: raise.
    """
    head = f.read(len(_MAGIC))
    if head == _MAGIC:
        return True
    if _MAGIC.startswith(head):
        return False
    raise BusLogError(f"{path}: not an MCAP file (it does not start with the MCAP magic)")


def _is_whole(f: IO[bytes], size: int) -> bool:
    """Does the file end in a footer and magic whose summary checks out?"""
    footer_at = size - len(_MAGIC) - _FOOTER.size
    if footer_at < len(_MAGIC):
        return False
    f.seek(footer_at)
    tail = f.read(_FOOTER.size + len(_MAGIC))
    if tail[_FOOTER.size:] != _MAGIC:
        return False
    opcode, length, summary_start, offset_start, crc = _FOOTER.unpack(tail[:_FOOTER.size])
    if opcode != Opcode.FOOTER or length != _FOOTER_LEN or summary_start > footer_at:
        return False
    if crc:
        start = summary_start or footer_at
        f.seek(start)
        summary = f.read(footer_at - start)
        if zlib.crc32(tail[:_FOOTER.size - 4], zlib.crc32(summary)) != crc:
            return False
    return True


class _Salvage:
    """Every message of the complete chunks of a torn file, in file order.

    mcap's StreamReader cannot be trusted at a torn tail: a short read of a cut
    chunk comes back as a chunk with short data. So records are framed here
    (a record that runs past the end of the file is the torn tail), and each is
    parsed by mcap's own record readers; a complete chunk that does not
    decompress or fails its CRC is skipped, not fatal.
    """

    def __init__(self, f: IO[bytes], size: int) -> None:
        self._f = f
        self._size = size
        self.header: Header | None = None
        self.schemas: dict[int, Schema] = {}
        self.channels: dict[int, Channel] = {}
        self.good_end = 0
        self._pending: tuple[int, bytes] | None = None
        self.bad_chunks = 0
        self.orphans = 0  # messages whose channel record was lost

    def _next_record(self) -> tuple[int, bytes] | None:
        """The next complete record, or None at the end of the file or its torn tail."""
        head = self._f.read(_RECORD_HEAD.size)
        if len(head) < _RECORD_HEAD.size:
            return None
        opcode, length = _RECORD_HEAD.unpack(head)
        end = self.good_end + _RECORD_HEAD.size + length
        if end > self._size or opcode == 0:  # opcode 0 is never written: zeroed blocks
            return None
        body = self._f.read(length)
        self.good_end = end
        return opcode, body

    def read_header(self) -> Header | None:
        """The header record, if the file has a complete one; call before messages()."""
        self._f.seek(0)
        if self._f.read(len(_MAGIC)) != _MAGIC:
            return None
        self.good_end = len(_MAGIC)
        record = self._next_record()
        if record is None:
            return None
        if record[0] != Opcode.HEADER:
            self._pending = record  # not the spec's layout; still look for messages
            return None
        try:
            self.header = Header.read(ReadDataStream(BytesIO(record[1])))
        except Exception:  # a damaged header: keep the defaults
            pass
        return self.header

    def messages(self) -> Iterator[McapMessage]:
        if self.good_end == 0:
            self.read_header()
        while True:
            record = self._pending or self._next_record()
            self._pending = None
            if record is None:
                return
            opcode, body = record
            if opcode in (Opcode.DATA_END, Opcode.FOOTER):
                return
            try:
                records = self._parse(opcode, body)
            except Exception:  # mcap and the codecs raise many types on bad data
                if opcode != Opcode.CHUNK:
                    return  # a damaged record outside a chunk: trust nothing after it
                self.bad_chunks += 1
                continue
            for item in records:
                if isinstance(item, McapMessage):
                    if item.channel_id in self.channels:
                        yield item
                    else:
                        self.orphans += 1
                elif isinstance(item, Channel):
                    self.channels[item.id] = item
                elif isinstance(item, Schema):
                    self.schemas[item.id] = item

    def _parse(self, opcode: int, body: bytes) -> list[Any]:
        stream = ReadDataStream(BytesIO(body))
        if opcode == Opcode.CHUNK:
            return breakup_chunk(Chunk.read(stream), validate_crc=True)
        if opcode == Opcode.MESSAGE:
            return [McapMessage.read(stream, len(body))]
        if opcode == Opcode.CHANNEL:
            return [Channel.read(stream)]
        if opcode == Opcode.SCHEMA:
            return [Schema.read(stream)]
        return []


def _frames(data: bytes, path: Path) -> list[bytes]:
    try:
        frames = _unpackb(data)
    except Exception:
        frames = None
    if not isinstance(frames, list) or not all(isinstance(x, bytes) for x in frames):
        raise BusLogError(f"{path}: a message is not a msgpack array of frames "
                          "(not written by the edge recorder?)")
    return frames


def read(path: str | os.PathLike[str], *, topics: Iterable[str] | None = None,
         start_ns: int | None = None, end_ns: int | None = None) -> Iterator[LoggedMessage]:
    """The messages of a bus log, in the order they were recorded.

    `topics` keeps only those topics; `start_ns` (inclusive) and `end_ns`
    (exclusive) bound the log time. A whole file is read through its index
    (only the chunks that can match); a torn one (no summary: the recorder
    crashed) by walking it, which yields every message of its complete chunks.
    """
    p = Path(path)
    wanted = None if topics is None else frozenset(topics)
    try:
        f = open(p, "rb")
    except OSError as e:
        raise BusLogError(f"{p}: cannot open: {e.strerror}") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if not _check_magic(f, p):
            return
        try:
            if _is_whole(f, size):
                f.seek(0)
                found = make_reader(f).iter_messages(
                    None if wanted is None else list(wanted), log_time_order=False,
                    starting_at=start_ns, ending_before=end_ns)
                for schema, channel, message in found:
                    yield LoggedMessage(channel.topic, schema.name if schema else "",
                                        message.log_time, message.publish_time,
                                        _frames(message.data, p))
                return
        except BusLogError:
            raise
        except Exception as e:  # mcap raises many types for a damaged file
            raise BusLogError(f"{p}: damaged MCAP file ({type(e).__name__}: {e})") from None
        salvage = _Salvage(f, size)
        for message in salvage.messages():
            channel = salvage.channels[message.channel_id]
            if wanted is not None and channel.topic not in wanted:
                continue
            t = message.log_time
            if (start_ns is not None and t < start_ns) or (end_ns is not None and t >= end_ns):
                continue
            schema = salvage.schemas.get(channel.schema_id)
            yield LoggedMessage(channel.topic, schema.name if schema else "", t,
                                message.publish_time, _frames(message.data, p))


def is_whole(path: str | os.PathLike[str]) -> bool:
    """True for a finished bus log (summary and footer), False for a torn one."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            return _check_magic(f, p) and _is_whole(f, os.fstat(f.fileno()).st_size)
    except OSError as e:
        raise BusLogError(f"{p}: cannot open: {e.strerror}") from None


def recover(path: str | os.PathLike[str]) -> Recovered:
    """Make a torn bus log whole: keep every message of its complete chunks.

    The recoverable part is rewritten as a valid, indexed MCAP next to it
    (``NAME.recovering``), fsynced, and renamed over the torn file, so a crash
    during recovery leaves the torn file as it was. A whole file is left
    untouched (idempotent). A file of fewer bytes than the header (a crash
    right after creating it) becomes a valid empty log. Never call it on a file
    a writer still has open: it is meant for start-up, before recording.
    """
    p = Path(path)
    try:
        f = open(p, "rb")
    except OSError as e:
        raise BusLogError(f"{p}: cannot open: {e.strerror}") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        _check_magic(f, p)
        if _is_whole(f, size):
            return Recovered(p, _count(f, p), rewritten=False)
        tmp = p.with_name(p.name + ".recovering")
        try:
            salvage, kept = _rewrite(f, size, tmp)
            os.replace(tmp, p)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise BusLogError(f"{p}: cannot write the recovered file: {e.strerror}") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    _fsync_dir(p.parent)
    return Recovered(p, kept, rewritten=True, dropped_bytes=size - salvage.good_end,
                     bad_chunks=salvage.bad_chunks)


def _count(f: IO[bytes], path: Path) -> int:
    try:
        f.seek(0)
        summary = make_reader(f).get_summary()
        if summary is not None and summary.statistics is not None:
            return int(summary.statistics.message_count)
        f.seek(0)
        return sum(1 for _ in make_reader(f).iter_messages(log_time_order=False))
    except Exception as e:  # mcap raises many types for a damaged file
        raise BusLogError(f"{path}: damaged MCAP file ({type(e).__name__}: {e})") from None


def _rewrite(f: IO[bytes], size: int, tmp: Path) -> tuple[_Salvage, int]:
    salvage = _Salvage(f, size)
    header = salvage.read_header()
    with open(tmp, "wb") as out:
        writer = Writer(out, compression=CompressionType.ZSTD)
        writer.start(profile=header.profile if header else "",
                     library=f"{header.library if header else LIBRARY} (recovered)")
        channel_ids: dict[int, int] = {}
        schema_ids: dict[int, int] = {}
        kept = 0
        for message in salvage.messages():
            cid = channel_ids.get(message.channel_id)
            if cid is None:
                channel = salvage.channels[message.channel_id]
                schema = salvage.schemas.get(channel.schema_id)
                sid = 0
                if schema is not None:
                    sid = schema_ids.get(schema.id, 0)
                    if not sid:
                        sid = schema_ids[schema.id] = writer.register_schema(
                            schema.name, schema.encoding, schema.data)
                cid = channel_ids[message.channel_id] = writer.register_channel(
                    channel.topic, channel.message_encoding, sid, channel.metadata)
            writer.add_message(cid, message.log_time, message.data, message.publish_time,
                               message.sequence)
            kept += 1
        writer.finish()  # type: ignore[no-untyped-call]
        out.flush()
        os.fsync(out.fileno())
    return salvage, kept

