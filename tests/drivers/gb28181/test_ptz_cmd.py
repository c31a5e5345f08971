"""The 8-byte PTZCmd code: published examples, checksums, round trips, bad codes."""

from __future__ import annotations

import pytest

from drivers.gb28181 import ptz_cmd
from drivers.gb28181.ptz_cmd import PtzCmd, PtzCmdError


@pytest.mark.parametrize(("code", "command"), [
    # Codes as platforms and devices send them.
    ("A50F0100000000B5", ptz_cmd.stop()),
    ("A50F010800FA00B7", ptz_cmd.ptz(tilt=1, tilt_speed=0xFA)),
    ("A50F4D1000001021", ptz_cmd.ptz(zoom=1, zoom_speed=1, address=0x4D)),
])
def test_known_codes(code: str, command: PtzCmd) -> None:
    assert command.hex() == code
    assert PtzCmd.decode(code) == command
    assert PtzCmd.decode(code.lower()) == command


def test_checksum_and_check_nibble() -> None:
    raw = ptz_cmd.ptz(pan=-1, tilt=-1, pan_speed=0x30, tilt_speed=0x40).encode()
    assert raw[0] == 0xA5 and raw[1] == 0x0F
    assert raw[3] == ptz_cmd.LEFT | ptz_cmd.DOWN
    assert raw[7] == sum(raw[:7]) % 256


@pytest.mark.parametrize("command", [
    ptz_cmd.ptz(pan=1, tilt=1, zoom=-1, pan_speed=255, tilt_speed=1, zoom_speed=15),
    ptz_cmd.focus_iris(focus=-1, iris=1, focus_speed=9, iris_speed=200),
    ptz_cmd.preset("set", 1), ptz_cmd.preset("call", 255), ptz_cmd.preset("delete", 7),
    PtzCmd(0x01, 1, 1, 1, address=0xFFF),  # the 12-bit address spans bytes 3 and 7
])
def test_round_trip(command: PtzCmd) -> None:
    assert PtzCmd.decode(command.hex()) == command
    assert PtzCmd.decode(command.encode()) == command


def test_kinds() -> None:
    assert ptz_cmd.stop().kind == "stop"
    assert ptz_cmd.ptz(pan=1).kind == "ptz"
    assert ptz_cmd.focus_iris(iris=-1).kind == "fi"
    assert ptz_cmd.preset("call", 3).kind == "preset-call"
    assert ptz_cmd.preset("call", 3).data2 == 3


@pytest.mark.parametrize(("code", "reason"), [
    ("A50F0100000000B6", "checksum B6 should be B5"),
    ("A50E0100000000B4", "check nibble"),
    ("B50F0100000000C5", "not A5"),
    ("A50F01000000B5", "7 bytes, not 8"),
    ("A50F01000000ZZB5", "is not hex"),
])
def test_bad_codes(code: str, reason: str) -> None:
    with pytest.raises(PtzCmdError, match=reason):
        PtzCmd.decode(code)


def test_bad_arguments() -> None:
    with pytest.raises(PtzCmdError, match="pan must be -1, 0 or 1"):
        ptz_cmd.ptz(pan=2)
    with pytest.raises(PtzCmdError, match="zoom speed 16 is outside 0..15"):
        ptz_cmd.ptz(zoom=1, zoom_speed=16)
    with pytest.raises(PtzCmdError, match="preset number 0"):
        ptz_cmd.preset("call", 0)
    with pytest.raises(PtzCmdError, match="preset action"):
        ptz_cmd.preset("goto", 1)
