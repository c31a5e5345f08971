"""SIP messages (RFC 3261 §7, §20, §25): parse, serialise, and frame on a TCP stream.

Only what a GB/T 28181 platform needs: requests and responses, headers looked up
case-insensitively with compact forms expanded, folded header lines joined, the
Via/From/To/CSeq fields taken apart, and bodies cut by Content-Length. Anything
malformed raises `SipParseError` with one line saying what was wrong.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

MAX_MESSAGE_BYTES = 64 * 1024
"""Largest message accepted: a Catalog part or an SDP is a few kB; a UDP datagram can be no
more than 64 kB anyway, so TCP gets the same bound and a peer cannot make us buffer more."""

SIP_VERSION = "SIP/2.0"
BRANCH_MAGIC = "z9hG4bK"

# RFC 3261 §7.3.3 and the IANA registry's compact forms a device may use.
_COMPACT = {
    "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
    "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To",
    "v": "Via", "o": "Event", "r": "Refer-To", "u": "Allow-Events", "x": "Session-Expires",
}
# Spelling used when we write a header (and to print a parsed one the usual way).
_CANONICAL = {name.lower(): name for name in (
    "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Expires", "Max-Forwards",
    "Content-Type", "Content-Length", "User-Agent", "Date", "WWW-Authenticate",
    "Authorization", "Subject", "Allow", "Supported", "Route", "Record-Route",
    "Content-Encoding", "Event", "Server", "Min-Expires",
)}
_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")
_STATUS_LINE = re.compile(r"^SIP/2\.0 ([1-6][0-9][0-9]) ?(.*)$")

REASONS = {
    100: "Trying", 180: "Ringing", 200: "OK", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    413: "Request Entity Too Large", 415: "Unsupported Media Type", 423: "Interval Too Brief",
    481: "Call/Transaction Does Not Exist", 486: "Busy Here", 488: "Not Acceptable Here",
    500: "Server Internal Error", 501: "Not Implemented", 503: "Service Unavailable",
}


class SipParseError(ValueError):
    """A message we cannot take; `str()` is one line naming what was wrong."""


def canonical_name(name: str) -> str:
    """`v` -> `Via`, `call-id` -> `Call-ID`; unknown names keep their own spelling."""
    full = _COMPACT.get(name.lower(), name) if len(name) == 1 else name
    return _CANONICAL.get(full.lower(), full)


class Headers:
    """Ordered header fields; names are matched case-insensitively, compact forms expanded."""

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        self._fields: list[tuple[str, str]] = []
        for name, value in fields:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        self._fields.append((canonical_name(name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every field of that name with one (placed where the first one was)."""
        key = canonical_name(name).lower()
        for i, (existing, _) in enumerate(self._fields):
            if existing.lower() == key:
                self._fields[i] = (canonical_name(name), value)
                self._fields[i + 1:] = [f for f in self._fields[i + 1:] if f[0].lower() != key]
                return
        self.add(name, value)

    def remove(self, name: str) -> None:
        key = canonical_name(name).lower()
        self._fields = [f for f in self._fields if f[0].lower() != key]

    def get(self, name: str, default: str | None = None) -> str | None:
        key = canonical_name(name).lower()
        for existing, value in self._fields:
            if existing.lower() == key:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of a header, comma-separated lists (several Vias in one line) split."""
        key = canonical_name(name).lower()
        values: list[str] = []
        for existing, value in self._fields:
            if existing.lower() == key:
                values.extend(_split_commas(value) if key in _LIST_HEADERS else [value])
        return values

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._fields))

    def copy(self) -> Headers:
        return Headers(self._fields)


# Headers whose value may be a comma-separated list of entries (RFC 3261 §7.3.1); never
# split WWW-Authenticate/Authorization, whose parameters are themselves comma-separated.
_LIST_HEADERS = {"via", "contact", "route", "record-route"}


def _split_commas(value: str) -> list[str]:
    """Split on commas outside quotes and angle brackets."""
    parts: list[str] = []
    depth_angle = 0
    quoted = False
    start = 0
    i = 0
    while i < len(value):
        ch = value[i]
        if quoted and ch == "\\":
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "<":
            depth_angle += 1
        elif not quoted and ch == ">":
            depth_angle = max(0, depth_angle - 1)
        elif not quoted and depth_angle == 0 and ch == ",":
            parts.append(value[start:i].strip())
            start = i + 1
        i += 1
    parts.append(value[start:].strip())
    return [p for p in parts if p]


def _params(text: str) -> dict[str, str]:
    """`;a=1;b;c="x"` -> {"a": "1", "b": "", "c": "x"} (names lower-cased)."""
    out: dict[str, str] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, _, value = part.partition("=")
        out[name.strip().lower()] = value.strip().strip('"')
    return out


@dataclass(frozen=True)
class Via:
    """One Via entry: `SIP/2.0/UDP host:port;branch=...;rport`."""

    transport: str
    host: str
    port: int | None
    params: dict[str, str] = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @classmethod
    def parse(cls, text: str) -> Via:
        protocol, _, rest = text.strip().partition(" ")
        pieces = protocol.split("/")
        if len(pieces) != 3 or pieces[0].upper() != "SIP" or not rest.strip():
            raise SipParseError(f"bad Via header {text.strip()[:60]!r}")
        sent_by, _, params = rest.strip().partition(";")
        host, port = split_host_port(sent_by.strip(), "Via")
        return cls(pieces[2].upper(), host, port, _params(params))


def split_host_port(text: str, what: str) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]:port` -> (host, port or None)."""
    if text.startswith("["):
        host, _, after = text[1:].partition("]")
        port_text = after[1:] if after.startswith(":") else ""
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise SipParseError(f"bad host in {what} {text[:60]!r}")
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise SipParseError(f"bad port in {what} {text[:60]!r}")
    return host, int(port_text)


@dataclass(frozen=True)
class NameAddr:
    """From/To/Contact: `"display" <sip:user@host:port;params>;tag=...`."""

    display: str
    uri: str
    params: dict[str, str]

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def user(self) -> str:
        """The user part of the URI: a GB/T 28181 device or channel id."""
        return uri_user(self.uri)

    @classmethod
    def parse(cls, text: str, what: str = "address") -> NameAddr:
        text = text.strip()
        if "<" in text:
            display, _, rest = text.partition("<")
            uri, close, params = rest.partition(">")
            if not close:
                raise SipParseError(f"unclosed '<' in {what} {text[:60]!r}")
            display = display.strip().strip('"')
        else:
            # Without angle brackets the parameters after ';' belong to the header (§20.10).
            display = ""
            uri, _, params = text.partition(";")
            params = ";" + params if params else ""
        uri = uri.strip()
        if not uri or ":" not in uri:
            raise SipParseError(f"bad URI in {what} {text[:60]!r}")
        return cls(display, uri, _params(params))

    def __str__(self) -> str:
        shown = f'"{self.display}" ' if self.display else ""
        tail = "".join(f";{k}={v}" if v else f";{k}" for k, v in self.params.items())
        return f"{shown}<{self.uri}>{tail}"


def uri_user(uri: str) -> str:
    """`sip:34020000001320000001@3402000000:5060` -> `34020000001320000001` ('' if none)."""
    _, _, rest = uri.partition(":")
    user, at, _ = rest.partition("@")
    return user.partition(";")[0] if at else ""


class SipMessage:
    """What a request and a response share: headers, body, and their parsed fields."""

    headers: Headers
    body: bytes

    def header(self, name: str) -> str:
        """A header that must be there (else `SipParseError`)."""
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {canonical_name(name)} header")
        return value

    @property
    def call_id(self) -> str:
        return self.header("Call-ID").strip()

    @property
    def cseq(self) -> tuple[int, str]:
        text = self.header("CSeq").split()
        if len(text) != 2 or not text[0].isdigit():
            raise SipParseError(f"bad CSeq header {self.header('CSeq')[:60]!r}")
        return int(text[0]), text[1].upper()

    @property
    def vias(self) -> list[Via]:
        return [Via.parse(v) for v in self.headers.get_all("Via")]

    @property
    def from_(self) -> NameAddr:
        return NameAddr.parse(self.header("From"), "From")

    @property
    def to(self) -> NameAddr:
        return NameAddr.parse(self.header("To"), "To")

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def _head(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Serialise, with Content-Length set from the body."""
        lines = [self._head()]
        lines.extend(f"{name}: {value}" for name, value in self.headers
                     if name.lower() != "content-length")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + self.body


class SipRequest(SipMessage):
    def __init__(self, method: str, uri: str, headers: Headers | None = None,
                 body: bytes = b"") -> None:
        self.method = method.upper()
        self.uri = uri
        self.headers = headers if headers is not None else Headers()
        self.body = body

    def _head(self) -> str:
        return f"{self.method} {self.uri} {SIP_VERSION}"

    def __repr__(self) -> str:
        return f"SipRequest({self.method} {self.uri})"


class SipResponse(SipMessage):
    def __init__(self, status: int, reason: str = "", headers: Headers | None = None,
                 body: bytes = b"") -> None:
        self.status = status
        self.reason = reason or REASONS.get(status, "")
        self.headers = headers if headers is not None else Headers()
        self.body = body

    def _head(self) -> str:
        return f"{SIP_VERSION} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"SipResponse({self.status} {self.reason})"


def new_branch() -> str:
    return BRANCH_MAGIC + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(5)


def response_to(request: SipRequest, status: int, reason: str = "", *,
                to_tag: str | None = None, body: bytes = b"",
                content_type: str | None = None) -> SipResponse:
    """A response carrying the request's Via, From, To, Call-ID and CSeq (§8.2.6.2).

    `to_tag` is added to To when it has none (every final response but 100 needs one).
    """
    headers = Headers()
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        for value in _raw_all(request.headers, name):
            headers.add(name, value)
    if to_tag is not None and status > 100:
        to = request.headers.get("To")
        if to is not None and NameAddr.parse(to, "To").tag is None:
            headers.set("To", f"{to.strip()};tag={to_tag}")
    if content_type is not None:
        headers.add("Content-Type", content_type)
    return SipResponse(status, reason, headers, body)


def _raw_all(headers: Headers, name: str) -> list[str]:
    key = canonical_name(name).lower()
    return [value for existing, value in headers if existing.lower() == key]


# -- parsing ---------------------------------------------------------------------------------

def parse_message(data: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES,
                  stream: bool = False) -> SipRequest | SipResponse:
    """Parse one whole message (a UDP datagram, or one framed off a TCP stream).

    Without Content-Length a datagram's body is the rest of it (RFC 3261 §18.3); with it,
    the body is cut to that length and a shorter body is an error. `stream` makes the
    header mandatory, as it is on TCP.
    """
    if len(data) > max_bytes:
        raise SipParseError(f"message of {len(data)} bytes is over the {max_bytes}-byte limit")
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        # Some devices end lines with a bare LF; accept that too (RFC 3261 §7.5 asks CRLF).
        head, sep, body = data.partition(b"\n\n")
        if not sep:
            raise SipParseError("no blank line after the headers")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # Display names in GB2312 devices' From headers are not UTF-8; keep them readable.
        text = head.decode("gb18030", errors="replace")
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)  # RFC 3261 §7.5: ignore CRLFs before the start line
    if not lines:
        raise SipParseError("empty message")
    message = _start_line(lines[0])
    message.headers = _header_lines(lines[1:])
    length_text = message.headers.get("Content-Length")
    if length_text is None:
        if stream:
            raise SipParseError("missing Content-Length header (required over TCP)")
        message.body = body
    else:
        length_text = length_text.strip()
        if not length_text.isdigit():
            raise SipParseError(f"bad Content-Length {length_text[:20]!r}")
        length = int(length_text)
        if length > len(body):
            raise SipParseError(f"body is {len(body)} bytes, Content-Length says {length}")
        message.body = body[:length]
    _check_mandatory(message)
    return message


def _start_line(line: str) -> SipRequest | SipResponse:
    line = line.strip()
    if line.startswith("SIP/"):
        match = _STATUS_LINE.match(line)
        if match is None:
            raise SipParseError(f"bad status line {line[:60]!r}")
        return SipResponse(int(match.group(1)), match.group(2).strip())
    parts = line.split(" ")
    if len(parts) != 3:
        raise SipParseError(f"bad request line {line[:60]!r}")
    method, uri, version = parts
    if version.upper() != SIP_VERSION:
        raise SipParseError(f"not SIP/2.0: {line[:60]!r}")
    if not _TOKEN.match(method):
        raise SipParseError(f"bad method {method[:20]!r}")
    if ":" not in uri:
        raise SipParseError(f"bad request URI {uri[:60]!r}")
    return SipRequest(method, uri)


def _header_lines(lines: list[str]) -> Headers:
    fields: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (" ", "\t"):
            # A folded line continues the previous header (RFC 3261 §7.3.1).
            if not fields:
                raise SipParseError("continuation line before any header")
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip()}")
            continue
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not name or not _TOKEN.match(name):
            raise SipParseError(f"bad header line {line[:60]!r}")
        fields.append((name, value.strip()))
    return Headers(fields)


def _check_mandatory(message: SipRequest | SipResponse) -> None:
    """The fields every message must carry (§8.1.1); parse them now so that a handler
    never meets a broken one later."""
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        message.header(name)
    if not message.vias:
        raise SipParseError("empty Via header")
    message.from_  # noqa: B018
    message.to  # noqa: B018
    _, method = message.cseq
    if isinstance(message, SipRequest) and method != message.method:
        raise SipParseError(f"CSeq method {method} does not match request method "
                            f"{message.method}")


class StreamFramer:
    """Cut SIP messages off a TCP byte stream by Content-Length (RFC 3261 §18.3).

    `feed()` returns the whole messages that arrived; a malformed message or one over
    the limit raises `SipParseError`, after which the stream cannot be trusted: close it.
    """

    def __init__(self, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[SipRequest | SipResponse]:
        self._buffer += data
        out: list[SipRequest | SipResponse] = []
        while True:
            # Keepalive CRLFs between messages (RFC 5626 §3.5.1) carry nothing.
            stripped = self._buffer.lstrip(b"\r\n")
            if len(stripped) != len(self._buffer):
                del self._buffer[:len(self._buffer) - len(stripped)]
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > self.max_bytes:
                    raise SipParseError(f"headers longer than the {self.max_bytes}-byte limit")
                return out
            length = _content_length(bytes(self._buffer[:end]))
            total = end + 4 + length
            if total > self.max_bytes:
                raise SipParseError(f"message of {total} bytes is over the "
                                    f"{self.max_bytes}-byte limit")
            if len(self._buffer) < total:
                return out
            chunk = bytes(self._buffer[:total])
            del self._buffer[:total]
            out.append(parse_message(chunk, max_bytes=self.max_bytes, stream=True))


def _content_length(head: bytes) -> int:
    for raw in head.split(b"\r\n")[1:]:
        name, colon, value = raw.partition(b":")
        if colon and name.strip().lower() in (b"content-length", b"l"):
            text = value.strip().decode("ascii", errors="replace")
            if not text.isdigit():
                raise SipParseError(f"bad Content-Length {text[:20]!r}")
            return int(text)
    raise SipParseError("missing Content-Length header (required over TCP)")
