"""A scripted GB/T 28181 device on a real UDP or TCP socket, for the platform's fault tests.

It does only what a test tells it (register, send raw bytes, answer or ignore a
request), so a test can play a device that misbehaves. Interoperability is what the
SIPp tests are for; this one computes its digest with our own `digest` module.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from drivers.gb28181 import manscdp
from drivers.gb28181.digest import digest_response, parse_params
from drivers.gb28181.sip_message import (
    Headers,
    SipRequest,
    SipResponse,
    StreamFramer,
    new_branch,
    parse_message,
    response_to,
)

REALM = "3402000000"


class ScriptedDevice:
    """Messages in arrive on `inbox`; `send()` writes raw bytes or a message."""

    def __init__(self, device_id: str, platform: tuple[str, int], transport: str) -> None:
        self.device_id = device_id
        self.platform = platform
        self.transport = transport
        self.inbox: asyncio.Queue[SipRequest | SipResponse] = asyncio.Queue()
        self.received_raw: list[bytes] = []
        self._udp: asyncio.DatagramTransport | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._cseq = 0
        self.call_id = secrets.token_hex(8)
        self.local: tuple[str, int] = ("127.0.0.1", 0)

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        if self.transport == "udp":
            device = self

            class Protocol(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                    device.received_raw.append(data)
                    device.inbox.put_nowait(parse_message(data))

            self._udp, _ = await loop.create_datagram_endpoint(
                Protocol, local_addr=("127.0.0.1", 0))
            self.local = self._udp.get_extra_info("sockname")[:2]
        else:
            reader, self._writer = await asyncio.open_connection(*self.platform)
            self.local = self._writer.get_extra_info("sockname")[:2]
            self._reader_task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        framer = StreamFramer()
        while data := await reader.read(65536):
            self.received_raw.append(data)
            for message in framer.feed(data):
                self.inbox.put_nowait(message)

    @property
    def closed_by_peer(self) -> bool:
        return self._reader_task is not None and self._reader_task.done()

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(BaseException):
                await self._reader_task

    async def send(self, data: bytes | SipRequest | SipResponse) -> None:
        raw = data if isinstance(data, bytes) else data.to_bytes()
        if self._udp is not None:
            self._udp.sendto(raw, self.platform)
        else:
            assert self._writer is not None
            self._writer.write(raw)
            await self._writer.drain()

    async def receive(self, within: float = 10.0) -> SipRequest | SipResponse:
        """The next message (`within` only bounds a broken test)."""
        return await asyncio.wait_for(self.inbox.get(), within)

    async def request_for(self, method: str, within: float = 10.0) -> SipRequest:
        while True:
            message = await self.receive(within)
            if isinstance(message, SipRequest) and message.method == method:
                return message

    async def response(self, within: float = 10.0) -> SipResponse:
        while True:
            message = await self.receive(within)
            if isinstance(message, SipResponse):
                return message

    def request(self, method: str, body: bytes = b"", *, to: str | None = None,
                extra: list[tuple[str, str]] | None = None) -> SipRequest:
        self._cseq += 1
        host, port = self.local
        headers = Headers()
        headers.add("Via", f"SIP/2.0/{self.transport.upper()} {host}:{port};rport;"
                           f"branch={new_branch()}")
        headers.add("From", f"<sip:{self.device_id}@{REALM}>;tag={self.call_id[:6]}")
        headers.add("To", f"<sip:{to or self.device_id}@{REALM}>")
        headers.add("Call-ID", self.call_id if method == "REGISTER" else secrets.token_hex(8))
        headers.add("CSeq", f"{self._cseq} {method}")
        headers.add("Contact", f"<sip:{self.device_id}@{host}:{port}>")
        for name, value in extra or []:
            headers.add(name, value)
        if body:
            headers.add("Content-Type", manscdp.CONTENT_TYPE)
        return SipRequest(method, f"sip:34020000002000000001@{REALM}", headers, body)

    async def register(self, password: str, expires: int = 3600) -> SipResponse:
        """REGISTER, answer the 401 with a digest; the final response."""
        await self.send(self.request("REGISTER", extra=[("Expires", str(expires))]))
        challenge = await self.response()
        if challenge.status != 401:
            return challenge
        params = parse_params(challenge.header("WWW-Authenticate"))
        uri = f"sip:34020000002000000001@{REALM}"
        answer = digest_response(username=self.device_id, realm=params["realm"],
                                 password=password, method="REGISTER", uri=uri,
                                 nonce=params["nonce"], qop="auth", nc="00000001",
                                 cnonce="abcdef01")
        authorization = (f'Digest username="{self.device_id}", realm="{params["realm"]}", '
                         f'nonce="{params["nonce"]}", uri="{uri}", response="{answer}", '
                         f'qop=auth, nc=00000001, cnonce="abcdef01", algorithm=MD5')
        await self.send(self.request("REGISTER", extra=[("Expires", str(expires)),
                                                        ("Authorization", authorization)]))
        return await self.response()

    async def answer(self, request: SipRequest, status: int = 200) -> None:
        await self.send(response_to(request, status, to_tag="dev"))


@asynccontextmanager
async def scripted_device(platform: tuple[str, int], *, transport: str = "udp",
                          device_id: str = "34020000001320000001"
                          ) -> AsyncIterator[ScriptedDevice]:
    device = ScriptedDevice(device_id, platform, transport)
    await device.open()
    try:
        yield device
    finally:
        await device.close()
