"""Drone commands and their replies, read from the links' MAVLink logs.

Commands are bus requests to ``drone@<link>`` and their replies come back the same way,
through the broker's router: they never cross the publish side of the bus, so the
recorder's bus log does not hold them. The drone service logs its link both ways, so
the tlog does: each COMMAND_LONG, COMMAND_INT or SET_MODE sent to a vehicle, and the
COMMAND_ACK it answered with. Resends of a command before its answer (the command
engine retries) are one command with several attempts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pymavlink.dialects.v20 import ardupilotmega as mavlink

from edge.export.tlog import link_files, records, sender
from edge.recorder.layout import TLOG_DIR

_SENT = frozenset({mavlink.MAVLINK_MSG_ID_COMMAND_LONG, mavlink.MAVLINK_MSG_ID_COMMAND_INT,
                   mavlink.MAVLINK_MSG_ID_SET_MODE})
_ACK = mavlink.MAVLINK_MSG_ID_COMMAND_ACK
_WANTED = _SENT | {_ACK}
# An answer later than this belongs to no command we saw (the engine gives up sooner).
REPLY_WITHIN_NS = 30_000_000_000


@dataclass(slots=True)
class Command:
    time_ns: int
    drone_id: str  # <link>-<target sysid>
    name: str  # MAV_CMD_DO_SET_MODE, SET_MODE...
    params: str
    attempts: int = 1
    result: str = ""  # MAV_RESULT_ACCEPTED..., "" while unanswered
    reply_ns: int | None = None


def _msgid(frame: bytes) -> int:
    if frame[0] == 0xFD:
        return frame[7] | frame[8] << 8 | frame[9] << 16
    return frame[5]


def _enum(enum: str, value: int) -> str:
    entry = mavlink.enums.get(enum, {}).get(value)
    return entry.name if entry is not None else f"{enum}_{value}"


def _params(values: list[float]) -> str:
    shown = [f"{v:g}" for v in values]
    while shown and shown[-1] in ("0", "nan"):
        shown.pop()
    return ", ".join(shown)


def link_commands(root: Path, link: str, start_ns: int, end_ns: int) -> list[Command]:
    """Every command sent on `link` in [start_ns, end_ns), with its answer if any."""
    parser = mavlink.MAVLink(None)
    parser.robust_parsing = True
    found: list[Command] = []
    pending: dict[tuple[int, int], Command] = {}  # (target sysid, command id) -> command
    for path in link_files(root, link, start_ns, end_ns + REPLY_WITHIN_NS):
        for t, record in records(path):
            frame = record[8:]
            if _msgid(frame) not in _WANTED or t < start_ns:
                continue
            try:
                msgs = parser.parse_buffer(frame) or []
            except mavlink.MAVError:
                continue
            for m in msgs:
                kind = m.get_msgId()
                if kind == _ACK:
                    key = (sender(frame), int(m.command))
                    cmd = pending.pop(key, None)
                    if cmd is not None and t - cmd.time_ns <= REPLY_WITHIN_NS:
                        cmd.result, cmd.reply_ns = _enum("MAV_RESULT", int(m.result)), t
                    continue
                if t >= end_ns:
                    continue
                if kind == mavlink.MAVLINK_MSG_ID_SET_MODE:
                    key = (int(m.target_system), kind)
                    name, params = "SET_MODE", f"base {m.base_mode}, custom {m.custom_mode}"
                elif kind == mavlink.MAVLINK_MSG_ID_COMMAND_INT:
                    key = (int(m.target_system), int(m.command))
                    name = _enum("MAV_CMD", int(m.command))
                    params = _params([m.param1, m.param2, m.param3, m.param4, m.x / 1e7,
                                      m.y / 1e7, m.z])
                else:
                    key = (int(m.target_system), int(m.command))
                    name = _enum("MAV_CMD", int(m.command))
                    params = _params([m.param1, m.param2, m.param3, m.param4, m.param5,
                                      m.param6, m.param7])
                earlier = pending.get(key)
                if earlier is not None and t - earlier.time_ns <= REPLY_WITHIN_NS:
                    earlier.attempts += 1  # a resend, not a new command
                    continue
                cmd = Command(t, f"{link}-{key[0]}", name, params)
                pending[key] = cmd
                found.append(cmd)
    return found


def links(root: Path) -> list[str]:
    directory = root / TLOG_DIR
    return sorted(p.name for p in directory.iterdir() if p.is_dir()) if directory.is_dir() \
        else []
