"""The broker and client against each other over real ipc sockets."""

from __future__ import annotations

import asyncio

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.bus import topics
from edge.bus.broker import Broker
from edge.bus.client import BusClient, RequestError, RequestTimeout, Subscription
from edge.bus.endpoints import Endpoints
from edge.bus.envelope import Envelope
from edge.bus.messages import Alert, CameraStatus, Message, Ping, Reply

pytestmark = pytest.mark.timeout(30)


async def settle() -> None:
    # PUB/SUB subscriptions take a moment to reach the publisher ("slow joiner").
    await asyncio.sleep(0.3)


async def next_of(sub: Subscription, topic: str, timeout: float = 3.0) -> Envelope:
    async def find() -> Envelope:
        while True:
            env = await sub.recv()
            if env.topic == topic:
                return env
    return await asyncio.wait_for(find(), timeout)


async def test_publish_subscribe_by_prefix(bus: BusClient) -> None:
    cams = bus.subscribe(topics.CAM)
    await settle()
    bus.publish(topics.alert("x"), Alert(text="not for cams"))
    bus.publish(topics.cam_status("a"), CameraStatus(camera_id="a", state="live"))
    env = await asyncio.wait_for(cams.recv(), 3)
    assert env.topic == "cam/a/status"
    assert isinstance(env.message, CameraStatus) and env.message.state == "live"


async def test_late_subscriber_gets_last_state_at_once(bus: BusClient) -> None:
    early = bus.subscribe("")
    await settle()
    for state in ("connecting", "live"):
        bus.publish(topics.cam_status("a"), CameraStatus(camera_id="a", state=state))
    bus.publish(topics.cam_status("b"), CameraStatus(camera_id="b", state="down"))
    bus.publish(topics.alert("a"), Alert(text="events are not cached"))
    await next_of(early, "alert/a")  # everything has passed the broker
    late = bus.subscribe(topics.CAM)
    got = {}
    for _ in range(2):
        env = await asyncio.wait_for(late.recv(), 3)
        assert isinstance(env.message, CameraStatus)
        got[env.topic] = env.message.state
    assert got == {"cam/a/status": "live", "cam/b/status": "down"}
    late_alerts = bus.subscribe(topics.ALERT)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(late_alerts.recv(), 0.5)


async def test_replay_is_marked_not_a_gap(bus: BusClient) -> None:
    first = bus.subscribe(topics.CAM)
    await settle()
    bus.publish(topics.cam_status("a"), CameraStatus(camera_id="a"))
    env = await next_of(first, "cam/a/status")
    assert not env.replayed
    bus.subscribe(topics.CAM)  # makes the broker replay to every cam/ subscriber
    again = await next_of(first, "cam/a/status")
    assert again.replayed and again.gap == 0


async def test_gap_detected_from_sequence(bus: BusClient) -> None:
    sub = bus.subscribe(topics.ALERT)
    await settle()
    bus.publish(topics.alert("x"), Alert(text="1"))
    bus._seq[topics.alert("x")] += 3  # as if three were lost on the way
    bus.publish(topics.alert("x"), Alert(text="5"))
    assert (await next_of(sub, "alert/x")).gap == 0
    env = await next_of(sub, "alert/x")
    assert env.gap == 3 and bus.stats.missed == 3


async def test_request_reply(endpoints: Endpoints, bus: BusClient) -> None:
    server = BusClient(endpoints, source="svc")

    async def handler(req: Envelope) -> Message:
        assert isinstance(req.message, Ping)
        return Reply(status="accepted", detail=req.message.payload.upper())

    server.serve("echo", handler)
    try:
        for _ in range(30):  # until the registration reached the broker
            try:
                reply = await bus.request("echo", Ping(payload="hi"), timeout=1)
                break
            except RequestError:
                await asyncio.sleep(0.1)
        assert isinstance(reply.message, Reply) and reply.message.detail == "HI"
        replies = await asyncio.gather(
            *(bus.request("echo", Ping(payload=str(i))) for i in range(20)))
        assert [r.message.detail for r in replies] == [str(i) for i in range(20)]  # type: ignore[union-attr]
    finally:
        await server.close()


async def test_request_to_unknown_service_fails_at_once(bus: BusClient) -> None:
    with pytest.raises(RequestError, match='no service "nobody"'):
        await bus.request("nobody", Ping(), timeout=5)


async def test_silent_service_times_out(endpoints: Endpoints, bus: BusClient) -> None:
    server = BusClient(endpoints, source="slow")

    async def never(req: Envelope) -> Message:
        await asyncio.sleep(60)
        return Reply()

    server.serve("slow", never)
    await asyncio.sleep(0.3)
    try:
        with pytest.raises(RequestTimeout, match="no reply from slow within 0.5 s"):
            await bus.request("slow", Ping(), timeout=0.5)
    finally:
        await server.close()


async def test_handler_error_is_a_reply(endpoints: Endpoints, bus: BusClient) -> None:
    server = BusClient(endpoints, source="bad")

    async def broken(req: Envelope) -> Message:
        raise ValueError("boom")

    server.serve("bad", broken)
    await asyncio.sleep(0.3)
    try:
        reply = await bus.request("bad", Ping())
        assert isinstance(reply.message, Reply)
        assert reply.message.status == "error" and "boom" in reply.message.detail
    finally:
        await server.close()


frames_strategy = st.lists(st.binary(max_size=40), min_size=0, max_size=5)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.lists(frames_strategy, min_size=1, max_size=20))
def test_random_frames_do_not_stop_broker_or_subscriber(
        junk: list[list[bytes]], endpoints: Endpoints, broker: Broker) -> None:
    async def scenario() -> None:
        client = BusClient(endpoints, source="fuzz")
        sub = client.subscribe("")
        raw: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUB)
        raw.connect(endpoints.pub)
        router: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        router.connect(endpoints.router)
        try:
            await asyncio.sleep(0.2)
            for frames in junk:
                if frames:
                    raw.send_multipart(frames)
                    router.send_multipart(frames)
            # Garbage that looks like an envelope reaches the subscriber, which drops it.
            raw.send_multipart([b"cam/x/status", msgpack.packb(["cam.status", 1, "f", 1, 1]),
                                msgpack.packb({"fps": "fast"})])
            client.publish(topics.alert("fuzz"), Alert(text="still here"))
            env = await next_of(sub, "alert/fuzz")
            assert isinstance(env.message, Alert) and env.message.text == "still here"
        finally:
            raw.close(0)
            router.close(0)
            await client.close()

    asyncio.run(scenario())
