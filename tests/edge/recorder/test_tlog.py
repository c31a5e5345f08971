"""The tlog writer, read back by pymavlink's own tlog reader."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from drivers.mavlink.dialect import MAVLink, mavlink, mavutil
from drivers.mavlink.signing import Signing
from edge.recorder.tlog import TlogError, TlogWriter, frame_length, valid_length
from tests.support import REPO, eventually_sync

pytestmark = pytest.mark.timeout(60)

KEY = bytes(range(32))
T0 = 1_700_000_000_123_456_789  # the sub-µs part is cut, never rounded up


def read_tlog(path: Path) -> list[Any]:
    """Every message pymavlink's tlog reader finds in `path` (BAD_DATA included)."""
    conn = mavutil().mavlink_connection(str(path))
    out = []
    try:
        while (msg := conn.recv_msg()) is not None:
            out.append(msg)
    finally:
        conn.close()
    return out


def vehicle_frames() -> list[bytes]:
    """MAVLink 2 frames from pymavlink's encoder: plain ones and signed ones."""
    plain = MAVLink(None, srcSystem=1, srcComponent=1)
    signed = MAVLink(None, srcSystem=1, srcComponent=1)
    Signing(KEY).attach(signed)
    out = []
    for i in range(5):
        enc = signed if i % 2 else plain
        out.append(bytes(enc.heartbeat_encode(mavlink.MAV_TYPE_QUADROTOR,
                                              mavlink.MAV_AUTOPILOT_ARDUPILOTMEGA, 81, i,
                                              mavlink.MAV_STATE_ACTIVE).pack(enc)))
        out.append(bytes(enc.global_position_int_encode(
            1000 * i, 473977418 + i, 85455938 - i, 500000, 20000 + i, 10, -5, 3, 9000).pack(enc)))
    out.append(bytes(signed.command_long_encode(1, 1, mavlink.MAV_CMD_NAV_RETURN_TO_LAUNCH, 0,
                                                0, 0, 0, 0, 0, 0, 0).pack(signed)))
    return out


def test_pymavlink_reads_back_the_frames_and_their_times(tmp_path: Path) -> None:
    frames = vehicle_frames()
    times = [T0 + i * 20_000_337 for i in range(len(frames))]
    path = tmp_path / "alpha.tlog"
    with TlogWriter(path) as tlog:
        for frame, t in zip(frames, times, strict=True):
            tlog.write(frame, t)

    got = read_tlog(path)
    kinds = ["HEARTBEAT", "GLOBAL_POSITION_INT"] * 5 + ["COMMAND_LONG"]
    assert [m.get_type() for m in got] == kinds
    assert [bytes(m.get_msgbuf()) for m in got] == frames, "frames kept as received"
    assert [round(m._timestamp * 1e6) for m in got] == [t // 1000 for t in times]
    assert [m.custom_mode for m in got[::2][:5]] == [0, 1, 2, 3, 4]
    assert [m.lat for m in got[1::2]] == [473977418 + i for i in range(5)]
    # The signed frames still carry a signature the link's key verifies.
    checker = Signing(KEY)
    signed = [m for m in got if len(m.get_msgbuf()) == frame_length(m.get_msgbuf())
              and m.get_msgbuf()[2] & 1]
    assert len(signed) == 5
    assert all(checker.check(bytes(m.get_msgbuf()), 1, 1) for m in signed)


def test_time_defaults_to_now(tmp_path: Path) -> None:
    path = tmp_path / "now.tlog"
    before = time.time_ns() // 1000
    with TlogWriter(path) as tlog:
        tlog.write(vehicle_frames()[0])
    after = time.time_ns() // 1000
    (msg,) = read_tlog(path)
    assert before <= round(msg._timestamp * 1e6) <= after


def test_records_reach_the_disk_when_due_or_polled(tmp_path: Path) -> None:
    frames = vehicle_frames()
    path = tmp_path / "due.tlog"
    tlog = TlogWriter(path, flush_bytes=1 << 20, flush_seconds=0.2)
    tlog.write(frames[0], T0)
    assert path.stat().st_size == 0, "one record waits in the buffer"
    # Generous: only a stalled machine takes long; the flush comes 0.2 s after the write.
    eventually_sync(lambda: tlog.poll() or path.stat().st_size > 0, what="a flush")
    assert path.stat().st_size == 8 + len(frames[0])
    # By size: the buffer is handed over once it holds flush_bytes.
    small = TlogWriter(tmp_path / "small.tlog", flush_bytes=100, flush_seconds=3600)
    for i, frame in enumerate(frames):
        small.write(frame, T0 + i)
        assert small.stats.bytes >= sum(8 + len(f) for f in frames[:i + 1]) - 100
    tlog.close()
    small.close()
    assert len(read_tlog(tmp_path / "small.tlog")) == len(frames)


CHILD = """
import sys
from drivers.mavlink.dialect import MAVLink, mavlink
from edge.recorder.tlog import TlogWriter

enc = MAVLink(None, srcSystem=1, srcComponent=1)
tlog = TlogWriter(sys.argv[1], flush_bytes=int(sys.argv[2]), flush_seconds=3600)
i = 0
while True:
    i += 1
    frame = bytes(enc.global_position_int_encode(i, i, -i, 0, 0, 0, 0, 0, 0).pack(enc))
    tlog.write(frame, 1_700_000_000_000_000_000 + i * 1000)
    print(i, flush=True)
"""


def test_kill_9_loses_at_most_the_buffer_and_never_half_a_record(tmp_path: Path) -> None:
    path = tmp_path / "killed.tlog"
    flush_bytes = 1024
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(flush_bytes)],
                             cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    printed = 0
    try:
        while printed < 2000:
            line = child.stdout.readline()
            assert line, f"the writer exited early ({child.wait(5)})"
            printed = int(line)
    finally:
        child.send_signal(signal.SIGKILL)
        rest = child.stdout.read()  # not communicate(): it would skip what readline buffered
        child.wait(10)
    printed = max([printed, *(int(x) for x in rest.split())])
    assert child.returncode == -signal.SIGKILL

    assert valid_length(path) == path.stat().st_size, "only whole records on disk"
    got = read_tlog(path)
    assert all(m.get_type() == "GLOBAL_POSITION_INT" for m in got)
    assert [m.time_boot_ms for m in got] == list(range(1, len(got) + 1))
    assert [round(m._timestamp * 1e6) for m in got] == [
        1_700_000_000_000_000 + i for i in range(1, len(got) + 1)]
    record = 8 + len(got[0].get_msgbuf())
    # What was still in the buffer (under flush_bytes) is all that is lost.
    assert printed - flush_bytes // record - 1 <= len(got) <= printed + 1


def test_append_cuts_a_torn_tail_first(tmp_path: Path) -> None:
    frames = vehicle_frames()
    path = tmp_path / "torn.tlog"
    with TlogWriter(path) as tlog:
        for i, frame in enumerate(frames[:6]):
            tlog.write(frame, T0 + i * 1000)
    whole = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(whole - 5)  # a power cut inside the last frame
    assert valid_length(path) == whole - 8 - len(frames[5])
    with TlogWriter(path, append=True) as tlog:
        for i, frame in enumerate(frames[6:], start=6):
            tlog.write(frame, T0 + i * 1000)
    got = read_tlog(path)
    assert [bytes(m.get_msgbuf()) for m in got] == frames[:5] + frames[6:]
    assert "BAD_DATA" not in {m.get_type() for m in got}


def test_refusals(tmp_path: Path) -> None:
    path = tmp_path / "x.tlog"
    tlog = TlogWriter(path)
    frame = vehicle_frames()[0]
    for bad in (b"", b"hello world", frame[:-1], frame + b"\x00"):
        with pytest.raises(ValueError, match="not one whole MAVLink frame") as err:
            tlog.write(bad, T0)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="outside the tlog's range"):
        tlog.write(frame, -5000)
    tlog.close()
    tlog.close()
    with pytest.raises(TlogError, match="closed"):
        tlog.write(frame, T0)
    with pytest.raises(TlogError, match="already exists"):
        TlogWriter(path)
    with pytest.raises(TlogError, match="cannot open"):
        TlogWriter(tmp_path / "no-such-dir" / "x.tlog")
    assert path.stat().st_size == 0 and os.path.exists(path)
