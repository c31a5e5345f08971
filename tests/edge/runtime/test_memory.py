"""`edge.runtime.memory`: a process's resident memory from /proc, or None when it has none."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from edge.runtime.memory import peak_rss_mb, pss_mb, rss_mb


def _kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} for {pid}")


def test_a_running_process_has_its_resident_memory_in_mb() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; print('up', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"up\n"  # an interpreter, not a fork mid-exec
        # The same figure the kernel gives, in MB: the unit and the field are what is
        # checked, not how much memory a process takes.
        kb = _kb(child.pid, "VmRSS")
        value = rss_mb(child.pid)
        assert value is not None and abs(value - kb / 1024) < 2.0, (value, kb)
        peak = peak_rss_mb(child.pid)
        assert peak is not None and peak >= value - 0.1, (peak, value)
        # Its share of what it maps with us (libpython at least) is less than all of it.
        share = pss_mb(child.pid)
        assert share is not None and 0 < share < value, (share, value)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)


def test_a_zombie_has_none() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    # Exited but not reaped: a zombie, whose status has no VmRSS line.
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    assert rss_mb(child.pid) is None
    assert peak_rss_mb(child.pid) is None
    assert pss_mb(child.pid) is None
    child.wait(10)
