"""RTSP/1.0 request parsing and response formatting (RFC 2326), server side."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

MAX_HEADER_BYTES = 8192

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    454: "Session Not Found",
    455: "Method Not Valid in This State",
    459: "Aggregate Operation Not Allowed",
    461: "Unsupported Transport",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "RTSP Version Not Supported",
}


class RtspProtocolError(Exception):
    """The peer sent something that is not RTSP; the connection is dropped."""


@dataclass(slots=True)
class Request:
    method: str
    url: str
    version: str
    headers: dict[str, str]
    body: bytes = b""

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    @property
    def cseq(self) -> str:
        return self.header("cseq", "0")


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def encode(self, cseq: str) -> bytes:
        lines = [f"RTSP/1.0 {self.status} {REASONS.get(self.status, 'Error')}", f"CSeq: {cseq}"]
        lines.append("Server: edge-sim-camera")
        lines.extend(f"{k}: {v}" for k, v in self.headers.items())
        if self.body:
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


def parse_head(head: bytes) -> Request:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RtspProtocolError("request is not text") from exc
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("RTSP/"):
        raise RtspProtocolError(f"bad request line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise RtspProtocolError(f"bad header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return Request(parts[0].upper(), parts[1], parts[2], headers)


async def read_request(reader: asyncio.StreamReader, first: bytes) -> Request:
    """Read the rest of a request whose first byte (`first`) was already consumed."""
    try:
        rest = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as exc:
        raise RtspProtocolError("request header too large") from exc
    request = parse_head(first + rest[:-4])
    length = request.header("content-length")
    if length:
        try:
            size = int(length)
        except ValueError as exc:
            raise RtspProtocolError("bad Content-Length") from exc
        if not 0 <= size <= MAX_HEADER_BYTES:
            raise RtspProtocolError("Content-Length out of range")
        request.body = await reader.readexactly(size)
    return request


def parse_transport(value: str) -> list[dict[str, str]]:
    """Split a Transport header into its alternatives, each a dict of parameters.

    The transport spec itself ("RTP/AVP/TCP") is stored under key "spec".
    """
    options = []
    for alternative in value.split(","):
        fields = [f.strip() for f in alternative.split(";") if f.strip()]
        if not fields:
            continue
        params = {"spec": fields[0].upper()}
        for f in fields[1:]:
            key, _, val = f.partition("=")
            params[key.lower()] = val
        options.append(params)
    return options


def parse_port_pair(value: str) -> tuple[int, int] | None:
    first, _, second = value.partition("-")
    try:
        a = int(first)
        b = int(second) if second else a + 1
    except ValueError:
        return None
    if not (0 <= a <= 65535 and 0 <= b <= 65535):
        return None
    return a, b
