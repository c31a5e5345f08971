"""A simulated GB/T 28181 device (a 5G dome camera, 布控球): the SIP user agent side.

It registers to a platform (REGISTER, the platform's 401, REGISTER again with the
MD5 digest; again before the registration expires), sends a Keepalive MESSAGE
every `keepalive_s`, answers Catalog (its channels, GB2312), DeviceInfo and
DeviceStatus queries with MESSAGEs of its own, takes DeviceControl PTZCmd for a
channel (the picture moves: see `media`) and IFameCmd (its streams of that channel
send a keyframe next), and answers INVITE for live video with 200 + SDP, then sends
PS over RTP (UDP, or TCP connecting or listening per the offer's `a=setup`) from the
ACK until BYE: the platform's, or its own (`hang_up()`, as a device that stops
streaming does).

All SIP goes to and comes from the one platform address, over UDP or one TCP
connection the device opens, as a device behind a carrier NAT does. Wrong
credentials are fatal (`GbDeviceError`, one line): a simulator with a wrong
password is a configuration mistake to report, not to retry forever. A platform
that does not answer is retried every `retry_s`, as a real device does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from drivers.gb28181 import manscdp
from drivers.gb28181.digest import DigestError, authorization, parse_params
from drivers.gb28181.gb_sdp import SdpError, answer_to, parse_offer
from drivers.gb28181.manscdp import Channel, ManscdpError
from drivers.gb28181.ptz_cmd import PtzCmd, PtzCmdError
from drivers.gb28181.sip_message import (
    Headers,
    NameAddr,
    SipParseError,
    SipRequest,
    SipResponse,
    new_branch,
    new_tag,
    response_to,
    uri_user,
)
from drivers.gb28181.sip_transport import Peer, SipTransport, SipTransportError
from drivers.rtsp.annexb import Codec
from drivers.sim.gb28181.media import ChannelVideo, MediaEndpoint, MediaStream

log = logging.getLogger(__name__)

T1 = 0.5
T2 = 4.0
USER_AGENT = "edge-sim-gb28181"
MANUFACTURER = "edge"
MODEL = "sim-gb28181"
FIRMWARE = "1.0"


class GbDeviceError(Exception):
    """The platform refused the device (or cannot be used); `str()` is one line."""


def parse_platform(text: str) -> Peer:
    """`udp:HOST:PORT` or `tcp:HOST:PORT` (an IPv6 host in brackets) as a `Peer`."""
    transport, sep, rest = text.partition(":")
    host, _, port_text = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or transport not in ("udp", "tcp") or not host or not port_text.isdigit() \
            or not 0 < int(port_text) < 65536:
        raise ValueError(f"expected udp:HOST:PORT or tcp:HOST:PORT, got {text!r}")
    return Peer("udp" if transport == "udp" else "tcp", host, int(port_text))


def check_id(device_id: str, what: str = "device id") -> str:
    if len(device_id) != 20 or not device_id.isdigit():
        raise ValueError(f"{what} must be 20 digits (GB/T 28181), got {device_id!r}")
    return device_id


def channel_ids(device_id: str, count: int) -> list[str]:
    """Channel ids as dome cameras number them: the device's domain, type 131 (camera), n."""
    return [f"{device_id[:10]}131{n:07d}" for n in range(1, count + 1)]


@dataclass
class _Session:
    call_id: str
    channel_id: str
    local_tag: str
    remote: str  # the platform's From (with its tag): our To in a BYE
    remote_target: str
    endpoint: MediaEndpoint
    offer_host: str
    offer_port: int
    ssrc: int
    cseq: int = 0
    stream: MediaStream | None = None
    task: asyncio.Task[None] | None = None
    answer_task: asyncio.Task[None] | None = None


@dataclass
class DeviceCounters:
    registers: int = 0  # successful registrations (and refreshes)
    keepalives: int = 0  # keepalives the platform accepted
    queries: dict[str, int] = field(default_factory=dict)  # answered, by CmdType
    ptz_commands: int = 0
    invites: int = 0  # answered 200
    keyframe_requests: int = 0  # IFameCmd taken
    byes_received: int = 0  # the platform's BYEs that ended a session of ours
    byes_sent: int = 0  # our own (hang_up(), a receiver gone, closing)


class SimGbDevice:
    """One simulated device; `run()` until cancelled, or `start()` ... `close()`."""

    def __init__(self, device_id: str, platform: Peer, *, password: str,
                 platform_id: str | None = None, channels: int = 2,
                 keepalive_s: float = 60.0, expires: int = 3600, codec: Codec = "h264",
                 name: str = "布控球", local_host: str = "0.0.0.0", t1: float = T1,
                 retry_s: float = 5.0) -> None:
        self.device_id = check_id(device_id)
        self.platform = platform
        self.platform_id = check_id(platform_id or f"{device_id[:10]}2000000001",
                                    "platform id")
        self.realm = self.platform_id[:10]
        self.password = password
        if not 1 <= channels <= 99:
            raise ValueError(f"channels must be 1..99, got {channels}")
        if not keepalive_s > 0:
            raise ValueError(f"keepalive interval must be more than 0 s, got {keepalive_s:g}")
        self.keepalive_s = keepalive_s
        self.expires = expires
        self.name = name
        self.local_host = local_host
        self.t1 = t1
        self.retry_s = retry_s
        self.channels = [Channel(cid, f"{name}通道{n}", status="ON", manufacturer=MANUFACTURER,
                                 model=MODEL, parent_id=device_id)
                         for n, cid in enumerate(channel_ids(device_id, channels), 1)]
        self.video = {c.channel_id: ChannelVideo(f"{device_id[-4:]} ch{n}", codec=codec)
                      for n, c in enumerate(self.channels, 1)}
        self.registered = False
        self.counters = DeviceCounters()
        self.sessions: dict[str, _Session] = {}
        """Media sessions by Call-ID (answered; streaming once ACKed)."""
        self.transport = SipTransport(self._received, self._bad_input)
        self._call_id = f"{secrets.token_hex(8)}@{device_id}"
        self._from_tag = new_tag()
        self._cseq = itertools.count(1)
        self._sn = itertools.count(1)
        self._client: dict[str, asyncio.Future[SipResponse]] = {}
        self._answered: dict[tuple[str, int, str], SipResponse] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- life ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the SIP socket and start the channels' first encode (no registration yet)."""
        udp = self.platform.transport == "udp"
        # TCP: a listener only so that Via and Contact carry a port; the platform answers on
        # the connection we open.
        await self.transport.start(self.local_host, 0, udp=udp, tcp=not udp)
        for video in self.video.values():
            self._spawn(video.refresh())

    async def run(self) -> None:
        """Register, then keep alive and re-register until cancelled; `GbDeviceError` if
        the platform refuses the credentials."""
        await self.start()
        try:
            await self._registered_life()
        finally:
            await self.close()

    async def _registered_life(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expires = await self._register_until_accepted()
            now = loop.time()
            # Re-register at 80% of the time granted, well before the platform drops us.
            refresh_at = now + max(1.0, 0.8 * expires)
            missed = 0
            next_keepalive = now + self.keepalive_s
            while self.registered and loop.time() < refresh_at:
                await asyncio.sleep(max(0.0, min(next_keepalive, refresh_at) - loop.time()))
                if loop.time() < next_keepalive:
                    continue
                next_keepalive = loop.time() + self.keepalive_s
                status = await self._keepalive()
                if status == 200:
                    missed = 0
                elif status is None:
                    missed += 1
                    # The standard's 3 missed keepalives: the platform is gone; register anew.
                    if missed >= 3:
                        log.warning("%s: %d keepalives unanswered; registering again",
                                    self.device_id, missed)
                        self.registered = False
                else:
                    log.info("%s: platform answered a keepalive %d; registering again",
                             self.device_id, status)
                    self.registered = False

    async def _register_until_accepted(self) -> int:
        while True:
            try:
                return await self.register()
            except (TimeoutError, SipTransportError) as exc:
                self.registered = False
                log.warning("%s: no registration with %s (%s); trying again in %g s",
                            self.device_id, self.platform, exc or "no answer", self.retry_s)
                await asyncio.sleep(self.retry_s)

    async def close(self) -> None:
        """Stop every stream, end their dialogs and unregister, each briefly; close the socket."""
        for session in list(self.sessions.values()):
            await self._end(session, send_bye=True)
        if self.registered:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._authenticated_register(0), 2.0)
                log.info("%s: unregistered from %s", self.device_id, self.platform)
            self.registered = False
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.transport.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("%s: %s", self.device_id, task.exception())

    def _bad_input(self, reason: str, peer: Peer) -> None:
        log.warning("%s: bad SIP from %s: %s", self.device_id, peer, reason)

    # -- client transactions ---------------------------------------------------------------

    def _local(self) -> tuple[str, int]:
        return self.transport.local_address(self.platform)

    def _request(self, method: str, *, to_user: str | None = None, body: bytes = b"",
                 content_type: str | None = None, call_id: str | None = None,
                 from_tag: str | None = None, cseq: int | None = None) -> SipRequest:
        host, port = self._local()
        headers = Headers()
        headers.add("Via", f"SIP/2.0/{self.platform.transport.upper()} {host}:{port};rport;"
                           f"branch={new_branch()}")
        headers.add("From", f"<sip:{self.device_id}@{self.realm}>;"
                            f"tag={from_tag or new_tag()}")
        headers.add("To", f"<sip:{to_user or self.platform_id}@{self.realm}>")
        headers.add("Call-ID", call_id or f"{secrets.token_hex(10)}@{host}")
        headers.add("CSeq", f"{cseq if cseq is not None else next(self._cseq)} {method}")
        headers.add("Max-Forwards", "70")
        headers.add("User-Agent", USER_AGENT)
        if content_type is not None:
            headers.add("Content-Type", content_type)
        return SipRequest(method, f"sip:{self.platform_id}@{self.realm}", headers, body)

    async def _transact(self, request: SipRequest) -> SipResponse:
        """A non-INVITE client transaction (RFC 3261 §17.1.2); TimeoutError after 64·T1."""
        branch = request.vias[0].branch or ""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[SipResponse] = loop.create_future()
        self._client[branch] = future
        deadline = loop.time() + 64 * self.t1
        interval = self.t1
        try:
            await self.transport.send(request, self.platform)
            while True:
                wait = deadline - loop.time()
                if wait <= 0:
                    raise TimeoutError(f"no answer to {request.method} within "
                                       f"{64 * self.t1:g} s")
                if self.platform.transport == "udp":
                    wait = min(wait, interval)
                with contextlib.suppress(TimeoutError):
                    # Not wait_for: on Python 3.11 it can swallow the cancel that stops us.
                    async with asyncio.timeout(wait):
                        response = await asyncio.shield(future)
                    if response.status >= 200:
                        return response
                    future = loop.create_future()  # a provisional: wait for the final
                    self._client[branch] = future
                    interval = T2
                    continue
                if self.platform.transport == "udp":
                    await self.transport.send(request, self.platform)
                    interval = min(2 * interval, T2)
        finally:
            self._client.pop(branch, None)

    # -- registration ----------------------------------------------------------------------

    async def register(self) -> int:
        """REGISTER, answer the challenge; the seconds granted. `GbDeviceError` if refused."""
        response = await self._authenticated_register(self.expires)
        granted = self.expires
        with contextlib.suppress(ValueError):
            granted = int(response.headers.get("Expires") or self.expires)
        if not self.registered:
            log.info("%s: registered to %s for %d s", self.device_id, self.platform, granted)
        self.registered = True
        self.counters.registers += 1
        return granted

    async def _authenticated_register(self, expires: int) -> SipResponse:
        """REGISTER with `expires` (0: unregister) through the 401 challenge; its 200."""
        response = await self._send_register(expires, None)
        if response.status == 401:
            challenge = response.headers.get("WWW-Authenticate")
            if challenge is None:
                raise GbDeviceError(f"platform {self.platform} answered 401 without a "
                                    "WWW-Authenticate challenge")
            response = await self._send_register(expires, challenge)
            if response.status == 401:
                try:
                    stale = parse_params(response.header("WWW-Authenticate")).get(
                        "stale", "").lower() == "true"
                except (DigestError, SipParseError):
                    stale = False
                if stale:  # the nonce aged between the two: one more go with the fresh one
                    response = await self._send_register(
                        expires, response.header("WWW-Authenticate"))
            if response.status == 401:
                raise GbDeviceError(
                    f"platform {self.platform} refused device {self.device_id}: wrong "
                    "password (digest rejected with 401)")
        if response.status != 200:
            why = "wrong password or unknown device" if response.status == 403 else \
                "registration refused"
            raise GbDeviceError(f"platform {self.platform} refused device {self.device_id}: "
                                f"{response.status} {response.reason} ({why})")
        return response

    async def _send_register(self, expires: int, challenge: str | None) -> SipResponse:
        request = self._request("REGISTER", to_user=self.device_id, call_id=self._call_id,
                                from_tag=self._from_tag)
        request.uri = f"sip:{self.platform_id}@{self.realm}"
        host, port = self._local()
        request.headers.add("Contact", f"<sip:{self.device_id}@{host}:{port}>")
        request.headers.add("Expires", str(expires))
        if challenge is not None:
            request.headers.add("Authorization", self._authorization(challenge, request.uri))
        return await self._transact(request)

    def _authorization(self, challenge: str, uri: str) -> str:
        try:
            return authorization(challenge, username=self.device_id, password=self.password,
                                 method="REGISTER", uri=uri)
        except DigestError as exc:
            raise GbDeviceError(f"platform {self.platform} sent a challenge we cannot "
                                f"answer: {exc}") from None

    # -- MESSAGEs of our own ---------------------------------------------------------------

    async def _keepalive(self) -> int | None:
        """Send one Keepalive; the platform's status, None if it did not answer."""
        body = manscdp.keepalive(next(self._sn), self.device_id)
        try:
            response = await self._transact(self._request(
                "MESSAGE", body=body, content_type=manscdp.CONTENT_TYPE))
        except (TimeoutError, SipTransportError):
            return None
        if response.status == 200:
            self.counters.keepalives += 1
        return response.status

    async def _send_message(self, body: bytes, what: str) -> None:
        try:
            response = await self._transact(self._request(
                "MESSAGE", body=body, content_type=manscdp.CONTENT_TYPE))
        except (TimeoutError, SipTransportError) as exc:
            log.info("%s: %s not delivered: %s", self.device_id, what, exc)
            return
        if response.status != 200:
            log.info("%s: platform answered our %s with %d %s", self.device_id, what,
                     response.status, response.reason)

    # -- incoming --------------------------------------------------------------------------

    def _received(self, message: SipRequest | SipResponse, peer: Peer) -> None:
        if isinstance(message, SipResponse):
            vias = message.vias
            future = self._client.get(vias[0].branch or "") if vias else None
            if future is not None and not future.done():
                future.set_result(message)
            return
        key = (message.call_id, message.cseq[0], message.method)
        if message.method != "ACK" and key in self._answered:
            self._reply(self._answered[key])  # a retransmission: the same answer again
            return
        response = self._handle(message)
        if response is not None:
            if len(self._answered) > 1000:
                del self._answered[next(iter(self._answered))]
            self._answered[key] = response
            self._reply(response)

    def _reply(self, response: SipResponse) -> None:
        self._spawn(self._send_quietly(response))

    async def _send_quietly(self, message: SipRequest | SipResponse) -> None:
        try:
            await self.transport.send(message, self.platform)
        except SipTransportError as exc:
            log.info("%s: %s", self.device_id, exc)

    def _handle(self, request: SipRequest) -> SipResponse | None:
        if request.method == "MESSAGE":
            return self._message(request)
        if request.method == "INVITE":
            # 100 at once (stops the platform's retransmissions; a retransmission meanwhile
            # gets it again), the 200 once the media socket is open.
            self._spawn(self._invite(request))
            return response_to(request, 100)
        if request.method == "ACK":
            session = self.sessions.get(request.call_id)
            if session is not None and session.task is None:
                if session.answer_task is not None:
                    session.answer_task.cancel()
                session.task = self._spawn(self._stream(session))
            return None
        if request.method == "BYE":
            session = self.sessions.get(request.call_id)
            if session is None:
                return response_to(request, 481)
            log.info("%s: platform ended the stream of %s", self.device_id, session.channel_id)
            self.counters.byes_received += 1
            self._spawn(self._end(session, send_bye=False))
            return response_to(request, 200)
        if request.method == "OPTIONS":
            return response_to(request, 200, to_tag=new_tag())
        return response_to(request, 501, to_tag=new_tag())

    def _message(self, request: SipRequest) -> SipResponse:
        if "manscdp" not in request.content_type:
            return response_to(request, 415, to_tag=new_tag())
        try:
            body = manscdp.parse(request.body)
        except ManscdpError as exc:
            log.info("%s: unreadable MANSCDP from the platform: %s", self.device_id, exc)
            return response_to(request, 400, "Bad Request", to_tag=new_tag())
        if body.root == "Query" and body.cmd_type in ("Catalog", "DeviceInfo", "DeviceStatus"):
            answer_body = self._query_answer(body.cmd_type, body.sn)
            self.counters.queries[body.cmd_type] = self.counters.queries.get(body.cmd_type,
                                                                             0) + 1
            # The 200 first, then the answer as our own MESSAGE (§9.5), as devices do.
            self._spawn(self._send_message(answer_body, f"{body.cmd_type} response"))
            return response_to(request, 200, to_tag=new_tag())
        if body.root == "Control" and body.cmd_type == "DeviceControl":
            return self._device_control(request, body)
        return response_to(request, 200, to_tag=new_tag())  # acknowledged, not simulated

    def _query_answer(self, cmd_type: str, sn: int) -> bytes:
        if cmd_type == "Catalog":
            return manscdp.catalog_response(sn, self.device_id, len(self.channels),
                                            self.channels)
        if cmd_type == "DeviceInfo":
            return manscdp.build("Response", "DeviceInfo", sn, self.device_id, [
                ("DeviceName", self.name), ("Result", "OK"), ("Manufacturer", MANUFACTURER),
                ("Model", MODEL), ("Firmware", FIRMWARE), ("Channel", str(len(self.channels)))])
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        return manscdp.build("Response", "DeviceStatus", sn, self.device_id, [
            ("Result", "OK"), ("Online", "ONLINE"), ("Status", "OK"), ("Encode", "ON"),
            ("Record", "OFF"), ("DeviceTime", now)])

    def _device_control(self, request: SipRequest, body: manscdp.Manscdp) -> SipResponse:
        # A command for the device itself means its first channel, as single-lens domes do.
        target = body.device_id if body.device_id in self.video else self.channels[0].channel_id
        if manscdp.keyframe_requested(body):
            if body.device_id not in self.video and body.device_id != self.device_id:
                return response_to(request, 404, "Not Found (no such channel)",
                                   to_tag=new_tag())
            self.counters.keyframe_requests += 1
            for session in self.sessions.values():
                if session.channel_id == target and session.stream is not None:
                    session.stream.force_keyframe()
            log.info("%s: keyframe asked for %s", self.device_id, target)
            return response_to(request, 200, to_tag=new_tag())
        code = body.element.findtext("PTZCmd")
        if code is None:
            return response_to(request, 200, to_tag=new_tag())  # other controls: not simulated
        if body.device_id not in self.video and body.device_id != self.device_id:
            return response_to(request, 404, "Not Found (no such channel)", to_tag=new_tag())
        try:
            command = PtzCmd.decode(code)
        except PtzCmdError as exc:
            log.info("%s: bad PTZCmd from the platform: %s", self.device_id, exc)
            return response_to(request, 400, "Bad Request (bad PTZCmd)", to_tag=new_tag())
        video = self.video[target]
        view = video.apply(command)
        self.counters.ptz_commands += 1
        log.info("%s: PTZ %s on %s: now pan %d tilt %d zoom %d", self.device_id, command.kind,
                 target, view.pan, view.tilt, view.zoom)
        self._spawn(video.refresh())
        return response_to(request, 200, to_tag=new_tag())

    # -- INVITE, media, BYE ----------------------------------------------------------------

    async def _invite(self, request: SipRequest) -> None:
        key = (request.call_id, request.cseq[0], request.method)
        response = await self._invite_response(request)
        self._answered[key] = response
        self._reply(response)
        session = self.sessions.get(request.call_id)
        if session is not None and self.platform.transport == "udp":
            session.answer_task = self._spawn(self._repeat_until_acked(response, session))

    async def _invite_response(self, request: SipRequest) -> SipResponse:
        channel_id = uri_user(request.uri) or request.to.user
        video = self.video.get(channel_id)
        if video is None:
            return response_to(request, 404, "Not Found (no such channel)", to_tag=new_tag())
        try:
            offer = parse_offer(request.body)
        except SdpError as exc:
            log.info("%s: INVITE for %s refused: %s", self.device_id, channel_id, exc)
            return response_to(request, 488, f"Not Acceptable Here ({exc})", to_tag=new_tag())
        host = self._local()[0]
        endpoint = MediaEndpoint(offer.transport, self.local_host)
        try:
            await endpoint.open()
        except OSError as exc:
            return response_to(request, 500, f"Server Internal Error ({exc.strerror})",
                               to_tag=new_tag())
        tag = new_tag()
        contact = request.headers.get("Contact")
        remote_target = NameAddr.parse(contact, "Contact").uri if contact else \
            request.from_.uri
        session = _Session(request.call_id, channel_id, tag, request.header("From"),
                           remote_target, endpoint, offer.host, offer.port,
                           int(offer.ssrc) & 0xFFFFFFFF, cseq=request.cseq[0])
        self.sessions[request.call_id] = session
        self.counters.invites += 1
        log.info("%s: INVITE for %s: PS over %s to %s:%d, SSRC %s", self.device_id, channel_id,
                 offer.transport, offer.host, offer.port, offer.ssrc)
        response = response_to(request, 200, to_tag=tag, content_type="APPLICATION/SDP",
                               body=answer_to(offer, channel_id=channel_id, host=host,
                                           port=endpoint.port))
        local_host, local_port = self._local()
        response.headers.add("Contact", f"<sip:{channel_id}@{local_host}:{local_port}>")
        response.headers.add("User-Agent", USER_AGENT)
        return response

    async def _repeat_until_acked(self, response: SipResponse, session: _Session) -> None:
        """RFC 3261 §13.3.1.4: the 200 again from T1 doubling to T2 until the ACK; without
        one in 64·T1 the session is over."""
        interval = self.t1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 64 * self.t1
        while loop.time() < deadline:
            await asyncio.sleep(interval)
            if session.task is not None:
                return
            await self._send_quietly(response)
            interval = min(2 * interval, T2)
        log.info("%s: no ACK for the stream of %s; dropping it", self.device_id,
                 session.channel_id)
        await self._end(session, send_bye=True)

    async def _stream(self, session: _Session) -> None:
        try:
            send = await session.endpoint.connect(session.offer_host, session.offer_port)
            session.stream = MediaStream(self.video[session.channel_id], session.ssrc)
            log.info("%s: streaming %s", self.device_id, session.channel_id)
            await session.stream.run(send)
        except (OSError, TimeoutError) as exc:
            log.warning("%s: the stream of %s to %s:%d ended: %s", self.device_id,
                        session.channel_id, session.offer_host, session.offer_port,
                        exc.strerror if isinstance(exc, OSError) and exc.strerror else
                        exc or "timed out")
            # The receiver went away: end the dialog too, as a device does.
            self._spawn(self._end(session, send_bye=True))

    async def hang_up(self, channel_id: str | None = None) -> list[int | None]:
        """End our streams of `channel_id` (every one if None) with our own BYE, as a device
        that stops streaming does; the platform's answer to each (None: none came)."""
        ending = [s for s in self.sessions.values()
                  if channel_id is None or s.channel_id == channel_id]
        for session in ending:
            log.info("%s: hanging up the stream of %s", self.device_id, session.channel_id)
        return list(await asyncio.gather(*(self._finish(s, send_bye=True) for s in ending)))

    async def _end(self, session: _Session, *, send_bye: bool) -> None:
        await self._finish(session, send_bye=send_bye)

    async def _finish(self, session: _Session, *, send_bye: bool) -> int | None:
        """Stop a session's stream; with `send_bye`, the platform's answer to our BYE."""
        if self.sessions.pop(session.call_id, None) is None:
            return None
        current = asyncio.current_task()
        for task in (session.task, session.answer_task):
            if task is not None and task is not current:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await session.endpoint.close()
        if not send_bye:
            return None
        session.cseq += 1
        request = self._request("BYE", call_id=session.call_id, cseq=session.cseq,
                                from_tag=session.local_tag)
        request.uri = session.remote_target
        request.headers.set("From", f"<sip:{session.channel_id}@{self.realm}>;"
                                    f"tag={session.local_tag}")
        request.headers.set("To", session.remote)
        self.counters.byes_sent += 1
        try:
            async with asyncio.timeout(2.0):  # not wait_for: it can swallow our cancel
                response = await self._transact(request)
        except Exception as exc:  # closing: a BYE that cannot go must not stop the rest
            log.info("%s: our BYE for %s: %s", self.device_id, session.channel_id,
                     exc or "no answer")
            return None
        return response.status


async def run_sim_gb28181(device_id: str, platform: str, *, password: str,
                          **options: Any) -> None:
    """`edge sim gb28181`: one device until cancelled (`GbDeviceError` if refused)."""
    device = SimGbDevice(device_id, parse_platform(platform), password=password, **options)
    await device.run()
