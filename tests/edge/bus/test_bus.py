"""The broker and client against each other over real ipc sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.bus import broker as broker_module
from edge.bus import envelope, topics
from edge.bus.broker import Broker
from edge.bus.client import BusClient, RequestError, RequestTimeout, Subscription
from edge.bus.endpoints import Endpoints
from edge.bus.envelope import Envelope
from edge.bus.messages import Alert, CameraStatus, CameraStream, Message, Ping, Reply
from tests.support import eventually, running_broker

pytestmark = pytest.mark.timeout(30)


async def joined(pub: BusClient, sub: Subscription, prefix: str = "") -> None:
    """Until `sub` hears `pub` (PUB/SUB subscriptions take a moment: the slow joiner).

    Probes go on a topic under `prefix` that is not state, so nothing is cached.
    """
    probe = f"{prefix}join/probe"

    async def heard() -> None:
        while True:
            pub.publish(probe, Alert(text="probe"))
            try:
                while (await asyncio.wait_for(sub.recv(), 0.1)).topic != probe:
                    pass
                return
            except TimeoutError:
                continue

    await asyncio.wait_for(heard(), 10)


async def answered(bus: BusClient, service: str, within: float = 10.0) -> None:
    """Until the broker routes requests to `service` (it registers once a second)."""
    async def ask() -> None:
        while True:
            try:
                await bus.request(service, Ping(), timeout=0.5)
                return
            except RequestTimeout:
                return  # routed: the service is registered, it just did not answer in time
            except RequestError:
                await asyncio.sleep(0.05)
    await asyncio.wait_for(ask(), within)


async def next_of(sub: Subscription, topic: str, timeout: float = 3.0) -> Envelope:
    async def find() -> Envelope:
        while True:
            env = await sub.recv()
            if env.topic == topic:
                return env
    return await asyncio.wait_for(find(), timeout)


async def test_publish_subscribe_by_prefix(bus: BusClient) -> None:
    cams = bus.subscribe(topics.CAM)
    await joined(bus, cams, topics.CAM)
    bus.publish(topics.alert("x"), Alert(text="not for cams"))
    bus.publish(topics.cam_status("a"), CameraStatus(camera_id="a", state="live"))
    env = await asyncio.wait_for(cams.recv(), 3)
    assert env.topic == "cam/a/status"
    assert isinstance(env.message, CameraStatus) and env.message.state == "live"


async def test_late_subscriber_gets_last_state_at_once(bus: BusClient) -> None:
    early = bus.subscribe("")
    await joined(bus, early)
    for state in ("connecting", "live"):
        bus.publish(topics.cam_status("a"), CameraStatus(camera_id="a", state=state))
    bus.publish(topics.cam_status("b"), CameraStatus(camera_id="b", state="down"))
    bus.publish(topics.alert("a"), Alert(text="events are not cached"))
    await next_of(early, "alert/a")  # everything has passed the broker
    late = bus.subscribe(topics.CAM)
    got: dict[str, str] = {}
    # Each topic's cached state, at once. The publisher also re-sends its own state topics
    # a moment after its first state publish (`REASSERT_AFTER_S`): the same values, which
    # may come in between; a few messages at most.
    for _ in range(6):
        env = await asyncio.wait_for(late.recv(), 3)
        assert isinstance(env.message, CameraStatus)
        got[env.topic] = env.message.state
        if len(got) == 2:
            break
    assert got == {"cam/a/status": "live", "cam/b/status": "down"}
    late_alerts = bus.subscribe(topics.ALERT)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(late_alerts.recv(), 0.5)


async def test_replay_is_marked_not_a_gap(bus: BusClient) -> None:
    first = bus.subscribe(topics.CAM)
    await joined(bus, first, topics.CAM)
    bus.publish(topics.cam_status("a"), CameraStatus(camera_id="a"))
    env = await next_of(first, "cam/a/status")
    assert not env.replayed
    bus.subscribe(topics.CAM)  # makes the broker replay to every cam/ subscriber
    again = await next_of(first, "cam/a/status")
    assert again.replayed and again.gap == 0


async def test_gap_detected_from_sequence(bus: BusClient) -> None:
    sub = bus.subscribe(topics.ALERT)
    await joined(bus, sub, topics.ALERT)
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
    await answered(bus, "slow")
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
    await answered(bus, "bad")
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
            await joined(client, sub)
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


def _header(type_name: str = "alert", source: str = "raw", seq: int = 1) -> bytes:
    packed: bytes = msgpack.packb([type_name, 1, source, seq, 1, 7])
    return packed


async def test_each_kind_of_malformed_message_is_counted(
        endpoints: Endpoints, broker: Broker, bus: BusClient) -> None:
    sub = bus.subscribe("odd/")
    raw: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUB)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(endpoints.pub)
    body = msgpack.packb({"text": "x"})
    bad = [
        [b"odd/one"],                                                   # too few frames
        [b"odd/\xff", _header(), body],                                 # bad topic
        [b"odd/h1", b"\xc1", body],                                     # bad header
        [b"odd/h2", msgpack.packb([1, 2]), body],                        # bad header
        [b"odd/b", _header(), msgpack.packb([1])],                       # bad body
        [b"odd/t", _header("no.such.type"), body],                       # unknown type
        [b"odd/s", _header("cam.status"), msgpack.packb({"fps": "fast"})],  # schema
        [b"odd/x/status", b"\xc1", body],                               # state, bad header
    ]
    end = [b"odd/end", _header(), body]

    async def heard(topic: str) -> None:
        while (await sub.recv()).topic != topic:
            pass

    try:
        async def joined_raw() -> None:
            while True:  # until the raw socket is joined (the slow joiner)
                raw.send_multipart([b"odd/join", _header(), body])
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(heard("odd/join"), 0.2)
        await asyncio.wait_for(joined_raw(), 10)
        for frames in bad:
            raw.send_multipart(frames)
        raw.send_multipart(end)  # one connection keeps order: the rest came before it
        await asyncio.wait_for(heard("odd/end"), 10)
    finally:
        raw.close(0)
    assert bus.stats.malformed == Counter({
        "too few frames": 1, "bad topic": 1, "bad header": 3, "bad body": 1,
        "unknown type": 1, "schema": 1})
    # The broker checks state messages before caching them, and keeps none of these.
    # (Its cache reads a copy of the traffic in its own thread: wait for it.)
    await eventually(lambda: broker.stats.malformed["bad header"], within=10,
                     what="the broker to count the bad state header")
    assert broker.stats.malformed["bad header"] == 1
    assert b"odd/x/status" not in broker.cache


async def test_restarted_publisher_is_heard_at_once(endpoints: Endpoints, bus: BusClient) -> None:
    """A service restarted under the same name counts from 1 again: not a replay."""
    sub = bus.subscribe(topics.CAM)
    first = BusClient(endpoints, source="camera@a")
    try:
        await joined(first, sub, topics.CAM)
        for _ in range(50):
            first.publish(topics.cam_status("a"), CameraStatus(camera_id="a", state="live"))
        seen = 0
        while seen < 50:
            env = await next_of(sub, "cam/a/status")
            assert not env.replayed
            seen += 1
    finally:
        await first.close()
    second = BusClient(endpoints, source="camera@a")
    try:
        async def down() -> Envelope:
            while True:
                second.publish(topics.cam_status("a"), CameraStatus(camera_id="a", state="down"))
                with contextlib.suppress(TimeoutError):
                    return await next_of(sub, "cam/a/status", 0.1)
        env = await asyncio.wait_for(down(), 10)
        assert isinstance(env.message, CameraStatus) and env.message.state == "down"
        assert not env.replayed and env.gap == 0
        assert env.header.epoch == second.epoch != first.epoch
    finally:
        await second.close()


async def test_forged_sequence_does_not_silence_a_source(
        endpoints: Endpoints, bus: BusClient) -> None:
    sub = bus.subscribe(topics.CAM)
    genuine = BusClient(endpoints, source="camera@a")
    raw: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUB)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(endpoints.pub)
    topic = topics.cam_status("a")
    try:
        await joined(genuine, sub, topics.CAM)
        genuine.publish(topic, CameraStatus(camera_id="a", state="live"))
        assert not (await next_of(sub, topic)).replayed
        forged = envelope.encode(topic, CameraStatus(camera_id="a", state="down"), "camera@a",
                                 2**62, epoch=genuine.epoch)

        async def delivered() -> None:
            while True:
                raw.send_multipart(forged)
                with contextlib.suppress(TimeoutError):
                    if (await next_of(sub, topic, 0.1)).header.seq == 2**62:
                        return
        await asyncio.wait_for(delivered(), 10)
        genuine.publish(topic, CameraStatus(camera_id="a", state="live"))
        env = await next_of(sub, topic)
        assert env.header.seq == 2 and not env.replayed
    finally:
        raw.close(0)
        await genuine.close()


async def test_state_is_back_after_a_broker_restart(endpoints: Endpoints) -> None:
    """Announced once (a camera's stream), still known to whoever subscribes after a restart."""
    announcement = CameraStream(camera_id="a", profile="main", codec="h264")
    camera = BusClient(endpoints, source="camera@a")
    try:
        with running_broker(endpoints) as first:
            async def cached() -> None:
                while b"cam/a/main/stream" not in first.cache:
                    camera.publish(topics.cam_stream("a", "main"), announcement)
                    await asyncio.sleep(0.05)
            await asyncio.wait_for(cached(), 10)
        with running_broker(endpoints):
            viewer = BusClient(endpoints, source="uplink")
            try:
                env = await next_of(viewer.subscribe(topics.CAM), "cam/a/main/stream", 10)
                assert env.message == announcement
            finally:
                await viewer.close()
    finally:
        await camera.close()


async def test_subscriptions_come_only_from_subscribers(
        endpoints: Endpoints, broker: Broker, bus: BusClient) -> None:
    """A publisher sending frames that look like subscriptions makes the broker replay nothing."""
    sub = bus.subscribe("")
    await joined(bus, sub)
    bus.publish(topics.cam_status("a"), CameraStatus(camera_id="a"))
    await next_of(sub, "cam/a/status")
    # The broker counts subscriptions in its cache thread, which may not have come to
    # ours yet although messages already flow to it (it failed so in CI once).
    await eventually(lambda: broker.stats.subscriptions >= 1, within=10,
                     what="the broker to count our subscription")
    replayed, subscriptions = broker.stats.replayed, broker.stats.subscriptions
    raw: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.PUB)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(endpoints.pub)
    try:
        async def through() -> None:
            while True:
                for _ in range(100):
                    raw.send(b"\x01")
                    raw.send(b"\x01cam/")
                raw.send_multipart([b"alert/raw", _header(), msgpack.packb({"text": "end"})])
                with contextlib.suppress(TimeoutError):
                    await next_of(sub, "alert/raw", 0.2)
                    return
        await asyncio.wait_for(through(), 10)
        # The broker's cache thread reads a copy of the traffic: once it has seen the
        # last message, it has seen everything the raw socket sent before it.
        seen = broker.stats.forwarded
        raw.send_multipart([b"alert/raw", _header(), msgpack.packb({"text": "end"})])
        await eventually(lambda: broker.stats.forwarded > seen, within=10,
                         what="the broker to see the raw socket's last message")
    finally:
        raw.close(0)
    assert broker.stats.subscriptions == subscriptions
    assert broker.stats.replayed == replayed


async def test_subscription_flood_is_answered_once_per_interval(
        endpoints: Endpoints, broker: Broker, bus: BusClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Long enough that the whole flood falls in one interval on any machine.
    monkeypatch.setattr(broker_module, "REPLAY_EVERY_S", 60.0)
    watcher = bus.subscribe("")
    await joined(bus, watcher)
    bus.publish(topics.cam_status("a"), CameraStatus(camera_id="a"), b"x" * 100_000)
    await next_of(watcher, "cam/a/status")
    before = broker.stats.replayed
    flood: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.XSUB)
    flood.setsockopt(zmq.LINGER, 0)
    flood.connect(endpoints.sub)
    try:
        for _ in range(200):
            flood.send(b"\x01cam/")
            flood.send(b"\x00cam/")
        async def counted() -> None:
            while broker.stats.subscriptions - 0 < 200:
                await asyncio.sleep(0.02)
        await asyncio.wait_for(counted(), 10)
    finally:
        flood.close(0)
    # The first subscription is answered at once; the rest wait for the interval, as one.
    assert broker.stats.replayed - before == 1
    assert list(broker._replay_due) == [b"cam/"]


async def test_oversized_state_is_forwarded_not_cached(broker: Broker, bus: BusClient) -> None:
    sub = bus.subscribe(topics.CAM)
    await joined(bus, sub, topics.CAM)
    big = b"x" * (broker_module.MAX_STATE_BYTES + 1)
    bus.publish(topics.cam_thumbnail("a"), CameraStatus(camera_id="a"), big)
    env = await next_of(sub, "cam/a/thumbnail")
    assert env.blobs == [big]
    await eventually(lambda: broker.stats.malformed["state too large"], within=10,
                     what="the broker to refuse caching the oversized state")
    assert b"cam/a/thumbnail" not in broker.cache
    assert broker.stats.malformed["state too large"] == 1
