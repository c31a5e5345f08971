"""A GB/T 28181 platform: SIP transport + registrar + the platform's own MESSAGE queries.

Devices REGISTER and send Keepalives; the platform asks them for their Catalog,
DeviceInfo and DeviceStatus (a MESSAGE whose 200 only says it arrived: the answer
comes later as the device's own MESSAGE with the same SN) and sends PTZ commands.
Non-INVITE client transactions retransmit over UDP from T1 = 500 ms doubling to
T2 = 4 s and give up after 64·T1 (RFC 3261 §17.1.2); server transactions answer a
retransmitted request with the response already sent (§17.2.2).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from drivers.gb28181 import manscdp
from drivers.gb28181.gb_sdp import Answer, MediaTransport, Offer, SdpError, live_ssrc, parse_answer
from drivers.gb28181.manscdp import Channel, DeviceInfo, DeviceStatus, Manscdp, ManscdpError
from drivers.gb28181.ptz_cmd import PtzCmd
from drivers.gb28181.registrar import Device, DeviceEvent, Registrar
from drivers.gb28181.sip_message import (
    Headers,
    NameAddr,
    SipParseError,
    SipRequest,
    SipResponse,
    new_branch,
    new_tag,
    response_to,
)
from drivers.gb28181.sip_transport import (
    MAX_TCP_CONNECTIONS,
    TCP_IDLE_TIMEOUT,
    Peer,
    SipTransport,
    SipTransportError,
)

log = logging.getLogger(__name__)

T1 = 0.5
T2 = 4.0
QUERY_TIMEOUT = 10.0
"""Seconds a device has to send the answer to a query after accepting it (a Catalog of
many channels comes in several messages)."""
USER_AGENT = "edge-gb28181"
MAX_ANSWERED = 10000
"""Responses kept for retransmitted requests (64·T1 each); a flood cannot grow it further."""


class GbError(Exception):
    """A query or command that did not succeed; `str()` is one line for an operator."""


@dataclass
class _Pending:
    device_id: str
    cmd_type: str
    sn: int
    future: asyncio.Future[object]
    sum_num: int | None = None
    channels: dict[str, Channel] = field(default_factory=dict)


@dataclass
class _ClientTransaction:
    future: asyncio.Future[SipResponse]
    proceeding: bool = False


@dataclass
class MediaSession:
    """A live-video dialog with a device's channel: what we offered and what it answered."""

    device_id: str
    channel_id: str
    peer: Peer
    call_id: str
    local_tag: str
    remote_tag: str
    remote_target: str
    cseq: int
    offer: Offer
    answer: Answer


@dataclass(frozen=True)
class SessionEnded:
    """The device ended a media session (its BYE)."""

    device_id: str
    channel_id: str
    call_id: str


PlatformEvent = DeviceEvent | SessionEnded


class GbPlatform:
    """One SIP listener (UDP and TCP on the same port) serving every device."""

    def __init__(self, *, platform_id: str, realm: str | None = None,
                 password: str | None = None, device_passwords: Mapping[str, str] | None = None,
                 host: str = "0.0.0.0", port: int = 5060, udp: bool = True, tcp: bool = True,
                 on_event: Callable[[PlatformEvent], None] | None = None,
                 keepalive_interval: float = 60.0, keepalive_misses: int = 3,
                 max_auth_failures: int = 3, qop: bool = True, t1: float = T1,
                 transaction_timeout: float | None = None,
                 query_timeout: float = QUERY_TIMEOUT,
                 max_tcp_connections: int = MAX_TCP_CONNECTIONS,
                 tcp_idle_timeout: float | None = TCP_IDLE_TIMEOUT) -> None:
        if len(platform_id) != 20 or not platform_id.isdigit():
            raise ValueError(f"platform id {platform_id!r} is not a 20-digit GB/T 28181 id")
        self.platform_id = platform_id
        # The standard's realm is the SIP domain: the first 10 digits of the id.
        self.realm = realm or platform_id[:10]
        self.host, self.port, self._udp, self._tcp = host, port, udp, tcp
        self.t1 = t1
        self.transaction_timeout = transaction_timeout or 64 * t1
        self.query_timeout = query_timeout
        self.registrar = Registrar(
            realm=self.realm, password=password, device_passwords=device_passwords,
            on_event=on_event, keepalive_interval=keepalive_interval,
            keepalive_misses=keepalive_misses, max_auth_failures=max_auth_failures, qop=qop)
        # A connection a registered device speaks on is never idle: its keepalives may be
        # minutes apart, and the platform can reach it only there.
        self.transport = SipTransport(self._received, self._bad_input,
                                      max_connections=max_tcp_connections,
                                      idle_timeout=tcp_idle_timeout, in_use=self._device_on)
        self.errors: Counter[str] = Counter()
        """Bad input by kind (`sip`, `manscdp`, `unregistered`, `unmatched`)."""
        self.last_error: str | None = None
        self._sn = itertools.count(secrets.randbelow(100000) + 1)
        self._cseq = itertools.count(1)
        self._pending: dict[tuple[str, str, int], _Pending] = {}
        self._client: dict[str, _ClientTransaction] = {}
        self._answered: dict[tuple[Peer, str, str, str, int], tuple[float, SipResponse]] = {}
        self.on_event = on_event
        self.sessions: dict[str, MediaSession] = {}
        """Media sessions by Call-ID."""
        self._ssrc_sequence = itertools.count(secrets.randbelow(10000))
        # ACKs to send again when a 2xx (or a non-2xx) to one of our INVITEs is retransmitted.
        self._acks: dict[tuple[str, int], tuple[float, SipRequest, Peer]] = {}
        # INVITEs given up on, by Call-ID: a 2xx that still comes is ACKed and ended.
        self._abandoned: dict[str, tuple[float, SipRequest, Peer, str, Offer]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    # -- life ------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.transport.start(self.host, self.port, udp=self._udp, tcp=self._tcp)
        self._sweeper = asyncio.create_task(self._sweep())

    @property
    def address(self) -> tuple[str, int]:
        bound = self.transport.udp_address or self.transport.tcp_address
        assert bound is not None, "start() first"
        return bound

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in list(self._tasks):
            task.cancel()
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(GbError("platform closed"))
        await asyncio.gather(*self._tasks, *([self._sweeper] if self._sweeper else []),
                             return_exceptions=True)
        await self.transport.close()

    async def _sweep(self) -> None:
        every = min(1.0, self.registrar.keepalive_interval / 4)
        while True:
            await asyncio.sleep(every)
            self.registrar.sweep()
            loop_now = asyncio.get_running_loop().time()
            for key, (at, _) in list(self._answered.items()):
                if loop_now - at > 64 * self.t1:
                    del self._answered[key]
            for ack_key, (at, _, _) in list(self._acks.items()):
                if loop_now - at > 64 * self.t1:
                    del self._acks[ack_key]
            for call_id, (at, *_) in list(self._abandoned.items()):
                if loop_now - at > 64 * self.t1:
                    del self._abandoned[call_id]

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _device_on(self, peer: Peer) -> bool:
        return any(d.peer == peer for d in self.registrar.devices.values())

    def _bad_input(self, reason: str, peer: Peer, kind: str = "sip") -> None:
        self.errors[kind] += 1
        self.last_error = f"{kind} from {peer}: {reason}"
        # Once per kind at warning; the rest at debug, so a noisy device cannot flood logs.
        level = logging.WARNING if self.errors[kind] == 1 else logging.DEBUG
        log.log(level, "bad %s from %s: %s", kind, peer, reason)

    # -- incoming --------------------------------------------------------------------------

    def _received(self, message: SipRequest | SipResponse, peer: Peer) -> None:
        if isinstance(message, SipResponse):
            self._response(message)
            return
        # Call-ID and CSeq too: an RFC 2543 device sends no branch, or the same one always.
        key = (peer, message.vias[0].branch or "", message.method, message.call_id,
               message.cseq[0])
        answered = self._answered.get(key)
        if answered is not None and message.method != "ACK":
            self._send(answered[1], peer)  # a retransmission: same answer, no new work
            return
        response = self._request(message, peer)
        if response is not None:
            if len(self._answered) >= MAX_ANSWERED:
                del self._answered[next(iter(self._answered))]  # the oldest
            self._answered[key] = (asyncio.get_running_loop().time(), response)
            self._send(response, peer)

    def _send(self, message: SipRequest | SipResponse, peer: Peer) -> None:
        self._spawn(self._send_logged(message, peer))

    async def _send_logged(self, message: SipRequest | SipResponse, peer: Peer) -> None:
        try:
            await self.transport.send(message, peer)
        except SipTransportError as exc:
            log.info("%s", exc)

    def _request(self, request: SipRequest, peer: Peer) -> SipResponse | None:
        _add_received(request, peer)
        if request.method == "REGISTER":
            return self.registrar.register(request, peer)
        if request.method == "MESSAGE":
            return self._message(request, peer)
        if request.method == "OPTIONS":
            return response_to(request, 200, to_tag=new_tag())
        if request.method == "ACK":
            return None
        if request.method == "BYE":
            session = self.sessions.pop(request.call_id, None)
            if session is None:
                return response_to(request, 481)
            log.info("device %s ended the session of channel %s", session.device_id,
                     session.channel_id)
            if self.on_event is not None:
                self.on_event(SessionEnded(session.device_id, session.channel_id,
                                           session.call_id))
            return response_to(request, 200)
        return response_to(request, 501, to_tag=new_tag())

    def _message(self, request: SipRequest, peer: Peer) -> SipResponse:
        device_id = request.from_.user
        device = self.registrar.get(device_id)
        if device is None:
            self._bad_input(f"MESSAGE from unregistered device {device_id or '?'}", peer,
                            "unregistered")
            return response_to(request, 403, "Forbidden (not registered)", to_tag=new_tag())
        if "manscdp" not in request.content_type:
            self._bad_input(f"MESSAGE of type {request.content_type or 'none'}", peer, "manscdp")
            return response_to(request, 415, to_tag=new_tag())
        try:
            body = manscdp.parse(request.body)
            self._manscdp(device, body)
        except ManscdpError as exc:
            self._bad_input(f"device {device_id}: {exc}", peer, "manscdp")
            return response_to(request, 400, "Bad Request", to_tag=new_tag())
        return response_to(request, 200, to_tag=new_tag())

    def _manscdp(self, device: Device, body: Manscdp) -> None:
        if body.root == "Notify" and body.cmd_type == "Keepalive":
            self.registrar.keepalive(device.device_id)
            return
        if body.root != "Response":
            return  # Alarm, MediaStatus and the like: acknowledged, not used yet
        pending = self._pending.get((device.device_id, body.cmd_type, body.sn))
        if pending is None or pending.future.done():
            self.errors["unmatched"] += 1
            log.debug("unmatched %s response SN %d from %s", body.cmd_type, body.sn,
                      device.device_id)
            return
        if body.cmd_type == "Catalog":
            part = manscdp.catalog_of(body)
            pending.sum_num = part.sum_num
            pending.channels.update((c.channel_id, c) for c in part.channels)
            if len(pending.channels) >= part.sum_num:
                channels = list(pending.channels.values())
                self.registrar.set_channels(device.device_id, channels)
                pending.future.set_result(channels)
        elif body.cmd_type == "DeviceInfo":
            info = manscdp.device_info_of(body)
            device.info = info
            pending.future.set_result(info)
        elif body.cmd_type == "DeviceStatus":
            pending.future.set_result(manscdp.device_status_of(body))
        else:
            pending.future.set_result(body)

    def _response(self, response: SipResponse) -> None:
        vias = response.vias
        transaction = self._client.get(vias[0].branch or "") if vias else None
        if transaction is None or transaction.future.done():
            self._late_invite_response(response)
            return
        if response.status < 200:
            transaction.proceeding = True
        else:
            transaction.future.set_result(response)

    def _late_invite_response(self, response: SipResponse) -> None:
        """A final response to an INVITE whose transaction is over: the device sends it
        again until it has our ACK (RFC 3261 §13.3.1.4, §17.2.1). One to an INVITE we
        gave up on starts a session nobody wants: ACK it, then end it."""
        number, method = response.cseq
        if method != "INVITE" or response.status < 200:
            return
        sent = self._acks.get((response.call_id, number))
        if sent is not None:
            self._send(sent[1], sent[2])
        abandoned = self._abandoned.pop(response.call_id, None)
        if abandoned is not None and 200 <= response.status < 300:
            _, request, peer, device_id, offer = abandoned
            session, ack = self._confirm(request, response, device_id, peer, offer)
            log.info("device %s answered an INVITE given up on: ending that session",
                     device_id)
            self._spawn(self._ack_and_bye(session, ack))

    # -- outgoing --------------------------------------------------------------------------

    def _device(self, device_id: str) -> Device:
        device = self.registrar.get(device_id)
        if device is None:
            raise GbError(f"device {device_id} is not registered")
        return device

    def _new_request(self, method: str, device: Device, target_id: str, body: bytes,
                     content_type: str) -> SipRequest:
        peer = device.peer
        host, port = self.transport.local_address(peer)
        headers = Headers()
        headers.add("Via", f"SIP/2.0/{peer.transport.upper()} {host}:{port};rport;"
                           f"branch={new_branch()}")
        headers.add("From", f"<sip:{self.platform_id}@{self.realm}>;tag={new_tag()}")
        headers.add("To", f"<sip:{target_id}@{self.realm}>")
        headers.add("Call-ID", f"{secrets.token_hex(12)}@{host}")
        headers.add("CSeq", f"{next(self._cseq)} {method}")
        headers.add("Max-Forwards", "70")
        headers.add("User-Agent", USER_AGENT)
        headers.add("Content-Type", content_type)
        uri = f"sip:{target_id}@{peer.host}:{peer.port}"
        return SipRequest(method, uri, headers, body)

    async def transact(self, request: SipRequest, peer: Peer) -> SipResponse:
        """Run a non-INVITE client transaction; its final response, or `GbError`."""
        branch = request.vias[0].branch or ""
        loop = asyncio.get_running_loop()
        transaction = _ClientTransaction(loop.create_future())
        self._client[branch] = transaction
        try:
            await self.transport.send(request, peer)
            deadline = loop.time() + self.transaction_timeout
            interval = self.t1
            while True:
                wait = deadline - loop.time()
                if peer.transport == "udp":
                    wait = min(wait, interval)
                if wait <= 0:
                    raise GbError(f"no answer from {peer} to {request.method} within "
                                  f"{self.transaction_timeout:g} s")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):  # not wait_for: see edge.bus.client
                        return await asyncio.shield(transaction.future)
                if peer.transport == "udp" and loop.time() < deadline:
                    await self.transport.send(request, peer)
                    interval = T2 if transaction.proceeding else min(interval * 2, T2)
        except SipTransportError as exc:
            raise GbError(str(exc)) from None
        finally:
            del self._client[branch]
            if not transaction.future.done():
                transaction.future.cancel()

    async def _send_manscdp(self, device: Device, target_id: str, body: bytes,
                            what: str) -> None:
        request = self._new_request("MESSAGE", device, target_id, body, manscdp.CONTENT_TYPE)
        response = await self.transact(request, device.peer)
        if response.status != 200:
            raise GbError(f"device {device.device_id} refused the {what}: "
                          f"{response.status} {response.reason}")

    async def _query(self, device_id: str, cmd_type: str,
                     build: Callable[[int, str], bytes], timeout: float | None) -> object:
        device = self._device(device_id)
        sn = next(self._sn)
        loop = asyncio.get_running_loop()
        pending = _Pending(device_id, cmd_type, sn, loop.create_future())
        key = (device_id, cmd_type, sn)
        self._pending[key] = pending
        limit = self.query_timeout if timeout is None else timeout
        try:
            # The answer may overtake the 200 (UDP): it is matched by SN either way.
            await self._send_manscdp(device, device_id, build(sn, device_id),
                                     f"{cmd_type} query")
            try:
                async with asyncio.timeout(limit):
                    return await asyncio.shield(pending.future)
            except TimeoutError:
                got = (f" ({len(pending.channels)} of {pending.sum_num} channels)"
                       if pending.sum_num is not None else "")
                raise GbError(f"device {device_id} did not answer the {cmd_type} query "
                              f"within {limit:g} s{got}") from None
        finally:
            self._pending.pop(key, None)

    async def query_catalog(self, device_id: str, *,
                            timeout: float | None = None) -> list[Channel]:
        """The device's channels (every part of a multi-part answer); also kept in the
        registry, with a `ChannelsChanged` event when they differ."""
        result = await self._query(device_id, "Catalog", manscdp.catalog_query, timeout)
        assert isinstance(result, list)
        return result

    async def query_device_info(self, device_id: str, *,
                                timeout: float | None = None) -> DeviceInfo:
        result = await self._query(device_id, "DeviceInfo", manscdp.device_info_query, timeout)
        assert isinstance(result, DeviceInfo)
        return result

    async def query_device_status(self, device_id: str, *,
                                  timeout: float | None = None) -> DeviceStatus:
        result = await self._query(device_id, "DeviceStatus", manscdp.device_status_query,
                                   timeout)
        assert isinstance(result, DeviceStatus)
        return result

    async def ptz(self, device_id: str, channel_id: str, command: PtzCmd) -> None:
        """Send a DeviceControl PTZCmd to a channel; done once the device took it (200)."""
        device = self._device(device_id)
        body = manscdp.ptz_control(next(self._sn), channel_id, command.hex())
        await self._send_manscdp(device, channel_id, body, "PTZ command")

    async def keyframe(self, device_id: str, channel_id: str) -> None:
        """Ask a channel for an I-frame now (DeviceControl `IFameCmd`); done once the device
        took it (200). The standard makes obeying optional: the picture tells."""
        device = self._device(device_id)
        body = manscdp.keyframe_control(next(self._sn), channel_id)
        await self._send_manscdp(device, channel_id, body, "keyframe request")

    # -- INVITE, ACK, BYE -------------------------------------------------------------------

    async def invite(self, device_id: str, channel_id: str, *, media_host: str,
                     media_port: int, transport: MediaTransport = "udp",
                     ssrc: str | None = None, timeout: float | None = None) -> MediaSession:
        """Ask a channel for live video to `media_host:media_port`; the confirmed session.

        `timeout` (default the query timeout) bounds the whole exchange: a device that
        takes the INVITE and never answers it is given up on, and should its 200 come
        later, it is ACKed and ended at once.
        """
        device = self._device(device_id)
        offer = Offer(self.platform_id, channel_id, media_host, media_port,
                      ssrc or live_ssrc(self.realm, next(self._ssrc_sequence) % 10000),
                      transport)
        request = self._new_request("INVITE", device, channel_id, offer.to_bytes(),
                                    "APPLICATION/SDP")
        host, port = self.transport.local_address(device.peer)
        request.headers.add("Contact", f"<sip:{self.platform_id}@{host}:{port}>")
        # GB/T 28181 §9.2: who sends with which SSRC, and who receives.
        request.headers.add("Subject", f"{channel_id}:{offer.ssrc},{self.platform_id}:0")
        limit = self.query_timeout if timeout is None else timeout
        try:
            response = await self._invite_transaction(request, device.peer, limit)
        except GbError:
            self._abandoned[request.call_id] = (asyncio.get_running_loop().time(), request,
                                                device.peer, device_id, offer)
            raise
        what = f"device {device_id} channel {channel_id}"
        if response.status >= 300:
            raise GbError(f"{what} refused to play: {response.status} {response.reason}")
        session, ack = self._confirm(request, response, device_id, device.peer, offer)
        # Awaited, not spawned: a BYE must not overtake the ACK on a TCP connection.
        await self._send_logged(ack, device.peer)
        try:
            session.answer = parse_answer(response.body)
        except SdpError as exc:
            await self.bye(session)
            raise GbError(f"{what} answered with unusable SDP: {exc}") from None
        return session

    async def _invite_transaction(self, request: SipRequest, peer: Peer,
                                  limit: float) -> SipResponse:
        """RFC 3261 §17.1.1: retransmit (UDP) from T1 doubling until any response; give up
        after 64·T1 without one (Timer B) or after `limit` in all."""
        branch = request.vias[0].branch or ""
        loop = asyncio.get_running_loop()
        transaction = _ClientTransaction(loop.create_future())
        self._client[branch] = transaction
        start = loop.time()
        try:
            await self.transport.send(request, peer)
            interval = self.t1
            while True:
                now = loop.time()
                deadline = start + limit
                if not transaction.proceeding:
                    deadline = min(deadline, start + self.transaction_timeout)
                wait = deadline - now
                if peer.transport == "udp" and not transaction.proceeding:
                    wait = min(wait, interval)
                if wait <= 0:
                    state = "took it but did not answer" if transaction.proceeding else \
                        "did not answer"
                    raise GbError(f"{peer} {state} the INVITE within {deadline - start:g} s")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        response = await asyncio.shield(transaction.future)
                    break
                if peer.transport == "udp" and not transaction.proceeding:
                    await self.transport.send(request, peer)
                    interval *= 2
        except SipTransportError as exc:
            raise GbError(str(exc)) from None
        finally:
            del self._client[branch]
            if not transaction.future.done():
                transaction.future.cancel()
        if response.status >= 300:
            # The ACK of a non-2xx final is part of the INVITE transaction (§17.1.1.3).
            ack = self._ack_for(request, response, same_branch=True)
            self._acks[(request.call_id, request.cseq[0])] = (loop.time(), ack, peer)
            await self._send_logged(ack, peer)
        return response

    def _ack_for(self, request: SipRequest, response: SipResponse, *,
                 same_branch: bool = False) -> SipRequest:
        headers = Headers()
        via = request.headers.get("Via") or ""
        if not same_branch:
            via = via.split(";branch=")[0] + f";branch={new_branch()}"
        headers.add("Via", via)
        for name in ("From", "Call-ID", "Max-Forwards"):
            headers.add(name, request.header(name))
        headers.add("To", response.header("To"))
        headers.add("CSeq", f"{request.cseq[0]} ACK")
        uri = request.uri
        if not same_branch and response.headers.get("Contact"):
            uri = NameAddr.parse(response.header("Contact"), "Contact").uri
        return SipRequest("ACK", uri, headers)

    def _confirm(self, request: SipRequest, response: SipResponse, device_id: str,
                 peer: Peer, offer: Offer) -> tuple[MediaSession, SipRequest]:
        """The dialog a 2xx makes, and its ACK (a transaction of its own, §13.2.2.4) for
        the caller to send."""
        ack = self._ack_for(request, response)
        self._acks[(request.call_id, request.cseq[0])] = (
            asyncio.get_running_loop().time(), ack, peer)
        session = MediaSession(
            device_id, offer.channel_id, peer, request.call_id,
            request.from_.tag or "", response.to.tag or "", ack.uri, request.cseq[0], offer,
            Answer(offer.host, 0, offer.transport, None))
        self.sessions[session.call_id] = session
        return session, ack

    async def bye(self, session: MediaSession) -> None:
        """End a session (a BYE in its dialog); done when the device answered or forgot it."""
        self.sessions.pop(session.call_id, None)
        session.cseq += 1
        host, port = self.transport.local_address(session.peer)
        headers = Headers()
        headers.add("Via", f"SIP/2.0/{session.peer.transport.upper()} {host}:{port};rport;"
                           f"branch={new_branch()}")
        headers.add("From", f"<sip:{self.platform_id}@{self.realm}>;tag={session.local_tag}")
        headers.add("To", f"<sip:{session.channel_id}@{self.realm}>;tag={session.remote_tag}")
        headers.add("Call-ID", session.call_id)
        headers.add("CSeq", f"{session.cseq} BYE")
        headers.add("Max-Forwards", "70")
        headers.add("User-Agent", USER_AGENT)
        response = await self.transact(SipRequest("BYE", session.remote_target, headers),
                                       session.peer)
        if response.status not in (200, 481):
            raise GbError(f"device {session.device_id} refused to end the session of "
                          f"channel {session.channel_id}: {response.status} {response.reason}")

    async def _ack_and_bye(self, session: MediaSession, ack: SipRequest) -> None:
        await self._send_logged(ack, session.peer)
        try:
            await self.bye(session)
        except GbError as exc:
            log.info("%s", exc)

def _add_received(request: SipRequest, peer: Peer) -> None:
    """RFC 3261 §18.2.1 and RFC 3581: note in the top Via where the request really came
    from, so that its response finds its way back through the device's NAT."""
    values = [v for name, v in request.headers if name == "Via"]
    if not values:
        return
    try:
        top = request.vias[0]
    except (SipParseError, IndexError):
        return
    first = values[0]
    text = first.split(",")[0]
    rest = first[len(text):]
    additions = ""
    if "rport" in top.params and not top.params["rport"]:
        text = text.replace(";rport", "", 1)
        additions += f";rport={peer.port}"
    if top.host != peer.host or additions:
        additions = f";received={peer.host}" + additions
    if not additions:
        return
    fields = list(request.headers)
    index = next(i for i, (name, _) in enumerate(fields) if name == "Via")
    fields[index] = ("Via", text + additions + rest)
    request.headers = Headers(fields)
