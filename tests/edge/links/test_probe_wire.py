"""The probe datagram: round trip, the responder's reply, and garbage that never raises."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge.links import probe_wire
from edge.links.probe_wire import PROBE, REPLY, Probe


def test_a_probe_round_trips_and_its_reply_differs_only_in_kind() -> None:
    probe = Probe(probe_wire.link_tag("lte"), 0xFFFF_FFFF, 2**63 + 5)
    data = probe_wire.encode(probe)
    assert len(data) == probe_wire.SIZE == 24 and data.startswith(b"EDGP\x01")
    assert probe_wire.parse(data) == probe
    reply = probe_wire.reply_to(data)
    assert reply is not None and len(reply) == len(data)
    assert probe_wire.parse(reply) == Probe(probe.link, probe.seq, probe.sent_ns, REPLY)
    assert sum(a != b for a, b in zip(data, reply, strict=True)) == 1


def test_a_reply_is_never_answered() -> None:
    reply = probe_wire.encode(Probe(1, 2, 3, kind=REPLY))
    assert probe_wire.reply_to(reply) is None


def test_link_tags_differ_per_link() -> None:
    assert probe_wire.link_tag("lte") != probe_wire.link_tag("geo")


@given(st.binary(max_size=64))
def test_garbage_is_none_never_an_error(data: bytes) -> None:
    parsed = probe_wire.parse(data)
    if parsed is not None:  # only a real probe or reply parses
        assert probe_wire.encode(parsed) == data and parsed.kind in (PROBE, REPLY)
    reply = probe_wire.reply_to(data)
    assert reply is None or probe_wire.parse(reply) is not None


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1),
       st.integers(0, 255))
def test_every_field_and_kind_byte(link: int, seq: int, sent_ns: int, kind: int) -> None:
    data = bytearray(probe_wire.encode(Probe(link, seq, sent_ns)))
    data[5] = kind
    parsed = probe_wire.parse(bytes(data))
    if kind in (PROBE, REPLY):
        assert parsed == Probe(link, seq, sent_ns, kind)
    else:
        assert parsed is None
