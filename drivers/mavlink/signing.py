"""MAVLink 2 message signing (the spec's "Message signing" chapter).

A link shares one 32-byte secret. Outgoing frames carry ``link_id``, a 48-bit
timestamp in 10 microsecond units since 2015-01-01 UTC, and the first six
bytes of SHA-256(secret + frame). pymavlink's ``mav.signing`` does the
signing and ``mav.check_signature`` the checking (including the per-stream
replay rule: a timestamp must grow for each (link_id, sysid, compid)); this
module loads keys, keeps our timestamp close to real time, and says which
messages are dangerous when unsigned.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from drivers.mavlink.dialect import MAVLink, message_id

KEY_LEN = 32
#: 2015-01-01T00:00:00Z, the signing epoch
SIGNING_EPOCH_S = 1420070400

#: Messages that change what a vehicle does. With signing on, these are only
#: accepted from a router endpoint when correctly signed; everything else
#: (heartbeats, parameter and mission *reads*) may pass unsigned so a
#: read-only display still works.
COMMAND_MESSAGES: frozenset[int] = frozenset(
    message_id(name)
    for name in (
        "COMMAND_LONG",
        "COMMAND_INT",
        "SET_MODE",
        "PARAM_SET",
        "PARAM_EXT_SET",
        "MISSION_COUNT",
        "MISSION_ITEM",
        "MISSION_ITEM_INT",
        "MISSION_CLEAR_ALL",
        "MISSION_SET_CURRENT",
        "MISSION_WRITE_PARTIAL_LIST",
        "SET_POSITION_TARGET_LOCAL_NED",
        "SET_POSITION_TARGET_GLOBAL_INT",
        "SET_ATTITUDE_TARGET",
        "SET_ACTUATOR_CONTROL_TARGET",
        "MANUAL_CONTROL",
        "RC_CHANNELS_OVERRIDE",
        "SET_HOME_POSITION",
        "SET_GPS_GLOBAL_ORIGIN",
        "FILE_TRANSFER_PROTOCOL",
        "LOG_ERASE",
        "SERIAL_CONTROL",
        "GIMBAL_MANAGER_SET_ATTITUDE",
        "GIMBAL_MANAGER_SET_PITCHYAW",
        "GIMBAL_MANAGER_SET_MANUAL_CONTROL",
        "GIMBAL_DEVICE_SET_ATTITUDE",
        "MOUNT_CONFIGURE",
        "MOUNT_CONTROL",
        "SETUP_SIGNING",
        "FENCE_POINT",
        "RALLY_POINT",
    )
)


def load_key(source: bytes | str | os.PathLike[str]) -> bytes:
    """A 32-byte secret from bytes or from a file holding it raw or as hex.

    ``bytes`` of length 32 are the key itself; 64 hex characters (the form
    MAVProxy and QGroundControl print) are decoded. A ``str`` or path is a
    file name. Anything else raises ``ValueError`` naming the source.
    """
    if isinstance(source, bytes | bytearray):
        blob, where = bytes(source), "key bytes"
    else:
        path = Path(source)
        blob, where = path.read_bytes(), str(path)
    if len(blob) == KEY_LEN:
        return blob
    text = blob.strip()
    if len(text) == 2 * KEY_LEN:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    raise ValueError(
        f"{where}: a MAVLink signing key is {KEY_LEN} raw bytes or {2 * KEY_LEN} hex "
        f"characters, got {len(blob)} bytes"
    )


def now_timestamp() -> int:
    """Signing timestamp for this instant (10 us units since 2015)."""
    return int((max(time.time(), SIGNING_EPOCH_S) - SIGNING_EPOCH_S) * 100_000)


@dataclass(slots=True)
class SigningStats:
    signed_ok: int = 0
    signed_bad: int = 0
    #: unsigned (or badly signed) command messages refused
    refused: int = 0


class Signing:
    """The signing state of one link: a key, our link id and our timestamp.

    One pymavlink ``MAVLink`` object per link both signs what we send and
    checks what we receive, so the timestamp rule (never send older than
    the newest we accepted) holds across both directions as the spec asks.
    """

    def __init__(self, key: bytes, *, link_id: int = 0) -> None:
        if len(key) != KEY_LEN:
            raise ValueError(f"signing key must be {KEY_LEN} bytes, got {len(key)}")
        if not 0 <= link_id <= 255:
            raise ValueError(f"link_id must be 0..255, got {link_id}")
        self.key = key
        self.link_id = link_id
        self.stats = SigningStats()
        # Checks use their own MAVLink object: pymavlink keys its replay
        # table by stream, and checking must not depend on who sends.
        self._checker = MAVLink(None)
        self._checker.signing.secret_key = key
        self._checker.signing.timestamp = now_timestamp()

    def attach(self, mav: MAVLink) -> None:
        """Make ``mav`` sign everything it packs from now on."""
        mav.signing.secret_key = self.key
        mav.signing.link_id = self.link_id
        mav.signing.sign_outgoing = True
        mav.signing.timestamp = max(mav.signing.timestamp, now_timestamp())

    @staticmethod
    def refresh(mav: MAVLink) -> None:
        """Keep our timestamp at least at real time (pymavlink only adds 1 per frame)."""
        now = now_timestamp()
        if mav.signing.timestamp < now:
            mav.signing.timestamp = now

    def check(self, raw: bytes, sysid: int, compid: int) -> bool:
        """Verify a signed frame's signature and timestamp; counts the result."""
        ok = bool(self._checker.check_signature(bytearray(raw), sysid, compid))
        if ok:
            self.stats.signed_ok += 1
        else:
            self.stats.signed_bad += 1
        return ok
