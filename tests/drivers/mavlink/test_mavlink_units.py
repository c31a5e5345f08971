"""Mode tables, connection strings, a serial link on a pty, the normaliser, the bench."""

from __future__ import annotations

import contextlib
import os

import pytest

from drivers.mavlink.bench import baseline_parse, normalise_parse, record_stream
from drivers.mavlink.dialect import MAVLink, mavlink
from drivers.mavlink.framing import Frame, FrameParser
from drivers.mavlink.modes import available_modes, mode_name, mode_request
from drivers.mavlink.telemetry import TelemetryNormaliser
from drivers.mavlink.transport import SerialTransport, parse_connection
from tests.support import eventually

pytestmark = pytest.mark.timeout(10)

AP = mavlink.MAV_AUTOPILOT_ARDUPILOTMEGA
PX4 = mavlink.MAV_AUTOPILOT_PX4


@pytest.mark.parametrize(
    ("mav_type", "number", "name"),
    [
        (mavlink.MAV_TYPE_QUADROTOR, 17, "BRAKE"),
        (mavlink.MAV_TYPE_HEXAROTOR, 6, "RTL"),
        (mavlink.MAV_TYPE_FIXED_WING, 12, "LOITER"),
        (mavlink.MAV_TYPE_VTOL_QUADROTOR, 19, "QLOITER"),
        (mavlink.MAV_TYPE_GROUND_ROVER, 4, "HOLD"),
        (mavlink.MAV_TYPE_SURFACE_BOAT, 15, "GUIDED"),
    ],
)
def test_ardupilot_modes_both_ways(mav_type: int, number: int, name: str) -> None:
    assert mode_name(AP, mav_type, number) == name
    req = mode_request(AP, mav_type, name.lower())
    assert req.param2 == number and req.base_mode == mavlink.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED


def test_px4_modes_both_ways() -> None:
    loiter = (4 << 16) | (3 << 24)
    assert mode_name(PX4, mavlink.MAV_TYPE_QUADROTOR, loiter) == "AUTO.LOITER"
    assert mode_name(PX4, mavlink.MAV_TYPE_QUADROTOR, 3 << 16) == "POSCTL"
    assert mode_name(PX4, mavlink.MAV_TYPE_QUADROTOR, (4 << 16) | (5 << 24)) == "AUTO.RTL"
    req = mode_request(PX4, mavlink.MAV_TYPE_QUADROTOR, "AUTO.LOITER")
    assert (req.param2, req.param3) == (4, 3)
    assert mode_request(PX4, mavlink.MAV_TYPE_QUADROTOR, "rtl").param3 == 5
    assert mode_request(PX4, mavlink.MAV_TYPE_QUADROTOR, "POSCTL").param2 == 3
    with pytest.raises(KeyError):
        mode_request(PX4, mavlink.MAV_TYPE_QUADROTOR, "BRAKE")
    assert "AUTO.LOITER" in available_modes(PX4, mavlink.MAV_TYPE_QUADROTOR)
    assert mode_name(AP, mavlink.MAV_TYPE_QUADROTOR, 99) == "MODE_99"


@pytest.mark.parametrize(
    "text",
    [
        "udpin:0.0.0.0:14550",
        "udpout:10.1.2.3:14550",
        "tcp:127.0.0.1:5760",
        "tcpin:0.0.0.0:5760",
        "serial:/dev/ttyUSB0:57600",
    ],
)
def test_connection_strings_round_trip(text: str) -> None:
    assert str(parse_connection(text)) == text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("udp:1.2.3.4:5", "kind"),
        ("tcp:host", "HOST:PORT"),
        ("serial:/dev/ttyS0:12345", "baud"),
        ("tcp:1.2.3.4:0", "remote port"),
        ("14550", "KIND"),
    ],
)
def test_bad_connection_strings_say_why(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_connection(text)


async def test_serial_link_on_a_pty() -> None:
    master, slave = os.openpty()
    got: list[bytes] = []
    transport = SerialTransport(
        parse_connection(f"serial:{os.ttyname(slave)}:57600"), lambda p, d: got.append(d)
    )
    await transport.start()
    try:
        mav = MAVLink(None, srcSystem=1, srcComponent=1)
        frame = mav.heartbeat_encode(2, 3, 0, 0, 3).pack(mav)
        os.write(master, frame)
        await eventually(lambda: sum(map(len, got)) >= len(frame), what="the frame read")
        frames = FrameParser().feed(b"".join(got))
        assert len(frames) == 1 and frames[0].msg_id == 0
        os.set_blocking(master, False)  # a read must not hang the test if nothing comes
        echoed = bytearray()

        def all_written() -> bool:
            with contextlib.suppress(BlockingIOError):
                echoed.extend(os.read(master, 100))
            return len(echoed) >= len(b"\xfdhello")

        transport.send(b"\xfdhello")
        await eventually(all_written, what="the bytes written to the port")
        assert bytes(echoed) == b"\xfdhello"
    finally:
        await transport.close()
        os.close(master)
        os.close(slave)


def _frames(mav: MAVLink, seqs: list[int]) -> list[Frame]:
    out: list[Frame] = []
    for seq in seqs:
        mav.seq = seq
        out += FrameParser().feed(mav.heartbeat_encode(2, 3, 0, 0, 3).pack(mav))
    return out


def test_link_quality_from_sequence_gaps() -> None:
    clock = [100.0]
    norm = TelemetryNormaliser(1, lambda e: None, clock=lambda: clock[0])
    mav = MAVLink(None, srcSystem=1, srcComponent=1)
    # 0..9 received, 10..19 lost, 20..29 received; wraps at 256 without false loss
    for frame in _frames(mav, [*range(10), *range(20, 30), *range(250, 256), *range(0, 4)]):
        norm.handle(frame)
    # figures are refreshed once a second
    clock[0] += 1.0
    norm.check_silence(3.0)
    # 30..249 is a jump of more than 128: a restart, not loss
    received, lost = 30, 10
    assert norm.telemetry.link_quality_pct == pytest.approx(
        100 * received / (received + lost), abs=0.1
    )
    assert norm.telemetry.msgs_per_s == 30.0


def test_bench_parsers_agree() -> None:
    data = record_stream(seconds=2.0, drones=2)
    assert baseline_parse(data) == normalise_parse(data) > 100
