"""A camera added to a vehicle's config file by a service (GB/T 28181 "adopt"), in place.

The file is the operator's: its comments, order and spelling stay as they are.
So the camera is *appended* as text (a `[[cameras]]` table at the end), never
by reading the TOML and writing it out again, and only after the whole new
text has been parsed and checked (:func:`~edge.config.loader.parse_config`),
so a file that loaded before loads after. It replaces the old file atomically:
a temporary file beside it with the same permission bits (and owner, where the
process may set it), flushed to disk, then renamed over it. A symlink is
followed: its target is what changes.

Every refusal is one :class:`AppendError` line naming the file and what was
wrong; nothing is written then.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path

from edge.config.cameras import Gb28181SourceConfig
from edge.config.errors import ConfigError
from edge.config.loader import parse_config
from edge.config.model import ID_PATTERN
from edge.config.vehicle import VehicleConfig

# What may be written as a value here: text, or an inline table of text (a source).
TomlValue = str | Mapping[str, str]


class AppendError(Exception):
    """Why the camera was not added; `str()` is one line for an operator."""


def gb_channel_cameras(config: VehicleConfig) -> dict[tuple[str, str], str]:
    """Which GB/T 28181 channels are cameras already: (device id, channel id) → camera id."""
    out: dict[tuple[str, str], str] = {}
    for cam in config.cameras:
        for source in cam.streams.values():
            if isinstance(source, Gb28181SourceConfig):
                out.setdefault((source.device_id, source.channel_id), cam.id)
    return out


def toml_string(text: str) -> str:
    """`text` as a TOML basic string: quotes, backslashes and control characters escaped
    (TOML forbids them raw, DEL included; JSON's escaping would let DEL through and write
    characters outside the BMP as surrogate pairs, which TOML refuses)."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\t" or (ord(ch) >= 0x20 and ord(ch) != 0x7F):
            out.append(ch)
        else:
            out.append(f"\\u{ord(ch):04X}")
    out.append('"')
    return "".join(out)


def toml_value(value: TomlValue) -> str:
    if isinstance(value, str):
        return toml_string(value)
    return "{ " + ", ".join(f"{key} = {toml_string(v)}" for key, v in value.items()) + " }"


def camera_table(fields: Mapping[str, TomlValue], comment: str = "") -> str:
    """`[[cameras]]` with one `key = value` line per field, after a `# comment` line."""
    # TOML allows no control character in a comment but tab.
    comment = "".join(c if c.isprintable() else " " for c in comment)
    lines = [f"# {' '.join(comment.split())}"] if comment else []
    lines.append("[[cameras]]")
    lines += [f"{key} = {toml_value(value)}" for key, value in fields.items()]
    return "\n".join(lines) + "\n"


def _parse(text: str, where: str) -> VehicleConfig:
    """The vehicle's config in `text`, or ConfigError / TOMLDecodeError."""
    return parse_config(tomllib.loads(text), where, text)


def _first_problem(e: Exception) -> str:
    if isinstance(e, ConfigError):
        return e.problems[0] if e.problems else "invalid"
    return f"not valid TOML: {e}"


def append_camera(path: Path, camera_id: str, fields: Mapping[str, TomlValue], *,
                  comment: str = "",
                  refuse: Callable[[VehicleConfig], str | None] = lambda _cfg: None) -> Path:
    """Append camera `camera_id` (`fields`: its keys but `id`, e.g. `name`, `main`) to the
    config file at `path`; the file written (the symlink's target, if `path` is one).

    `refuse(config)` is asked with the file's config as it is now and may return a
    reason not to add it (the channel is a camera already). Blocking: file I/O, fsync.
    """
    if not isinstance(camera_id, str) or not _is_id(camera_id):
        raise AppendError(f'camera id "{str(camera_id)[:40]}" is not an id (a-z, 0-9, - and _, '
                          "at most 32, not starting with - or _)")
    real = path.resolve()
    try:
        old = real.read_bytes()
    except OSError as e:
        raise AppendError(f"cannot read {path}: {e.strerror}") from None
    try:
        text = old.decode("utf-8")
        current = _parse(text, str(path))
    except (UnicodeDecodeError, ConfigError, tomllib.TOMLDecodeError, RecursionError) as e:
        why = "not UTF-8 text" if isinstance(e, UnicodeDecodeError) else _first_problem(e)
        raise AppendError(f"{path} does not load as it is ({why}); fix it first: nothing "
                          "written") from None
    if (reason := refuse(current)) is not None:
        raise AppendError(reason)
    taken = next((c for c in current.cameras if c.id == camera_id), None)
    if taken is not None:
        raise AppendError(f"camera id {camera_id} is taken in {path} (by {taken.name!r}); "
                          "choose another")

    newline = "\r\n" if "\r\n" in text else "\n"
    lead = "" if not text or text.endswith("\n") else newline
    table = camera_table({"id": camera_id, **fields}, comment)
    added = (newline if text.strip() else "") + table.replace("\n", newline)
    new_text = text + lead + added
    try:
        after = _parse(new_text, str(path))
    except (ConfigError, tomllib.TOMLDecodeError, RecursionError) as e:
        raise AppendError(f"with camera {camera_id} added, {path} would not load: "
                          f"{_first_problem(e)}; nothing written") from None
    # The table must have landed where it was meant to: the last camera, and only one more.
    if len(after.cameras) != len(current.cameras) + 1 or after.cameras[-1].id != camera_id:
        raise AppendError(f"with camera {camera_id} added, {path} would not have it as its "
                          "last camera (is `cameras` written another way?); nothing written")
    _replace(path, real, old, new_text.encode("utf-8"))
    return real


def _is_id(value: str) -> bool:
    return re.fullmatch(ID_PATTERN, value) is not None


def _replace(path: Path, real: Path, old: bytes, data: bytes) -> None:
    """`data` in place of `real`'s `old` contents, atomically, with its permission bits."""
    try:
        st = real.stat()
    except OSError as e:
        raise AppendError(f"cannot read {path}: {e.strerror}") from None
    mode = stat.S_IMODE(st.st_mode)
    # No write bit for anyone is a read-only file by intent, even to root, who could.
    if not mode & 0o222 or not os.access(real, os.W_OK):
        read_only = bool(os.statvfs(real).f_flag & os.ST_RDONLY)
        why = "a read-only file system" if read_only else f"mode {mode:04o}"
        raise AppendError(f"{path} is not writable ({why}); nothing written")
    try:
        fd, tmp_name = tempfile.mkstemp(dir=real.parent, prefix=f".{real.name}.",
                                        suffix=".tmp")
    except OSError as e:
        raise AppendError(f"cannot write beside {path} ({real.parent}: {e.strerror}); "
                          "nothing written") from None
    tmp = Path(tmp_name)
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fchmod(f.fileno(), mode)
                # Only root may give a file away: otherwise the new file is ours.
                with contextlib.suppress(PermissionError):
                    os.fchown(f.fileno(), st.st_uid, st.st_gid)
                os.fsync(f.fileno())
            # Someone saved the file since we read it: theirs wins, ours is not written.
            if real.read_bytes() != old:
                raise AppendError(f"{path} changed while the camera was being added; nothing "
                                  "written, try again")
            os.replace(tmp, real)
        except OSError as e:
            raise AppendError(f"cannot write {path}: {e.strerror}; nothing written") from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _sync_dir(real.parent)


def _sync_dir(directory: Path) -> None:
    """The rename on disk too (a power cut after the reply must not undo it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
