"""A process's resident memory, as the kernel counts it, for the demo's summary and benches.

Read from ``/proc/<pid>/status`` rather than ``psutil`` (one more dependency for
two lines) or ``ru_maxrss`` (only the peak, and only of our own reaped children).
Resident memory counts every shared library page a process maps, so the sum over
the demo's processes counts libpython, FFmpeg and OpenSSL once a process: for a
total, :func:`pss_mb` shares each page among the processes that map it.
"""

from __future__ import annotations

from pathlib import Path

_KB_PER_MB = 1024  # MB here are MiB, as top and ps count them

#: The environment every process of ours runs with (the systemd units spell it too; a test
#: holds them to this). glibc gives each thread that allocates an arena of its own, up to
#: eight a core, and a Python service's threads (stream readers, ZeroMQ's, executors) each
#: keep a few MB of theirs resident; two arenas cost the demo 9 MB less PSS (issue 17).
MALLOC_ENV: dict[str, str] = {"MALLOC_ARENA_MAX": "2"}


def _status_kb(pid: int, key: str, file: str = "status") -> int | None:
    try:
        text = Path(f"/proc/{pid}/{file}").read_text()
    except OSError:  # gone, or not ours to read
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == key:
            fields = value.split()
            return int(fields[0]) if fields and fields[0].isdigit() else None
    # A zombie or a kernel thread has no memory of its own: no such line.
    return None


def rss_mb(pid: int) -> float | None:
    """The resident memory of process `pid` now (VmRSS) in MB, to 0.1; None when the
    process is gone, a zombie, or not readable."""
    kb = _status_kb(pid, "VmRSS")
    return None if kb is None else round(kb / _KB_PER_MB, 1)


def peak_rss_mb(pid: int) -> float | None:
    """The most resident memory process `pid` has had (VmHWM) in MB, to 0.1; None as
    :func:`rss_mb`."""
    kb = _status_kb(pid, "VmHWM")
    return None if kb is None else round(kb / _KB_PER_MB, 1)


def pss_mb(pid: int) -> float | None:
    """Process `pid`'s proportional share of resident memory (Pss: a page mapped by n
    processes counts 1/n in each) in MB, to 0.1; the sum over processes is what they
    hold together. None as :func:`rss_mb`."""
    kb = _status_kb(pid, "Pss", "smaps_rollup")
    return None if kb is None else round(kb / _KB_PER_MB, 1)
