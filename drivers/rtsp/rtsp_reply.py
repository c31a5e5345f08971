"""RTSP/1.0 replies (RFC 2326 section 7), client side: parse one and say what is malformed.

FFmpeg parses the replies the ingest works with, and when one is malformed it
says only "invalid data" or returns a bare -1. This parser reads the same
replies again, after such a failure, to name what was wrong
(:mod:`drivers.rtsp.diagnose`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from drivers.rtsp.errors import MalformedReply

MAX_HEAD_BYTES = 8192
MAX_BODY_BYTES = 256 * 1024  # an SDP is a few hundred bytes; anything near this is not one
_STATUS_LINE = re.compile(r"^RTSP/(\d)\.(\d) (\S*)(?: (.*))?$")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_SHOWN = 60


def shown(text: str) -> str:
    """`text` quoted for a one-line message: escaped and cut short."""
    quoted = text.encode("unicode_escape").decode("ascii").replace('"', '\\"')
    return f'"{quoted[:_SHOWN]}…"' if len(quoted) > _SHOWN else f'"{quoted}"'


@dataclass(frozen=True, slots=True)
class RtspReply:
    status: int
    reason: str
    headers: dict[str, str]  # names lower-cased; a repeated header keeps its last value
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def content_length(self) -> int:
        return _content_length(self.headers)


def _content_length(headers: dict[str, str]) -> int:
    value = headers.get("content-length")
    if value is None:
        return 0
    if not value.isascii() or not value.isdigit():
        raise MalformedReply(f"Content-Length {shown(value)} is not a number")
    length = int(value)
    if length > MAX_BODY_BYTES:
        raise MalformedReply(f"Content-Length {length} is more than {MAX_BODY_BYTES} bytes")
    return length


def head_end(data: bytes) -> int | None:
    """Where the body starts: after the first blank line (CRLF CRLF, or bare LFs), or None."""
    ends = [i + len(sep) for sep in (b"\r\n\r\n", b"\n\n", b"\n\r\n")
            if (i := data.find(sep)) >= 0]
    return min(ends) if ends else None


def parse_head(head: bytes, *, cseq: int | None = None) -> RtspReply:
    """The status line and headers of a reply (up to, not including, the blank line).

    `cseq`, when given, is the request's: the reply must carry the same.
    Raises MalformedReply naming the first thing that is wrong.
    """
    if len(head) > MAX_HEAD_BYTES:
        raise MalformedReply(f"its header is longer than {MAX_HEAD_BYTES} bytes")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedReply(f"its header is not text (byte 0x{head[e.start]:02x} at offset "
                             f"{e.start})") from None
    # Lines end in CRLF; some cameras send a bare LF, which FFmpeg takes too.
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if any("\r" in line for line in lines):
        raise MalformedReply("its header has a CR inside a line")
    status_line = lines[0]
    m = _STATUS_LINE.match(status_line)
    if not m:
        raise MalformedReply(f"status line {shown(status_line)} is not RTSP/1.0 CODE REASON")
    if m.group(1) != "1":
        raise MalformedReply(f"status line {shown(status_line)} is not RTSP version 1")
    code = m.group(3)
    if not (len(code) == 3 and code.isascii() and code.isdigit() and code[0] in "12345"):
        raise MalformedReply(f"status line {shown(status_line)} has no status code "
                             "(three digits, 100-599)")
    headers: dict[str, str] = {}
    last: str | None = None
    for line in lines[1:]:
        if not line:
            raise MalformedReply("its header has an empty line before its end")
        if line[0] in " \t":  # a folded continuation of the previous header (RFC 2326 4.1)
            if last is None:
                raise MalformedReply(f"header line {shown(line)} continues no header")
            headers[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.match(name):
            raise MalformedReply(f"header line {shown(line)} is not NAME: VALUE")
        last = name.lower()
        headers[last] = value.strip()
    reply_cseq = headers.get("cseq")
    if reply_cseq is None:
        raise MalformedReply("it has no CSeq header")
    if not reply_cseq.isascii() or not reply_cseq.isdigit():
        raise MalformedReply(f"CSeq {shown(reply_cseq)} is not a number")
    if cseq is not None and int(reply_cseq) != cseq:
        raise MalformedReply(f"CSeq {int(reply_cseq)} answers no request (expected {cseq})")
    _content_length(headers)
    return RtspReply(int(code), m.group(4) or "", headers)


def parse_reply(data: bytes, *, cseq: int | None = None) -> RtspReply:
    """One whole reply: head, blank line and exactly Content-Length bytes of body."""
    end = head_end(data)
    if end is None:
        raise MalformedReply("its header does not end in a blank line")
    head, body = data[:end].rstrip(b"\r\n"), data[end:]
    reply = parse_head(head, cseq=cseq)
    if len(body) != reply.content_length:
        raise MalformedReply(f"its body is {len(body)} bytes, Content-Length says "
                             f"{reply.content_length}")
    return RtspReply(reply.status, reply.reason, reply.headers, body)
