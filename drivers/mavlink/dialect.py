"""The one place that picks the MAVLink wire version and dialect.

pymavlink's ``mavutil`` reads ``MAVLINK20`` from the environment when it is
first imported and caches the dialect module; setting it here, before any
import of pymavlink, keeps every part of the process (our parser, the
simulator, a ``mavutil`` client in the tests) on MAVLink 2 and the
``ardupilotmega`` dialect.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

os.environ["MAVLINK20"] = "1"
os.environ.setdefault("MAVLINK_DIALECT", "ardupilotmega")

from pymavlink.dialects.v20 import ardupilotmega as mavlink  # noqa: E402

MAVLink = mavlink.MAVLink
MAVLinkMessage = mavlink.MAVLink_message
MAVError = mavlink.MAVError

#: message id -> message class (gives crc_extra, name and field layout)
MESSAGE_CLASSES: dict[int, type[mavlink.MAVLink_message]] = dict(mavlink.mavlink_map)
#: upper-case message name -> id, e.g. "HEARTBEAT" -> 0
MESSAGE_IDS: dict[str, int] = {cls.msgname: msg_id for msg_id, cls in MESSAGE_CLASSES.items()}


def enum_name(enum: str, value: int, *, strip: str | None = None) -> str:
    """Name of an enum entry, e.g. ``enum_name("MAV_RESULT", 2) == "MAV_RESULT_DENIED"``.

    ``strip`` removes a prefix (``strip="MAV_RESULT_"`` gives ``"DENIED"``).
    Unknown values come back as ``"<ENUM>_<value>"`` rather than raising:
    a newer autopilot may send values this dialect does not know.
    """
    entry = mavlink.enums.get(enum, {}).get(value)
    name = entry.name if entry is not None else f"{enum}_{value}"
    if strip and name.startswith(strip):
        return name[len(strip) :]
    return name


def message_id(name_or_id: str | int) -> int:
    """Message id from a name (``"COMMAND_LONG"``) or an id; raises ``KeyError``."""
    if isinstance(name_or_id, int):
        return name_or_id
    text = name_or_id.strip().upper()
    if text.isdigit():
        return int(text)
    return MESSAGE_IDS[text]


def mavutil() -> ModuleType:
    """pymavlink's ``mavutil``, imported only after the environment is set."""
    return importlib.import_module("pymavlink.mavutil")


__all__ = [
    "MESSAGE_CLASSES",
    "MESSAGE_IDS",
    "MAVError",
    "MAVLink",
    "MAVLinkMessage",
    "enum_name",
    "mavlink",
    "mavutil",
    "message_id",
]
