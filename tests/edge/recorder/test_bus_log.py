"""The bus log against a real broker, mcap's own reader, and a writer killed with SIGKILL."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest
import zmq
from mcap.reader import make_reader

from edge.bus import envelope
from edge.bus.endpoints import Endpoints
from edge.bus.messages import (
    Alert,
    CameraStatus,
    CameraThumbnail,
    DroneTelemetry,
    EventMark,
    Message,
    ServiceHealth,
)
from edge.recorder import bus_log
from edge.recorder.bus_log import (
    MALFORMED,
    SCHEMA_ENCODING,
    UNFILED,
    BusLogError,
    BusLogWriter,
)
from tests.support import REPO, eventually_sync

pytestmark = pytest.mark.timeout(60)

T0 = 1_700_000_000_000_000_000
PROBE = b"test/probe"


class Recorder:
    """What the recorder service will do: a thread drains a SUB socket of the bus into a writer."""

    def __init__(self, endpoints: Endpoints, ctx: zmq.Context[zmq.Socket[bytes]],
                 writer: BusLogWriter) -> None:
        self.writer = writer
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.RCVHWM, 0)
        self.sub.connect(endpoints.sub)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.seen = 0
        self.real = 0  # not probes
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-recorder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            poller = zmq.Poller()
            poller.register(self.sub, zmq.POLLIN)
            while not self._stop.is_set():
                if poller.poll(100):
                    while True:
                        try:
                            frames = self.sub.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self.writer.write(frames)
                        self.seen += 1
                        self.real += frames[0] != PROBE
                self.writer.poll()
        except BaseException as e:  # reported by stop()
            self.error = e

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sub.close()
        assert not self._thread.is_alive(), "recorder thread did not stop"
        assert self.error is None, f"recorder thread failed: {self.error!r}"


def frames_of(topic: str, message: Message, seq: int, *blobs: bytes) -> list[bytes]:
    return envelope.encode(topic, message, "test-src", seq, blobs, epoch=77)


def sample(n: int, t0: int = T0, step: int = 1000) -> list[tuple[int, list[bytes]]]:
    """`n` (log time, frames) over three topics, log times `t0 + i*step`."""
    out = []
    for i in range(n):
        topic, msg = [("drone/alpha-1/telemetry", DroneTelemetry(drone_id="alpha-1", lat=i / 7)),
                      ("cam/north/status", CameraStatus(camera_id="north", frames=i)),
                      ("alert/test", Alert(text=f"alert {i}"))][i % 3]
        out.append((t0 + i * step, frames_of(topic, msg, i + 1)))
    return out


def write_file(path: Path, items: list[tuple[int, list[bytes]]], **options: object) -> None:
    w = BusLogWriter(**options)  # type: ignore[arg-type]
    w.open(path)
    for t, frames in items:
        w.write(frames, t)
    w.close()


def mcap_messages(path: Path) -> list[tuple[str, str, int, int, list[bytes]]]:
    """(topic, schema name, log time, publish time, frames) by mcap's own indexed reader."""
    with open(path, "rb") as f:
        reader = make_reader(f)
        assert reader.get_summary() is not None, "no summary: the file is not whole"
        return [(c.topic, s.name if s else "", m.log_time, m.publish_time,
                 msgpack.unpackb(m.data)) for s, c, m in reader.iter_messages()]


# ----------------------------------------------------------------------------- a real bus


def test_every_bus_message_is_in_the_mcap_byte_for_byte(endpoints: Endpoints, broker: object,
                                                        tmp_path: Path) -> None:
    path = tmp_path / "bus.mcap"
    writer = BusLogWriter(chunk_bytes=16 * 1024)
    writer.open(path)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.connect(endpoints.pub)
    recorder = Recorder(endpoints, ctx, writer)
    try:
        # The slow joiner: probe until the recorder hears the publisher through the broker.
        def heard() -> bool:
            pub.send_multipart(frames_of(PROBE.decode(), Alert(text="probe"), 1))
            return recorder.seen > 0
        eventually_sync(heard, what="the recorder to hear the publisher", every=0.1)

        def took(n: int) -> Callable[[], bool]:
            return lambda: recorder.real >= n

        jpeg = b"\xff\xd8" + secrets.token_bytes(3000) + b"\xff\xd9"
        seqs: dict[str, int] = defaultdict(int)
        expected: dict[str, list[list[bytes]]] = defaultdict(list)
        malformed = [[b"alert/bad", b"\xc1 not msgpack", b"x"], [b"cam/north/status", b"\x93"]]
        sent = 0
        t_start = time.time_ns()
        for round_ in range(150):
            epoch_msgs: list[tuple[str, Message, tuple[bytes, ...]]] = [
                ("cam/north/status", CameraStatus(camera_id="north", frames=round_), ()),
                ("cam/north/thumbnail", CameraThumbnail(camera_id="north", width=64), (jpeg,)),
                ("drone/alpha-1/telemetry", DroneTelemetry(drone_id="alpha-1", lat=round_ / 3), ()),
                ("alert/test", Alert(text=f"alert {round_}"), ()),
                ("alert/test", EventMark(note=f"same topic, other type {round_}"), ()),
                ("event/mark", EventMark(note=f"mark {round_}"), ()),
                ("svc/recorder-test/health", ServiceHealth(service="recorder-test"), ()),
            ]
            for topic, msg, blobs in epoch_msgs:
                seqs[topic] += 1
                frames = frames_of(topic, msg, seqs[topic], *blobs)
                pub.send_multipart(frames)
                expected[topic].append(frames)
                sent += 1
            if round_ % 50 == 0:
                bad = malformed[round_ // 50 % 2]
                pub.send_multipart(bad)
                expected[bad[0].decode()].append(bad)
                sent += 1
            if round_ % 10 == 9:  # paced, so no queue on the way reaches its high-water mark
                eventually_sync(took(sent), what=f"the recorder to take {sent} messages")
        eventually_sync(took(sent), what="the last messages")
        t_end = time.time_ns()
    finally:
        recorder.stop()
        pub.close()
        ctx.term()
    done = writer.close()
    assert done is not None and done.messages == recorder.seen
    assert recorder.real == sent
    assert writer.stats.malformed == 3

    with open(path, "rb") as f:
        summary = make_reader(f).get_summary()
    assert summary is not None and summary.statistics is not None
    assert summary.statistics.message_count == recorder.seen
    assert len(summary.chunk_indexes) > 1
    channels: dict[str, set[str]] = defaultdict(set)
    for channel in summary.channels.values():
        assert channel.message_encoding == "msgpack"
        schema = summary.schemas[channel.schema_id]
        assert schema.name not in channels[channel.topic], "two channels for one (topic, type)"
        channels[channel.topic].add(schema.name)
    assert channels["alert/test"] == {"alert", "event.mark"}
    assert channels["cam/north/status"] == {"cam.status", MALFORMED}
    assert channels["alert/bad"] == {MALFORMED}
    for topic, kind in [("cam/north/thumbnail", "cam.thumbnail"), ("event/mark", "event.mark"),
                        ("drone/alpha-1/telemetry", "drone.telemetry"),
                        ("svc/recorder-test/health", "svc.health")]:
        assert channels[topic] == {kind}
    for schema in summary.schemas.values():
        assert schema.encoding == SCHEMA_ENCODING
        described = json.loads(schema.data)
        assert described["type"] == schema.name
    status_schema = next(s for s in summary.schemas.values() if s.name == "cam.status")
    assert "camera_id" in json.loads(status_schema.data)["fields"]

    got: dict[str, list[list[bytes]]] = defaultdict(list)
    for topic, kind, log_time, publish_time, frames in mcap_messages(path):
        if topic == PROBE.decode():
            continue
        assert t_start <= log_time <= t_end
        assert topic == frames[0].decode()
        if kind == MALFORMED:
            assert publish_time == log_time
        else:
            header = msgpack.unpackb(frames[1])
            assert kind == header[0], "the schema names the message's type"
            assert publish_time == header[4], "publish time is the envelope's stamp"
        got[topic].append(frames)
    assert got == expected, "every message, in order per topic, byte for byte"


# ----------------------------------------------------------------------------- reading


def test_read_filters_by_topic_and_log_time_whole_or_torn(tmp_path: Path) -> None:
    items = sample(300)
    whole = tmp_path / "whole.mcap"
    write_file(whole, items, chunk_bytes=2048)
    torn = tmp_path / "torn.mcap"
    torn.write_bytes(whole.read_bytes()[:-40])  # footer gone: read walks the chunks
    assert bus_log.is_whole(whole) and not bus_log.is_whole(torn)

    start, end = T0 + 50 * 1000, T0 + 250 * 1000
    want = [(t, f) for t, f in items if f[0] == b"cam/north/status" and start <= t < end]
    assert len(want) == 66  # i = 52, 55, ..., 247
    for path in (whole, torn):
        everything = list(bus_log.read(path))
        assert [(m.log_time_ns, m.frames) for m in everything] == items
        assert {m.type for m in everything} == {"drone.telemetry", "cam.status", "alert"}
        some = list(bus_log.read(path, topics=["cam/north/status"], start_ns=start, end_ns=end))
        assert [(m.log_time_ns, m.frames) for m in some] == want
        assert all(m.topic == "cam/north/status" and m.type == "cam.status" for m in some)
        assert all(m.publish_time_ns == msgpack.unpackb(m.frames[1])[4] for m in some)


def test_chunks_reach_the_disk_by_size_or_age(tmp_path: Path) -> None:
    path = tmp_path / "open.mcap"
    w = BusLogWriter(chunk_bytes=1 << 20, chunk_seconds=1.0)
    w.open(path)
    items = sample(3)
    for t, frames in items:
        w.write(frames, t)
    assert not w.poll(T0 + 500_000_000), "a chunk younger than chunk_seconds stays open"
    assert list(bus_log.read(path)) == []
    assert w.poll(T0 + 1_000_000_000)
    assert [m.frames for m in bus_log.read(path)] == [f for _, f in items]
    # A message past the age closes its chunk at once, with itself in it.
    w.write(items[0][1], T0 + 2_000_000_000)
    w.write(items[1][1], T0 + 3_000_000_001)
    assert len(list(bus_log.read(path))) == 5
    # By size: a chunk of 300 bytes closes at its second message (each is over 150 bytes).
    w.close()
    small = tmp_path / "small.mcap"
    w = BusLogWriter(chunk_bytes=300, chunk_seconds=3600)
    w.open(small)
    for i, (t, frames) in enumerate(sample(10)):
        w.write(frames, t)
        assert len(list(bus_log.read(small))) >= i, "at most one message waits in the chunk"
    assert w.stats.chunks >= 5
    w.close()


# ----------------------------------------------------------------------------- crashes

CHILD = """
import hashlib, sys
import msgpack
from edge.bus import envelope
from edge.bus.messages import Alert, DroneTelemetry
from edge.recorder.bus_log import BusLogWriter

w = BusLogWriter(chunk_bytes=int(sys.argv[2]), chunk_seconds=3600)
w.open(sys.argv[1])
i = 0
while True:
    i += 1
    if i % 3:
        frames = envelope.encode("drone/alpha-1/telemetry", DroneTelemetry(lat=i / 7), "d", i)
    else:
        blobs = (b"blob",) * (i % 2)
        frames = envelope.encode("alert/x", Alert(text="n" * (i % 50)), "x", i, blobs)
    w.write(frames)
    print(hashlib.sha256(msgpack.packb(frames)).hexdigest(), flush=True)
"""


def digest(frames: list[bytes]) -> str:
    return hashlib.sha256(msgpack.packb(frames)).hexdigest()


def test_kill_9_mid_write_loses_at_most_the_open_chunk(tmp_path: Path) -> None:
    path = tmp_path / "killed.mcap"
    chunk_bytes = 4096
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(chunk_bytes)],
                             cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    printed: list[str] = []
    try:
        while len(printed) < 3000:  # a few hundred chunks
            line = child.stdout.readline()
            assert line, f"the writer exited early ({child.wait(5)})"
            printed.append(line.strip())
    finally:
        child.send_signal(signal.SIGKILL)
        # Not communicate(): it reads the pipe itself, past what readline() buffered.
        rest = child.stdout.read()
        child.wait(10)
    printed += [line for line in rest.split("\n") if len(line) == 64]
    assert child.returncode == -signal.SIGKILL

    assert not bus_log.is_whole(path)
    with open(path, "rb") as f, pytest.raises(Exception):  # noqa: B017 - any refusal will do
        list(make_reader(f).iter_messages())

    result = bus_log.recover(path)
    assert result.rewritten and result.bad_chunks == 0
    recovered = mcap_messages(path)
    assert len(recovered) == result.messages
    # Everything written before the open chunk is there; the chunk closed by the
    # message the kill interrupted before it printed may be there too.
    smallest = min(len(msgpack.packb(m[4])) for m in recovered)
    per_chunk = chunk_bytes // (smallest + 31) + 1
    assert len(printed) - per_chunk <= result.messages <= len(printed) + 1
    assert [digest(m[4]) for m in recovered][:len(printed)] == printed[:result.messages]
    with open(path, "rb") as f:
        summary = make_reader(f).get_summary()
    assert summary is not None and summary.statistics is not None
    assert summary.statistics.message_count == result.messages

    before = path.read_bytes()
    again = bus_log.recover(path)
    assert not again.rewritten and again.messages == result.messages
    assert path.read_bytes() == before


@pytest.mark.parametrize("where", ["mid-chunk", "mid-message-index"])
def test_a_tail_torn_inside_a_chunk_or_its_index(tmp_path: Path, where: str) -> None:
    items = sample(400)
    path = tmp_path / "bus.mcap"
    write_file(path, items, chunk_bytes=2048)
    with open(path, "rb") as f:
        summary = make_reader(f).get_summary()
    assert summary is not None
    chunk = sorted(summary.chunk_indexes, key=lambda c: c.chunk_start_offset)[5]
    if where == "mid-chunk":
        cut = chunk.chunk_start_offset + chunk.chunk_length // 2
        last_kept = chunk.message_start_time - 1
    else:
        cut = chunk.chunk_start_offset + chunk.chunk_length + chunk.message_index_length // 2
        last_kept = chunk.message_end_time
    with open(path, "r+b") as f:
        f.truncate(cut)
    kept = [(t, frames) for t, frames in items if t <= last_kept]
    assert 0 < len(kept) < len(items)

    assert [(m.log_time_ns, m.frames) for m in bus_log.read(path)] == kept
    result = bus_log.recover(path)
    assert result.rewritten and result.messages == len(kept) and result.dropped_bytes > 0
    assert bus_log.is_whole(path)
    assert [(m[2], m[4]) for m in mcap_messages(path)] == kept
    assert not path.with_name(path.name + ".recovering").exists()


def test_a_file_that_is_only_its_header_or_less(tmp_path: Path) -> None:
    path = tmp_path / "header.mcap"
    w = BusLogWriter()
    w.open(path)
    w.abandon()  # as a crash right after opening leaves it
    assert path.stat().st_size > 8
    result = bus_log.recover(path)
    assert result.rewritten and result.messages == 0
    assert mcap_messages(path) == []

    for name, content in [("empty.mcap", b""), ("magic-part.mcap", b"\x89MC")]:
        p = tmp_path / name
        p.write_bytes(content)
        assert list(bus_log.read(p)) == []
        assert bus_log.recover(p).messages == 0
        assert bus_log.is_whole(p) and mcap_messages(p) == []


def test_recover_leaves_a_whole_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "whole.mcap"
    write_file(path, sample(50))
    before, stat = path.read_bytes(), path.stat()
    result = bus_log.recover(path)
    assert result == bus_log.Recovered(path, 50, rewritten=False)
    assert path.read_bytes() == before and path.stat().st_mtime_ns == stat.st_mtime_ns


# ----------------------------------------------------------------------------- bad input


def test_bad_frames_are_kept_as_evidence(tmp_path: Path) -> None:
    good = frames_of("cam/a/status", CameraStatus(camera_id="a"), 1)
    bad = [
        [b"solo"],
        [b"cam/a/status", good[1]],  # too few frames
        [b"\xff\xfe/topic", good[1], good[2]],  # not UTF-8: kept, its channel escaped
        [b"cam/a/status", msgpack.packb(["cam.status", 1, "s", 1, -5, 0]), good[2]],  # ts < 0
        [b"cam/a/status", msgpack.packb({0: "cam.status", 4: 1}), good[2]],  # not an array
        [b"cam/a/status", msgpack.packb([7, 1, "s", 1, 5, 0]), good[2]],  # type not a string
        [],
    ]
    path = tmp_path / "bad.mcap"
    w = BusLogWriter()
    w.open(path)
    w.write(good, T0)
    for i, frames in enumerate(bad):
        w.write(frames, T0 + i + 1)
    w.close()
    assert w.stats.malformed == len(bad) - 1  # the non-UTF-8 topic's header is fine

    got = mcap_messages(path)
    assert [m[4] for m in got] == [good, *bad]
    kinds = [m[1] for m in got]
    assert kinds == ["cam.status", MALFORMED, MALFORMED, "cam.status", *[MALFORMED] * 4]
    assert got[3][0] == "\\xff\\xfe/topic"
    assert all(m[3] == m[2] for m in got if m[1] == MALFORMED)


def test_past_max_channels_new_topics_share_the_unfiled_channel(tmp_path: Path) -> None:
    path = tmp_path / "many.mcap"
    items = [(T0 + i, frames_of(f"alert/src-{i}", Alert(text=str(i)), 1)) for i in range(5)]
    write_file(path, items, max_channels=2)
    got = mcap_messages(path)
    assert [m[4] for m in got] == [f for _, f in items]
    assert [m[0] for m in got] == ["alert/src-0", "alert/src-1", UNFILED, UNFILED, UNFILED]
    assert [m[1] for m in got] == ["alert", "alert", UNFILED, UNFILED, UNFILED]


def test_refusals_are_one_line_and_touch_nothing(tmp_path: Path) -> None:
    text = tmp_path / "notes.mcap"
    text.write_bytes(b"not an mcap file at all\n")
    for call in (lambda: list(bus_log.read(text)), lambda: bus_log.recover(text)):
        with pytest.raises(BusLogError, match="notes.mcap: not an MCAP file") as err:
            call()
        assert "\n" not in str(err.value)
    assert text.read_bytes() == b"not an mcap file at all\n"

    w = BusLogWriter()
    with pytest.raises(BusLogError, match="already exists"):
        w.open(text)
    with pytest.raises(BusLogError, match="no bus log is open"):
        w.write(frames_of("alert/x", Alert(), 1))
    with pytest.raises(BusLogError, match="cannot open"):
        list(bus_log.read(tmp_path / "missing.mcap"))
    path = tmp_path / "one.mcap"
    w.open(path)
    with pytest.raises(BusLogError, match="still open"):
        w.open(tmp_path / "two.mcap")
    done = w.rotate(tmp_path / "two.mcap")
    assert done is not None and done.path == path and done.messages == 0
    assert w.close() is not None and w.close() is None
    assert os.path.getsize(path) == done.size
