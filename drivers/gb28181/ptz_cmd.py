"""The 8-byte front-end control code of GB/T 28181 (appendix A.3), sent hex in `<PTZCmd>`.

Byte 1 is A5h; byte 2 has the version (0) in its high nibble and a check nibble,
(A + 5 + version) mod 16, in its low one; byte 3 is the low 8 bits of the address;
byte 4 the instruction; bytes 5 and 6 data 1 and 2 (speeds or a preset number);
byte 7 has data 3 (zoom speed, 4 bits) high and the address' high 4 bits low;
byte 8 is the sum of bytes 1 to 7 mod 256.
"""

from __future__ import annotations

from dataclasses import dataclass

FIRST_BYTE = 0xA5
VERSION = 0

# Instruction bits of a PTZ command (A.3.2): zoom out, zoom in, up, down, left, right.
ZOOM_OUT, ZOOM_IN, UP, DOWN, LEFT, RIGHT = 0x20, 0x10, 0x08, 0x04, 0x02, 0x01
# FI commands (A.3.3) are 0100 in the high nibble: iris close/open, focus near/far.
FI = 0x40
IRIS_CLOSE, IRIS_OPEN, FOCUS_NEAR, FOCUS_FAR = 0x08, 0x04, 0x02, 0x01
# Preset commands (A.3.4): data 2 is the preset number 1..255.
PRESET_SET, PRESET_CALL, PRESET_DELETE = 0x81, 0x82, 0x83


class PtzCmdError(ValueError):
    """A code or an argument we cannot use; `str()` says what was wrong."""


@dataclass(frozen=True)
class PtzCmd:
    """One decoded command: the instruction byte, its three data fields, the address."""

    instruction: int
    data1: int = 0
    data2: int = 0
    data3: int = 0
    address: int = 1

    def __post_init__(self) -> None:
        for name, value, top in (("instruction", self.instruction, 0xFF),
                                 ("data1", self.data1, 0xFF), ("data2", self.data2, 0xFF),
                                 ("data3", self.data3, 0x0F), ("address", self.address, 0xFFF)):
            if not 0 <= value <= top:
                raise PtzCmdError(f"{name} {value} is outside 0..{top}")

    def encode(self) -> bytes:
        head = [FIRST_BYTE, (VERSION << 4) | ((0xA + 0x5 + VERSION) & 0x0F),
                self.address & 0xFF, self.instruction, self.data1, self.data2,
                (self.data3 << 4) | (self.address >> 8)]
        return bytes(head + [sum(head) & 0xFF])

    def hex(self) -> str:
        """What goes in `<PTZCmd>`: 16 upper-case hex digits."""
        return self.encode().hex().upper()

    @classmethod
    def decode(cls, code: str | bytes) -> PtzCmd:
        if isinstance(code, str):
            text = code.strip()
            try:
                raw = bytes.fromhex(text)
            except ValueError:
                raise PtzCmdError(f"PTZCmd {text[:32]!r} is not hex") from None
        else:
            raw = code
        if len(raw) != 8:
            raise PtzCmdError(f"PTZCmd is {len(raw)} bytes, not 8")
        if raw[0] != FIRST_BYTE:
            raise PtzCmdError(f"PTZCmd starts with {raw[0]:02X}, not A5")
        version = raw[1] >> 4
        if raw[1] & 0x0F != (0xA + 0x5 + version) & 0x0F:
            raise PtzCmdError(f"PTZCmd byte 2 {raw[1]:02X} fails its check nibble")
        if sum(raw[:7]) & 0xFF != raw[7]:
            raise PtzCmdError(f"PTZCmd checksum {raw[7]:02X} should be {sum(raw[:7]) & 0xFF:02X}")
        return cls(raw[3], raw[4], raw[5], raw[6] >> 4, ((raw[6] & 0x0F) << 8) | raw[2])

    @property
    def kind(self) -> str:
        """`stop`, `ptz`, `fi`, `preset-set`/`-call`/`-delete`, or `other`."""
        if self.instruction == 0:
            return "stop"
        if self.instruction & 0xC0 == 0:
            return "ptz"
        if self.instruction & 0xF0 == FI:
            return "fi"
        return {PRESET_SET: "preset-set", PRESET_CALL: "preset-call",
                PRESET_DELETE: "preset-delete"}.get(self.instruction, "other")


def _speed(name: str, value: int, top: int) -> int:
    if not 0 <= value <= top:
        raise PtzCmdError(f"{name} {value} is outside 0..{top}")
    return value


def ptz(*, pan: int = 0, tilt: int = 0, zoom: int = 0, pan_speed: int = 0x80,
        tilt_speed: int = 0x80, zoom_speed: int = 0x8, address: int = 1) -> PtzCmd:
    """Move: `pan` -1 left / +1 right, `tilt` -1 down / +1 up, `zoom` -1 out / +1 in.

    Speeds are 0..255 (zoom 0..15); all directions 0 is stop.
    """
    for name, value in (("pan", pan), ("tilt", tilt), ("zoom", zoom)):
        if value not in (-1, 0, 1):
            raise PtzCmdError(f"{name} must be -1, 0 or 1, not {value}")
    bits = ((RIGHT if pan > 0 else LEFT if pan < 0 else 0)
            | (UP if tilt > 0 else DOWN if tilt < 0 else 0)
            | (ZOOM_IN if zoom > 0 else ZOOM_OUT if zoom < 0 else 0))
    return PtzCmd(bits,
                  _speed("pan speed", pan_speed, 0xFF) if pan else 0,
                  _speed("tilt speed", tilt_speed, 0xFF) if tilt else 0,
                  _speed("zoom speed", zoom_speed, 0xF) if zoom else 0,
                  address)


def stop(address: int = 1) -> PtzCmd:
    return PtzCmd(0, address=address)


def focus_iris(*, focus: int = 0, iris: int = 0, focus_speed: int = 0x80,
               iris_speed: int = 0x80, address: int = 1) -> PtzCmd:
    """`focus` -1 near / +1 far, `iris` -1 close / +1 open (A.3.3)."""
    for name, value in (("focus", focus), ("iris", iris)):
        if value not in (-1, 0, 1):
            raise PtzCmdError(f"{name} must be -1, 0 or 1, not {value}")
    bits = (FI | (FOCUS_FAR if focus > 0 else FOCUS_NEAR if focus < 0 else 0)
            | (IRIS_OPEN if iris > 0 else IRIS_CLOSE if iris < 0 else 0))
    return PtzCmd(bits, _speed("focus speed", focus_speed, 0xFF) if focus else 0,
                  _speed("iris speed", iris_speed, 0xFF) if iris else 0, 0, address)


def preset(action: str, number: int, address: int = 1) -> PtzCmd:
    """`action` is `set`, `call` or `delete`; `number` 1..255."""
    codes = {"set": PRESET_SET, "call": PRESET_CALL, "delete": PRESET_DELETE}
    if action not in codes:
        raise PtzCmdError(f"preset action must be set, call or delete, not {action!r}")
    if not 1 <= number <= 255:
        raise PtzCmdError(f"preset number {number} is outside 1..255")
    return PtzCmd(codes[action], 0, number, 0, address)
