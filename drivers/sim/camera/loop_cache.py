"""On-disk cache of encoded loops, so a simulated camera starts in milliseconds.

Encoding a loop costs seconds of CPU (a 2 s 720p loop is about 2 s of one
core); four demo cameras starting together on a loaded machine took 15 s to
come live.  A loop's bytes depend only on its `EncoderSettings`, its length,
the encoder build and our own scene code, so it is stored once under
``$XDG_CACHE_HOME/edge/sim-camera/`` (default ``~/.cache/edge/sim-camera``),
keyed by all of those.  The simulated GB/T 28181 device keeps its PTZ views'
loops here too (`cached_aus`, keyed by what the caller names plus what every loop
depends on: `canonical_key`).

File format (all integers big-endian)::

    MAGIC
    u32 key length, key (canonical JSON, compared in full on load)
    u32 access unit count, then per unit: u8 keyframe, u16 NAL count,
        per NAL: u32 length, bytes
    SHA-256 of everything above

A file is written to a temporary name in the same directory and renamed into
place, so readers see a complete file or none.  A file that fails any check
(short, bad magic, other key, bad digest) is ignored and overwritten by a
fresh encode.  The cache is an optimisation only: an unwritable directory
(read-only home, systemd's ProtectHome) is logged once and otherwise ignored.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path

import av

from drivers.rtsp.annexb import Codec
from drivers.sim.camera.encoder import (
    EncodedAU,
    EncodedLoop,
    EncoderSettings,
    encode_loop,
    loop_from_aus,
)
from drivers.sim.camera.viewport import SCENE_VERSION

log = logging.getLogger(__name__)

MAGIC = b"EDGE-SIM-LOOP\x00\x01\n"
# Bump when the camera's encoder options or this format change the bytes (the drawing has
# its own, `viewport.SCENE_VERSION`).
FORMAT_VERSION = 1
# What `canonical_key` adds to every key: a caller's fields may not name them.
_ENVIRONMENT = frozenset({"format", "scene", "encoder", "pyav", "opencv", "numpy"})
_DIGEST = hashlib.sha256().digest_size
_warned_unwritable = False
# How each encoder names its build in the SEI it writes into the first frame.
_VERSION_PATTERNS: dict[Codec, bytes] = {
    "h264": rb"x264 - core \d+(?: r\d+ [0-9a-f]+)?",
    "h265": rb"x265 \(build \d+\) - [^:\x00]+",
}

_memory: dict[tuple[EncoderSettings, float], EncodedLoop] = {}
_locks: dict[tuple[EncoderSettings, float], threading.Lock] = {}
_locks_guard = threading.Lock()


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edge" / "sim-camera"


@functools.cache
def encoder_version(codec: Codec) -> str:
    """The encoder build, as it writes itself into its SEI (one 64x64 frame, ~10-40 ms).

    PyAV's own version does not pin the encoder when PyAV is built against a
    system FFmpeg, and an x264 upgrade changes the bitstream.
    """
    name = "libx264" if codec == "h264" else "libx265"
    ctx = av.CodecContext.create(name, "w")
    assert isinstance(ctx, av.VideoCodecContext)
    ctx.width = ctx.height = 64
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, 30)
    if codec == "h265":
        ctx.options = {"x265-params": "log-level=error"}
    ctx.open()
    # Any picture will do (the SEI names the build whatever it shows); not one made with
    # numpy, which a camera serving cached loops never imports otherwise.
    frame = av.VideoFrame(64, 64, "yuv420p")
    frame.pts = 0
    data = b"".join(bytes(p) for p in [*ctx.encode(frame), *ctx.encode(None)])
    found = re.search(_VERSION_PATTERNS[codec], data)
    libavcodec = ".".join(map(str, av.library_versions["libavcodec"]))
    return f"{found.group(0).decode() if found else name}; libavcodec {libavcodec}"


@functools.cache
def _opencv_version() -> str:
    """`cv2.__version__`, without importing OpenCV (16 MB of a process that serves cached
    loops and never draws): pip's wheels are versioned MAJOR.MINOR.PATCH.BUILD and
    OpenCV calls itself the first three. Should two of its wheels be installed, the key
    may name the other's build: the text in a cached picture could differ by a pixel."""
    for dist in ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless",
                 "opencv-contrib-python"):
        try:
            return ".".join(importlib.metadata.version(dist).split(".")[:3])
        except importlib.metadata.PackageNotFoundError:
            continue
    import cv2  # built some other way: ask it

    return str(cv2.__version__)


@functools.cache
def _numpy_version() -> str:
    # numpy.__version__ is its distribution's version; numpy itself is not needed here.
    try:
        return importlib.metadata.version("numpy")
    except importlib.metadata.PackageNotFoundError:
        import numpy as np

        return str(np.__version__)


def canonical_key(fields: Mapping[str, object], codec: Codec) -> str:
    """Canonical JSON of `fields` (JSON values: what makes this loop, as its caller knows
    it) and of what every loop's bytes depend on besides: this format, the drawing, the
    encoder build, PyAV, OpenCV and numpy. None of these imports OpenCV or numpy."""
    clash = _ENVIRONMENT & fields.keys()
    if clash:
        raise ValueError(f"loop cache key fields {sorted(clash)} are the cache's own")
    key: dict[str, object] = {
        **fields,
        "format": FORMAT_VERSION,
        "encoder": encoder_version(codec),
        "pyav": av.__version__,
        # The scene is drawn with OpenCV (text rasterisation) and numpy.
        "opencv": _opencv_version(),
        "numpy": _numpy_version(),
    }
    if SCENE_VERSION != 1:
        # Absent at 1, so that the keys written before it existed stay valid.
        key["scene"] = SCENE_VERSION
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


def cache_key(settings: EncoderSettings, seconds: float) -> str:
    """Canonical JSON of everything that determines a camera loop's bytes."""
    fields = asdict(settings)
    if not fields["viewport"]:
        # Keys written before the field existed stay valid: no re-encode on upgrade.
        del fields["viewport"]
    return canonical_key({"settings": fields, "seconds": seconds}, settings.codec)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def entry_path(label: str, key: str, directory: Path | None = None) -> Path:
    """Where the loop with `key` is stored: `label` tells a person which loop a file holds,
    the key's digest tells the cache."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return (directory or cache_dir()) / f"{_safe(label)[:80]}-{digest}.loop"


def cache_path(settings: EncoderSettings, key: str, directory: Path | None = None) -> Path:
    label = f"{_safe(settings.name)[:40]}-{settings.width}x{settings.height}-{settings.codec}"
    return entry_path(label, key, directory)


def serialise(key: str, aus: list[EncodedAU]) -> bytes:
    key_bytes = key.encode()
    parts = [MAGIC, struct.pack("!I", len(key_bytes)), key_bytes, struct.pack("!I", len(aus))]
    for au in aus:
        parts.append(struct.pack("!BH", au.keyframe, len(au.nals)))
        for nal in au.nals:
            parts.append(struct.pack("!I", len(nal)))
            parts.append(nal)
    body = b"".join(parts)
    return body + hashlib.sha256(body).digest()


class CacheFileError(ValueError):
    pass


def deserialise(data: bytes, key: str) -> list[EncodedAU]:
    """The access units in `data`; CacheFileError if it is not a complete file for `key`."""
    if len(data) < len(MAGIC) + 8 + _DIGEST or not data.startswith(MAGIC):
        raise CacheFileError("not a loop cache file")
    body, digest = data[:-_DIGEST], data[-_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise CacheFileError("checksum mismatch (partial or corrupt file)")
    view = memoryview(body)
    offset = len(MAGIC)

    def take(size: int) -> memoryview:
        nonlocal offset
        if offset + size > len(view):
            raise CacheFileError("truncated")
        chunk = view[offset : offset + size]
        offset += size
        return chunk

    (key_len,) = struct.unpack("!I", take(4))
    if bytes(take(key_len)) != key.encode():
        raise CacheFileError("written for other settings")
    (count,) = struct.unpack("!I", take(4))
    aus = []
    for _ in range(count):
        keyframe, nal_count = struct.unpack("!BH", take(3))
        nals = []
        for _ in range(nal_count):
            (size,) = struct.unpack("!I", take(4))
            nals.append(bytes(take(size)))
        aus.append(EncodedAU(tuple(nals), bool(keyframe)))
    if offset != len(view):
        raise CacheFileError("trailing bytes")
    if not aus or not aus[0].keyframe:
        raise CacheFileError("loop does not start with a keyframe")
    return aus


def load(settings: EncoderSettings, seconds: float) -> list[EncodedAU] | None:
    """The cached loop, or None when there is no usable file."""
    key = cache_key(settings, seconds)
    return load_entry(key, cache_path(settings, key))


def load_entry(key: str, path: Path) -> list[EncodedAU] | None:
    """The access units stored at `path` for `key`, or None when there is no usable file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.info("loop cache %s unreadable (%s); encoding", path, exc)
        return None
    try:
        return deserialise(data, key)
    except (CacheFileError, struct.error) as exc:
        log.warning("ignoring loop cache file %s: %s; encoding again", path, exc)
        return None


def store(settings: EncoderSettings, seconds: float, aus: list[EncodedAU]) -> Path | None:
    """Write the loop atomically; None (logged once) if the cache is not writable."""
    key = cache_key(settings, seconds)
    return store_entry(key, cache_path(settings, key), aus)


def store_entry(key: str, path: Path, aus: list[EncodedAU]) -> Path | None:
    """Write `aus` for `key` atomically at `path`; None (logged once) if it is not writable."""
    global _warned_unwritable
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(serialise(key, aus))
        os.replace(tmp, path)
        tmp = None
        return path
    except OSError as exc:
        if not _warned_unwritable:
            _warned_unwritable = True
            log.warning("cannot write loop cache in %s (%s); every start will encode",
                        path.parent, exc)
        return None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def get_loop(
    settings: EncoderSettings, seconds: float, cancel: threading.Event | None = None
) -> EncodedLoop:
    """The loop for these settings: from this process, from disk, or encoded now.

    Blocking (run it in a thread).  Cameras of one process asking for the
    same loop wait for one encode; different loops encode in parallel.
    """
    mkey = (settings, seconds)
    with _locks_guard:
        lock = _locks.setdefault(mkey, threading.Lock())
    with lock:
        cached = _memory.get(mkey)
        if cached is not None:
            return cached
        aus = load(settings, seconds)
        if aus is not None:
            try:
                loop = loop_from_aus(settings, aus)
            except RuntimeError as exc:  # no parameter sets in the first unit
                log.warning("ignoring loop cache for %s: %s", settings.name, exc)
            else:
                log.debug("loop %s %dx%d from disk cache", settings.name, settings.width,
                          settings.height)
                _memory[mkey] = loop
                return loop
        started = time.monotonic()
        loop = encode_loop(settings, seconds, cancel)
        log.info("encoded %.1f s loop %s %dx%d in %.1f s", seconds, settings.name,
                 settings.width, settings.height, time.monotonic() - started)
        store(settings, seconds, loop.aus)
        _memory[mkey] = loop
        return loop


def cached_aus(label: str, fields: Mapping[str, object], codec: Codec,
               encode: Callable[[], list[EncodedAU]]) -> list[EncodedAU]:
    """What `encode()` makes, from disk if any process stored it under the same key, else
    encoded now and stored (a file that fails a check is encoded again and replaced).

    For loops that are not a camera's `EncoderSettings` (the GB/T 28181 device's PTZ
    views): `fields` names everything of the caller's that changes the bytes, the key
    adds what every loop depends on (`canonical_key`); `label` names the file for a
    person. Blocking (run it in a thread). Nothing is kept in memory: the caller keeps
    what it serves.
    """
    key = canonical_key(fields, codec)
    path = entry_path(label, key)
    aus = load_entry(key, path)
    if aus is not None:
        log.debug("loop %s from disk cache", label)
        return aus
    started = time.monotonic()
    aus = encode()
    log.debug("encoded loop %s in %.2f s", label, time.monotonic() - started)
    store_entry(key, path, aus)
    return aus
