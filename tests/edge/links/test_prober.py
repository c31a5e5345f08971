"""LinkProber against a real ProbeResponder over loopback UDP, garbage and send errors."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

import pytest

from edge.centre.probe_responder import ProbeResponder
from edge.links import probe_wire
from edge.links.probe_socket import ProbeSocketError
from edge.links.probe_stats import LinkSnapshot, ProbeSettings
from edge.links.prober import LinkProber
from tests.support import eventually

# a link that never answers is declared down this long after its first probe (3 s by
# default): short here so the tests do not wait for it
QUICK = ProbeSettings(first_deadline_s=0.5)

GARBAGE = [
    b"",
    b"x",
    b"EDGP",
    os.urandom(probe_wire.SIZE),
    b"\xff" * 2000,
    probe_wire.encode(probe_wire.Probe(1, 2, 3)) + b"!",  # a probe, one byte too long
    probe_wire.encode(probe_wire.Probe(1, 2, 3))[:-1],  # and one too short
    b"EDGP\x02" + bytes(probe_wire.SIZE - 5),  # another version
    probe_wire.encode(probe_wire.Probe(1, 2, 3, kind=probe_wire.REPLY)),  # not a probe
]


@pytest.fixture
async def responder():
    r = ProbeResponder()
    await r.start("127.0.0.1", 0)
    yield r
    r.close()


async def test_a_prober_measures_a_loopback_link(responder: ProbeResponder) -> None:
    changes: list[LinkSnapshot] = []
    prober = LinkProber("lo-test", responder.address, source="127.0.0.1", rate_hz=20,
                        on_change=changes.append)
    assert prober.snapshot().state == "unknown"
    prober.start()
    try:
        await eventually(lambda: prober.snapshot().received >= 10, within=10,
                         what="ten replies")
        snap = prober.snapshot()
        assert snap.state == "up" and snap.error is None and snap.malformed == 0
        assert snap.rtt_ms is not None and snap.rtt_p95_ms is not None
        assert snap.jitter_ms is not None and snap.loss_pct == 0
        assert snap.last_reply_age_s is not None
        assert [c.state for c in changes] == ["up"] and changes[0].previous == "unknown"
        assert responder.counters.reflected >= snap.received
        assert responder.counters.malformed == 0
        local = prober.local_address
        assert local is not None and local[0] == "127.0.0.1"
    finally:
        await prober.close()
    assert prober.local_address is None
    sent = prober.snapshot().sent
    await asyncio.sleep(0.15)  # three periods at 20 Hz: nothing is sent after close
    assert prober.snapshot().sent == sent
    await prober.close()  # idempotent


async def test_garbage_to_the_responder_is_counted_and_dropped(
        responder: ProbeResponder) -> None:
    prober = LinkProber("lo-test", responder.address, source="127.0.0.1", rate_hz=20)
    prober.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
        junk.bind(("127.0.0.1", 0))
        junk.settimeout(0.2)
        try:
            for data in GARBAGE:
                junk.sendto(data, responder.address)
            await eventually(lambda: responder.counters.malformed == len(GARBAGE), within=10,
                             what="every datagram counted as malformed")
            # nothing came back to the sender of garbage
            with pytest.raises(TimeoutError):
                junk.recv(100)
            # and the responder still answers probes
            before = prober.snapshot().received
            await eventually(lambda: prober.snapshot().received > before + 5, within=10,
                             what="replies after the garbage")
            assert prober.snapshot().state == "up"
        finally:
            await prober.close()


async def test_garbage_to_the_prober_is_counted_and_it_keeps_measuring(
        responder: ProbeResponder) -> None:
    prober = LinkProber("lo-test", responder.address, source="127.0.0.1", rate_hz=20)
    prober.start()
    try:
        await eventually(lambda: prober.snapshot().state == "up", within=10, what="up")
        local = prober.local_address
        assert local is not None
        # a well-formed reply, but not from the responder; and one for another link
        forged = [probe_wire.encode(probe_wire.Probe(probe_wire.link_tag("lo-test"), 1, 1,
                                                     kind=probe_wire.REPLY)),
                  probe_wire.encode(probe_wire.Probe(probe_wire.link_tag("other"), 1, 1,
                                                     kind=probe_wire.REPLY))]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
            for data in GARBAGE + forged:
                junk.sendto(data, local)
        await eventually(lambda: prober.snapshot().malformed == len(GARBAGE) + 2, within=10,
                         what="every datagram counted as malformed")
        before = prober.snapshot().received
        await eventually(lambda: prober.snapshot().received > before + 5, within=10,
                         what="replies after the garbage")
        assert prober.snapshot().state == "up"
    finally:
        await prober.close()


async def test_a_send_error_is_reported_and_the_prober_lives_on() -> None:
    # sending to the broadcast address without SO_BROADCAST fails in the kernel
    # (EACCES): a real send error that needs no privileges
    changes: list[LinkSnapshot] = []
    prober = LinkProber("bcast", ("255.255.255.255", 9), rate_hz=20, settings=QUICK,
                        on_change=changes.append)
    prober.start()
    try:
        await eventually(lambda: prober.snapshot().sent >= 15, within=10, what="15 probes")
        snap = prober.snapshot()
        assert snap.error == "send failed: permission denied"
        assert snap.received == 0 and snap.loss_pct == 100
        assert [c.state for c in changes] == ["down"]
        assert changes[0].error == snap.error
    finally:
        await prober.close()


async def test_a_socket_that_cannot_be_bound_is_reported_and_retried() -> None:
    prober = LinkProber("gone", ("127.0.0.1", 9), source="192.0.2.7", rate_hz=20,
                        settings=QUICK)
    prober.start()
    try:
        await eventually(lambda: prober.snapshot().state == "down", within=10, what="down")
        snap = prober.snapshot()
        assert snap.error == ("address 192.0.2.7 is not on this host "
                              "(is the link's interface up?)")
        assert snap.sent >= 10 and snap.loss_pct == 100
    finally:
        await prober.close()


async def test_binding_to_a_missing_interface_says_why() -> None:
    prober = LinkProber("nodev", ("127.0.0.1", 9), interface="nope0", rate_hz=20)
    prober.start()
    try:
        await eventually(lambda: prober.snapshot().error, within=10, what="an error")
    finally:
        await prober.close()
    if os.geteuid() == 0:
        assert prober.snapshot().error == "no interface named nope0"
    else:
        assert prober.snapshot().error == ("binding to interface nope0 needs root "
                                           "(CAP_NET_RAW): operation not permitted")


async def test_a_callback_that_raises_does_not_stop_the_probes(
        responder: ProbeResponder, caplog: pytest.LogCaptureFixture) -> None:
    def broken(snap: LinkSnapshot) -> None:
        raise RuntimeError("the caller's bug")

    prober = LinkProber("lo-test", responder.address, rate_hz=20, on_change=broken)
    prober.start()
    try:
        await eventually(lambda: prober.snapshot().received >= 5, within=10,
                         what="replies after the callback failed")
    finally:
        await prober.close()
    failed = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failed] == [
        "link lo-test: on_change callback failed: RuntimeError(\"the caller's bug\")"]


async def test_bad_parameters_are_one_line_each() -> None:
    cases: list[tuple[dict[str, object], str]] = [
        ({"target": ("centre.example", 7000)}, "probe target 'centre.example' is not an IP"),
        ({"target": ("127.0.0.1", 0)}, "probe target port 0"),
        ({"target": ("127.0.0.1", 70000)}, "probe target port 70000"),
        ({"source": "::1"}, "not of one address family"),
        ({"rate_hz": 0}, "probe rate 0 Hz"),
        ({"interface": "a/b"}, "interface name 'a/b'"),
    ]
    for kwargs, message in cases:
        args: dict[str, object] = {"target": ("127.0.0.1", 7000), **kwargs}
        with pytest.raises(ValueError, match=message) as e:
            LinkProber("x", **args)  # type: ignore[arg-type]
        assert "\n" not in str(e.value)


async def test_a_responder_that_cannot_bind_says_why(responder: ProbeResponder) -> None:
    other = ProbeResponder()
    with pytest.raises(ProbeSocketError) as e:
        await other.start(*responder.address)
    assert str(e.value) == f"port {responder.address[1]} on 127.0.0.1 is in use"
    with pytest.raises(ValueError, match="probe responder address 'centre' is not an IP"):
        await other.start("centre", 7000)
