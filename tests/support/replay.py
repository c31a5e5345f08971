"""The replay's test bench: where `edge replay` says it is, and a copy of a recorded drill
(:mod:`tests.support.drill`) that a test may damage."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edge.recorder.layout import CATALOG_FILE
from tests.support.drill import Drill


def short_runtime_dir() -> Path:
    # ipc socket paths must fit in 107 bytes.
    return Path(tempfile.mkdtemp(prefix="edge-r-"))


@dataclass(frozen=True)
class ReplayAnnounced:
    """What `edge replay` printed about itself: its bus dir, and its uplink's URL and token
    file when it runs one."""

    runtime_dir: Path
    uplink_url: str | None
    token_file: Path | None


async def read_announcement(stderr: asyncio.StreamReader, *, uplink: bool,
                            within: float) -> ReplayAnnounced:
    """Read `edge replay`'s stderr until it has said where its bus (and uplink) are."""
    import re
    import time

    deadline = time.monotonic() + within
    runtime_dir: Path | None = None
    seen: list[str] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("edge replay did not announce itself:\n" + "".join(seen))
        line = (await asyncio.wait_for(stderr.readline(), left)).decode(errors="replace")
        if not line:
            raise AssertionError("edge replay ended before announcing itself:\n"
                                 + "".join(seen))
        seen.append(line)
        if m := re.search(r"replay bus and media plane in (\S+)", line):
            runtime_dir = Path(m.group(1))
            if not uplink:
                return ReplayAnnounced(runtime_dir, None, None)
        if m := re.search(r"uplink \(WHEP and the viewer page\): (\S+?)/? token in (\S+)",
                          line):
            assert runtime_dir is not None, seen
            return ReplayAnnounced(runtime_dir, m.group(1), Path(m.group(2)))


def copy_recordings(recorded: Drill, dest: Path) -> tuple[Path, Path]:
    """The recordings copied to `dest/recordings` (the catalog's paths pointed at the copy)
    and a config that names it: (config path, recordings dir)."""
    root = dest / "recordings"
    shutil.copytree(recorded.root, root, ignore=shutil.ignore_patterns("recorder.lock"))
    db = sqlite3.connect(root / CATALOG_FILE)
    try:
        for table in ("segments", "bus_logs"):
            db.execute(f"UPDATE {table} SET path = replace(path, ?, ?)",
                       (str(recorded.root), str(root)))
        db.commit()
    finally:
        db.close()
    config = dest / "vehicle.toml"
    config.write_text(f'vehicle = "test"\n[recorder]\nenabled = true\npath = "{root}"\n')
    return config, root
