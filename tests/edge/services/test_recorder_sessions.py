"""The recorder's named sessions and marks, asked of it over the real bus: `RecordCommand`
requests answered with a `Reply`, the session on `recorder/status`, and every `event/mark`
in the catalog, in the session open when it came. A real broker and the real recorder
under the real runner; the catalog read back through a connection of our own."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import (
    EventMark,
    Message,
    Ping,
    RecordCommand,
    RecorderSessions,
    RecorderStatus,
    Reply,
)
from edge.recorder.layout import CATALOG_FILE
from edge.services.recorder import RecorderService
from tests import support
from tests.support import Inbox, eventually
from tests.support.recorder import (
    catalog_marks,
    catalog_sessions,
    recorder_answers,
    recorder_config,
)


async def ask(bus: BusClient, command: Message) -> Reply:
    reply = (await bus.request(topics.RECORDER_SERVICE, command)).message
    assert isinstance(reply, Reply)
    return reply


async def marks_reach_the_recorder(bus: BusClient, catalog: Path) -> None:
    """Publish probe marks until one is in the catalog: the recorder's subscription has
    reached the broker (marks are events, never replayed to a late subscriber)."""
    n = 0

    def probe() -> bool:
        nonlocal n
        n += 1
        bus.publish(topics.EVENT_MARK, EventMark(note=f"probe {n}", author="test"))
        return any(m.note.startswith("probe") for m in catalog_marks(catalog))

    await eventually(probe, within=15, every=0.2, what="a probe mark in the catalog")


@pytest.mark.timeout(90)
async def test_start_mark_stop_release(bus: BusClient, endpoints: Endpoints,
                                       tmp_path: Path) -> None:
    config, config_path = recorder_config(tmp_path, {})
    catalog = tmp_path / "recordings" / CATALOG_FILE
    box = Inbox(bus.subscribe(topics.RECORDER_STATUS))
    index = Inbox(bus.subscribe(topics.RECORDER_SESSIONS))
    async with support.hosted(RecorderService, "recorder", config, config_path, endpoints):
        await recorder_answers(bus)
        # The session index is on the bus from the start (empty), for the centre's sync.
        await index.expect(RecorderSessions, lambda m: m.total == 0, within=5)
        stopped = await ask(bus, RecordCommand(action="stop"))
        assert (stopped.status, stopped.detail) == ("rejected", "no session is open")
        await marks_reach_the_recorder(bus, catalog)
        assert all(m.session_id is None for m in catalog_marks(catalog)), \
            "a mark made with no session open belongs to none"

        started = await ask(bus, RecordCommand(action="start", name="  Steel plant drill "))
        assert started.status == "accepted", started.detail
        sid = started.data["session_id"]
        assert isinstance(sid, int) and sid > 0
        assert started.data["name"] == "Steel plant drill"
        assert started.data["end_ns"] is None and started.data["released"] is False
        status = await box.expect(RecorderStatus, lambda m: m.session_id == sid, within=5)
        assert status.session_name == "Steel plant drill"
        assert status.session_start_ns == started.data["start_ns"]
        (session,) = catalog_sessions(catalog)
        assert (session.id, session.name, session.open) == (sid, "Steel plant drill", True)
        listed = await index.expect(RecorderSessions, lambda m: m.total == 1, within=5)
        assert [(x.session_id, x.name, x.end_ns, x.released) for x in listed.sessions] == [
            (sid, "Steel plant drill", None, False)]

        again = await ask(bus, RecordCommand(action="start", name="Another"))
        assert again.status == "rejected"
        assert again.detail == "session 'Steel plant drill' is still open; stop it first"
        early = await ask(bus, RecordCommand(action="release", session_id=sid))
        assert early.status == "rejected" and "still open" in early.detail

        bus.publish(topics.EVENT_MARK, EventMark(note="gate breached", author="commander"))
        (mark,) = await eventually(
            lambda: [m for m in catalog_marks(catalog) if m.note == "gate breached"],
            what="the mark in the catalog")
        assert (mark.session_id, mark.author) == (sid, "commander")
        assert mark.wall_ns >= started.data["start_ns"]

        mark_at = box.mark()
        done = await ask(bus, RecordCommand(action="stop"))
        assert done.status == "accepted", done.detail
        assert done.data["session_id"] == sid
        assert done.data["end_ns"] >= done.data["start_ns"] == started.data["start_ns"]
        await box.expect(RecorderStatus, lambda m: m.session_id is None, within=5,
                         since=mark_at)
        (session,) = catalog_sessions(catalog)
        assert (session.open, session.end_ns) == (False, done.data["end_ns"])

        bus.publish(topics.EVENT_MARK, EventMark(note="after the drill", author="commander"))
        (late,) = await eventually(
            lambda: [m for m in catalog_marks(catalog) if m.note == "after the drill"],
            what="the mark made after the session")
        assert late.session_id is None

        unknown = await ask(bus, RecordCommand(action="release", session_id=sid + 100))
        assert (unknown.status, unknown.detail) == ("rejected", f"no session {sid + 100}")
        released = await ask(bus, RecordCommand(action="release", session_id=sid))
        assert released.status == "accepted" and released.data["released"] is True
        twice = await ask(bus, RecordCommand(action="release", session_id=sid))
        assert twice.status == "accepted" and "already released" in twice.detail
        assert catalog_sessions(catalog)[0].released
        await index.expect(RecorderSessions, lambda m: bool(m.sessions) and (
            m.sessions[0].released, m.sessions[0].end_ns) == (True, done.data["end_ns"]),
            within=5)


@pytest.mark.parametrize(("command", "reason"), [
    (RecordCommand(action="start", name=""), "a session needs a name"),
    (RecordCommand(action="start", name="   "), "a session needs a name"),
    (RecordCommand(action="start", name="x" * 101),
     "a session name is at most 100 characters (this one has 101)"),
    (RecordCommand(action="start", name="two\nlines"),
     "a session name must be one line of printable text"),
    (RecordCommand(action="start", name="42"),
     "a session name cannot be only digits (it would read as a session id)"),
    (RecordCommand(action="release"), "release needs a session id (a number from "
                                      "`edge record ls`)"),
    (RecordCommand(action="pause"), "unknown action 'pause': one of start, stop, release"),
])
async def test_bad_requests_are_refused_with_a_reason(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path, command: RecordCommand,
        reason: str) -> None:
    config, config_path = recorder_config(tmp_path, {})
    async with support.hosted(RecorderService, "recorder", config, config_path, endpoints):
        await recorder_answers(bus)
        reply = await ask(bus, command)
        assert (reply.status, reply.detail) == ("rejected", reason)
        assert catalog_sessions(tmp_path / "recordings" / CATALOG_FILE) == []
        other = await ask(bus, Ping(payload="x"))
        assert other.status == "error" and "recorder.record" in other.detail


@pytest.mark.timeout(90)
async def test_an_open_session_outlives_a_recorder_restart(
        bus: BusClient, endpoints: Endpoints, tmp_path: Path) -> None:
    config, config_path = recorder_config(tmp_path, {})
    async with support.hosted(RecorderService, "recorder", config, config_path, endpoints):
        await recorder_answers(bus)
        started = await ask(bus, RecordCommand(action="start", name="Night shift"))
        assert started.status == "accepted", started.detail
    box = Inbox(bus.subscribe(topics.RECORDER_STATUS))
    async with support.hosted(RecorderService, "recorder", config, config_path, endpoints):
        await recorder_answers(bus)
        status = await box.expect(RecorderStatus, lambda m: m.session_id is not None,
                                  within=10)
        assert (status.session_id, status.session_name) == (started.data["session_id"],
                                                            "Night shift")
        done = await ask(bus, RecordCommand(action="stop"))
        assert done.status == "accepted" and done.data["session_id"] == status.session_id
