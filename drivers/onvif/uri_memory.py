"""The stream URI each ONVIF device last gave, remembered on disk across starts.

Asking a device costs seconds before any RTSP: the ONVIF library's import and
WSDL parsing (0.2 s of CPU), then four SOAP calls that cheap domes answer in
1-3 s each. The URI a device hands out almost never changes, so a camera can
start on the one it had last time while it asks again (:class:`OnvifSource`).

One small JSON file per (device address, profile), named by a digest of the
two and holding both, compared on load, so a file copied or clashing is never
read as another device's. Files are written to a temporary name in the same
directory and renamed into place (readers see a whole file or none), mode 0600
since a URI can carry a token. The directory is the first of
``$CACHE_DIRECTORY/onvif`` (systemd's ``CacheDirectory=``),
``$XDG_CACHE_HOME/edge/onvif`` and ``~/.cache/edge/onvif``.

The memory is an optimisation only: a missing, unreadable or malformed file is
nothing remembered, and an unwritable directory is logged once and ignored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
SCHEMES = ("rtsp://", "rtsps://")
# A memory file is a hundred bytes or so: anything far bigger is not one of ours.
MAX_FILE_BYTES = 16 * 1024

# Process-wide, so that a camera's streams (a UriMemory each) say it once between them.
_warned_unwritable: set[Path] = set()
_warned_malformed: set[Path] = set()


def default_directory() -> Path | None:
    """Where the memory lives by default; None when not even a home directory is known."""
    # systemd may list several directories, colon-separated, if a unit names several.
    systemd = os.environ.get("CACHE_DIRECTORY", "").split(":")[0]
    if systemd:
        return Path(systemd) / "onvif"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg and Path(xdg).is_absolute():  # the XDG spec: a relative path is to be ignored
        return Path(xdg) / "edge" / "onvif"
    try:
        return Path.home() / ".cache" / "edge" / "onvif"
    except RuntimeError:  # no $HOME and no passwd entry: a bare container
        return None


class UriMemory:
    """The last stream URI per (device address, profile), in `directory` (default: see above)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory if directory is not None else default_directory()
        if self.directory is None:
            log.info("no cache directory (no $HOME): ONVIF stream URIs are not remembered")

    def path(self, address: str, profile: str) -> Path | None:
        if self.directory is None:
            return None
        digest = hashlib.sha256(f"{address}\0{profile}".encode()).hexdigest()[:24]
        return self.directory / f"{digest}.json"

    def recall(self, address: str, profile: str) -> str | None:
        """The URI last stored for this device and profile, or None."""
        path = self.path(address, profile)
        if path is None:
            return None
        try:
            with path.open("rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as e:
            log.debug("ONVIF URI memory %s unreadable (%s): asking the device", path, e)
            return None
        try:
            entry = json.loads(data) if len(data) <= MAX_FILE_BYTES else None
        except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
            entry = None
        if not isinstance(entry, dict) or entry.get("version") != FORMAT_VERSION \
                or not all(isinstance(entry.get(k), str) for k in ("address", "profile", "uri")):
            self._malformed(path, "not a stream URI memory file")
            return None
        if (entry["address"], entry["profile"]) != (address, profile):
            log.debug("ONVIF URI memory %s is for %s profile %s, not %s profile %s: ignored",
                      path, entry["address"], entry["profile"], address, profile)
            return None
        uri: str = entry["uri"]
        if not uri.startswith(SCHEMES):
            self._malformed(path, "the remembered URI is not rtsp:// or rtsps://")
            return None
        return uri

    def remember(self, address: str, profile: str, uri: str) -> None:
        """Store `uri` for this device and profile; an unwritable directory is logged once."""
        path = self.path(address, profile)
        if path is None:
            return
        entry = {"version": FORMAT_VERSION, "address": address, "profile": profile, "uri": uri}
        tmp: str | None = None
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # mkstemp makes the file 0600. No fsync: a file torn by a power cut reads as
            # malformed, which costs one start the old way, while an fsync on the vehicle's
            # flash could hold the camera's event loop up for a long while.
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(entry, f)
            os.replace(tmp, path)
            tmp = None
        except OSError as e:
            if path.parent not in _warned_unwritable:
                _warned_unwritable.add(path.parent)
                log.warning("cannot remember ONVIF stream URIs in %s (%s): cameras will ask "
                            "their devices before streaming", path.parent, e.strerror or e)
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass

    @staticmethod
    def _malformed(path: Path, why: str) -> None:
        if path not in _warned_malformed:
            _warned_malformed.add(path)
            log.info("ignoring ONVIF URI memory %s: %s", path, why)
