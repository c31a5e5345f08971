"""WHEP on mutated offers: 201, or a 4xx whose one-line body says what is wrong; no traceback.

The handler is the real one (UplinkHttp, SessionManager, aiortc) on a real
socket, fed a real Chromium offer with lines dropped, fields and numbers
mangled, huge and negative ports, and garbage bytes. After every 201 the test
waits until the session's ICE checks have reached the offer's last candidate,
a UDP socket of its own: by then every candidate of the offer has been tried,
which is when a bad one used to blow up in the log (port 70000 sent to
``sendto``). Each session is then ended with DELETE.

Safety: ICE sends to the offer's candidates, so the seed's candidates are on
127.0.0.1 and an example whose mutations made any other usable address (or an
mDNS name, resolved by multicast) is discarded before it is sent.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import zmq
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from edge.bus.endpoints import Endpoints
from edge.bus.messages import CameraStatus, CameraStream
from edge.config import parse_config
from edge.uplink.session import SessionManager
from edge.uplink.state import UplinkState
from edge.uplink.whep import UplinkHttp
from tests.support.uplink import TOKEN

pytestmark = pytest.mark.timeout(180)
T = TypeVar("T")

INTERNALS = re.compile(r"Error:|Traceback|NoneType|StopIteration|not in list|"
                       r"object has no attribute")
CHROMIUM = (Path(__file__).parent / "data" / "chromium-156-offer.sdp").read_text()
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/sdp"}
MDNS = re.compile(r"^[a-zA-Z0-9-]{1,63}\.local$")
# Long enough for aiortc to gather and start its checks on a loaded 2-core machine;
# only ever waited out when no check comes (no non-loopback interface to send from).
ICE_CHECK_WAIT_S = 10.0


def seed_offer(target_port: int, witness_port: int) -> str:
    """The Chromium offer with its mDNS candidates swapped for loopback ones.

    The first candidate is the one mutations aim at; the witness, priority 1,
    is checked after every other candidate.
    """
    lines = [line for line in CHROMIUM.split("\n") if not line.startswith("a=candidate:")]
    at = next(i for i, line in enumerate(lines) if line.startswith("a=ice-ufrag:"))
    lines[at:at] = [
        f"a=candidate:1 1 udp 2113937151 127.0.0.1 {target_port} typ host generation 0",
        f"a=candidate:2 1 udp 1 127.0.0.1 {witness_port} typ host generation 0"]
    return "\r\n".join(line.rstrip("\r") for line in lines if line) + "\r\n"


# --------------------------------------------------------------------------- mutations

BAD_NUMBERS = ["0", "-1", "-5", "65536", "70000", "99999999999999999999", "", "x", "128",
               "256", "1.5", "0x10"]
# Addresses a mutation may give the target candidate: loopback or not an address at all.
ADDRESSES = ["127.0.0.1", "::1", "127.0.0.2", "999.1.1.1", "1.2.3", "::zz", "localhost",
             "not_an_address", "", "127.0.0.1.1", "[::1]", "0x7f000001"]
FIELD_TEXT = st.one_of(st.sampled_from(BAD_NUMBERS + ["typ", "udp", "tcp", "*", ":", "/", "=",
                                                      "H264/90000", "apt=", "host", "relay"]),
                       st.text(max_size=12))


@dataclass
class Mutation:
    kind: str
    line: int
    value: str = ""

    def apply(self, lines: list[str]) -> list[str]:
        i = self.line % len(lines) if lines else 0
        if not lines:
            return lines
        target = lines[i]
        if self.kind == "drop":
            return lines[:i] + lines[i + 1:]
        if self.kind == "duplicate":
            return lines[:i + 1] + lines[i:]
        if self.kind == "number" and not target.startswith("a=candidate:"):
            return lines[:i] + [re.sub(r"\d+", self.value, target, count=1)] + lines[i + 1:]
        if self.kind == "field" and not target.startswith("a=candidate:"):
            fields = target.split(" ")
            fields[self.line % len(fields)] = self.value
            return lines[:i] + [" ".join(fields)] + lines[i + 1:]
        if self.kind in ("port", "address", "priority", "component"):
            out = list(lines)
            j = next((k for k, line in enumerate(out) if line.startswith("a=candidate:1 ")), -1)
            if j < 0:
                return out  # an earlier mutation dropped it
            fields = out[j].split(" ")
            fields[{"port": 5, "address": 4, "priority": 3, "component": 1}[self.kind]] = \
                self.value
            out[j] = " ".join(fields)
            return out
        if self.kind == "truncate":  # the offer ends half way through this line
            return lines[:i] + [target[:len(target) // 2]]
        return lines


MUTATIONS = st.one_of(
    st.builds(Mutation, st.sampled_from(["drop", "duplicate", "truncate"]), st.integers(0, 400)),
    st.builds(Mutation, st.just("number"), st.integers(0, 400), st.sampled_from(BAD_NUMBERS)),
    st.builds(Mutation, st.just("field"), st.integers(0, 400), FIELD_TEXT),
    st.builds(Mutation, st.just("port"), st.just(0), st.sampled_from(BAD_NUMBERS + ["9", "1"])),
    st.builds(Mutation, st.just("address"), st.just(0), st.sampled_from(ADDRESSES)),
    st.builds(Mutation, st.sampled_from(["priority", "component"]), st.just(0),
              st.sampled_from(BAD_NUMBERS + ["1", "257"])),
)


@st.composite
def offers(draw: st.DrawFn, seed: str) -> bytes:
    lines = seed.rstrip("\r\n").split("\r\n")
    for mutation in draw(st.lists(MUTATIONS, min_size=1, max_size=3)):
        lines = mutation.apply(lines)
    body = ("\r\n".join(lines) + "\r\n").encode()
    if draw(st.booleans()) and draw(st.booleans()):  # a quarter get garbage bytes too
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.binary(min_size=1, max_size=8)) + body[at:]
    return body


def reaches_only_loopback(body: bytes) -> bool:
    """No candidate that ICE could send to off this machine, nor an mDNS name to resolve."""
    for line in body.decode("utf-8", "replace").splitlines():
        if not line.startswith("a=candidate:"):
            continue
        bits = line.split()
        host = bits[4] if len(bits) > 4 else ""
        if MDNS.match(host):
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            continue
        if not address.is_loopback:
            return False
    return True


# --------------------------------------------------------------------------- the bench

class Bench:
    """The real WHEP app on a real socket, in an event loop of the test's own."""

    def __init__(self, tmp: Path) -> None:
        self.loop = asyncio.new_event_loop()
        config = parse_config({"cameras": [{"id": "gate", "name": "Gate",
                                            "main": "rtsp://127.0.0.1:1/gate/main"}]})
        self.state = UplinkState(config)
        self.manager = SessionManager(config.uplink, self.state, zmq.Context.instance(),
                                      Endpoints("ipc://a", "ipc://b", "ipc://c", tmp))
        self.state.sessions = self.manager.to_json
        self.http = UplinkHttp(self.manager, self.state, TOKEN.encode(), [])
        cam = self.state.cameras["gate"]
        cam.status = CameraStatus(camera_id="gate", state="live", codec="h264")
        self.fresh_status()
        cam.streams["main"] = CameraStream(camera_id="gate", profile="main", codec="h264",
                                           profile_level_id="42c01f",
                                           endpoint="ipc:///nonexistent/media.sock")
        self.server = TestServer(self.http.app, host="127.0.0.1")
        self.run(self.server.start_server())
        self.client = self.run(self._session())
        # The target candidate's port and the witness: UDP sockets that never answer.
        self.target = self._udp()
        self.witness = self._udp()
        self.seed = seed_offer(self.target.getsockname()[1], self.witness.getsockname()[1])
        self.witness_line = next(line for line in self.seed.split("\r\n")
                                 if line.startswith("a=candidate:2 "))
        # Whether to wait for the witness: not on a machine where no check ever came.
        self.ice_checks_seen = True
        self.ever_heard = False

    def fresh_status(self) -> None:
        """As if the camera service had just reported: the camera stays live for the uplink."""
        self.state.cameras["gate"].status_mono = time.monotonic()

    async def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    def _udp(self) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        return s

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def drain(self) -> None:
        for s in (self.target, self.witness):
            while True:
                try:
                    s.recv(4096)
                except BlockingIOError:
                    break

    async def post(self, body: bytes) -> tuple[int, str, str | None]:
        async with self.client.post(self.server.make_url("/whep/gate"), data=body,
                                    headers=HEADERS) as r:
            return r.status, await r.text(errors="replace"), r.headers.get("Location")

    async def ice_reached_witness(self) -> bool:
        try:
            await asyncio.wait_for(self.loop.sock_recv(self.witness, 4096), ICE_CHECK_WAIT_S)
            return True
        except TimeoutError:
            return False

    async def delete(self, location: str) -> int:
        async with self.client.delete(self.server.make_url(location),
                                      headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            return r.status

    def close(self) -> None:
        self.http.stopping.set()
        self.run(self.manager.close_all())
        self.run(self.client.close())
        self.run(self.server.close())
        self.target.close()
        self.witness.close()
        # aiortc leaves a closed connection's tasks to finish on their own.
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        self.run(_settle(pending))
        self.loop.close()


async def _settle(tasks: set[asyncio.Task[object]]) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)


@contextmanager
def bench(tmp: Path) -> Iterator[Bench]:
    b = Bench(tmp)
    try:
        yield b
    finally:
        b.close()


def exchange(b: Bench, body: bytes) -> tuple[int, str]:
    """POST `body`; after a 201, let ICE try every candidate, then DELETE the session."""
    b.fresh_status()
    b.drain()
    status, text, location = b.run(b.post(body))
    if status == 201:
        assert location, "a 201 without a Location"
        if b.ice_checks_seen and f"{b.witness_line}\r\n" in body.decode("utf-8", "replace"):
            heard = b.run(b.ice_reached_witness())
            b.ever_heard = b.ever_heard or heard
            b.ice_checks_seen = b.ever_heard
        assert b.run(b.delete(location)) == 200
    return status, text


def assert_operator_answer(status: int, text: str) -> None:
    if status == 201:
        return
    assert 400 <= status < 500, (status, text)
    assert text.endswith("\n") and text.count("\n") == 1, repr(text)
    assert not INTERNALS.search(text), text


def assert_no_traceback(caplog: pytest.LogCaptureFixture, since: int) -> None:
    for record in caplog.records[since:]:
        assert record.exc_info is None and "Traceback" not in record.getMessage(), \
            f"{record.name}: {record.getMessage()}\n{caplog.text[-3000:]}"


# --------------------------------------------------------------------------- the tests

def test_mutated_offers_get_201_or_a_reason(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with bench(tmp_path) as b:
        status, _ = exchange(b, b.seed.encode())
        assert status == 201, "the unmutated seed must be answered"

        @settings(max_examples=60, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture,
                                         HealthCheck.too_slow, HealthCheck.filter_too_much])
        @given(body=offers(b.seed))
        @example(body=b.seed.replace(f" {b.target.getsockname()[1]} typ",
                                     " 70000 typ").encode())
        @example(body=b.seed.replace("a=rtpmap:102 H264/90000\r\n", "").encode())
        def check(body: bytes) -> None:
            assume(reaches_only_loopback(body))
            since = len(caplog.records)
            status, text = exchange(b, body)
            assert_operator_answer(status, text)
            assert_no_traceback(caplog, since)

        check()


@pytest.mark.parametrize(("change", "words"), [
    (lambda o, p: o.replace(f" {p} typ", " 70000 typ"), ["candidate", "70000"]),
    (lambda o, p: o.replace(f" {p} typ", " -1 typ"), ["candidate", "-1"]),
    (lambda o, p: o.replace(f"127.0.0.1 {p}", f"999.1.1.1 {p}"), ["candidate", "999.1.1.1"]),
    (lambda o, p: o.replace("a=rtpmap:102 H264/90000\r\n", ""), ["102", "rtpmap"]),
    (lambda o, p: o.replace("m=video", "x=video"), ["no video"]),
    (lambda o, p: o.replace("a=setup:actpass", "a=setup:sideways"), ["a=setup", "sideways"]),
    (lambda o, p: o.replace("a=fmtp:103 apt=102", "a=fmtp:103 apt=x"), ["apt", "103"]),
])
def test_bad_offers_are_refused_naming_what_is_wrong(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, change: Callable[[str, int], str],
        words: list[str]) -> None:
    caplog.set_level(logging.INFO)
    with bench(tmp_path) as b:
        body = change(b.seed, b.target.getsockname()[1])
        assert body != b.seed
        status, text = exchange(b, body.encode())
    assert status == 400, (status, text)
    assert_operator_answer(status, text)
    assert all(w in text for w in words), text
    assert_no_traceback(caplog, 0)


@pytest.mark.parametrize("content_type", ["application/sdp; charset=no-such-charset",
                                          "application/sdp; charset=latin-1"])
def test_a_charset_parameter_does_not_matter(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                             content_type: str) -> None:
    # SDP is UTF-8 whatever the request says; aiohttp's own decoding of an unknown
    # charset used to be a 500 with a traceback in the log.
    with bench(tmp_path) as b:
        b.fresh_status()

        async def post() -> tuple[int, str]:
            async with b.client.post(b.server.make_url("/whep/gate"), data=b.seed.encode(),
                                     headers={**HEADERS, "Content-Type": content_type}) as r:
                if r.status == 201:
                    assert await b.delete(r.headers["Location"]) == 200
                return r.status, await r.text()

        status, text = b.run(post())
    assert status == 201, text
    assert_no_traceback(caplog, 0)
