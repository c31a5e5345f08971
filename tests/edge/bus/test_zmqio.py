"""Whole multipart messages in and out of plain sockets, without pyzmq's multipart calls."""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Iterator

import pytest
import zmq

from edge.bus.zmqio import drain, recv_frames, send_frames

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pair() -> Iterator[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    a: zmq.Socket[bytes] = ctx.socket(zmq.PAIR)
    b: zmq.Socket[bytes] = ctx.socket(zmq.PAIR)
    address = f"inproc://zmqio-{secrets.token_hex(8)}"  # a closed socket unbinds lazily
    a.bind(address)
    b.connect(address)
    yield a, b
    a.close(0)
    b.close(0)


def test_messages_arrive_whole_and_in_order(
        pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]]) -> None:
    a, b = pair
    sent = [[b"one"], [b"t", b"h", b"body"], [b"t", b"", b"b", b"\x00" * 100_000, b"end"]]
    for frames in sent:
        send_frames(a, frames)
    assert b.poll(10_000), "nothing arrived"
    assert [recv_frames(b, 0) for _ in sent] == sent
    with pytest.raises(zmq.Again):
        recv_frames(b)


def test_drain_takes_what_is_queued_up_to_its_limit(
        pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]]) -> None:
    a, b = pair
    for i in range(5):
        send_frames(a, [b"t", str(i).encode()])
    send_frames(a, [b"t", b"last"])
    # inproc: a message is in the pipe once its send returned.
    assert b.poll(10_000), "nothing arrived"
    batch: deque[list[bytes]] = deque()
    drain(b, batch, 2)
    assert list(batch) == [[b"t", b"0"], [b"t", b"1"]]
    drain(b, batch, 100)
    assert [m[1] for m in batch] == [b"0", b"1", b"2", b"3", b"4", b"last"]
    drain(b, batch, 100)  # nothing queued: returns at once, raises nothing
    assert len(batch) == 6
