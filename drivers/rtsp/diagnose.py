"""Why FFmpeg could not open a camera, when FFmpeg itself cannot say: redo the handshake and look.

FFmpeg reports a malformed RTSP reply as "invalid data" or as a bare -1 (which
reads as "operation not permitted"), and an SDP it cannot use as a stream
without a codec. After such a failure, `edge camera probe` replays the
handshake FFmpeg does (OPTIONS, DESCRIBE, SETUP, PLAY) over one TCP connection
with :mod:`drivers.rtsp.rtsp_reply` and :mod:`drivers.rtsp.sdp`, and reports
the first reply or SDP that does not parse. Blocking; bounded by `timeout`.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urljoin, urlsplit

from drivers.rtsp.errors import MalformedReply
from drivers.rtsp.rtsp_reply import MAX_HEAD_BYTES, RtspReply, head_end, parse_head
from drivers.rtsp.sdp import parse_video

USER_AGENT = "edge-rtsp-probe"


class _Exchange:
    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.cseq = 0
        self.buffer = b""

    def send(self, method: str, url: str, headers: dict[str, str] | None = None) -> None:
        self.cseq += 1
        lines = [f"{method} {url} RTSP/1.0", f"CSeq: {self.cseq}", f"User-Agent: {USER_AGENT}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())

    def request(self, method: str, url: str, headers: dict[str, str] | None = None) -> RtspReply:
        self.send(method, url, headers)
        try:
            return self._reply()
        except MalformedReply as e:
            raise MalformedReply(f"the reply to {method} is malformed: {e}") from None

    def _recv(self) -> bytes:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        return data

    def _reply(self) -> RtspReply:
        while True:
            if self.buffer[:1] == b"$":
                # Interleaved RTP ($, channel, 16-bit length) may come before a reply.
                size = 4 + int.from_bytes(self.buffer[2:4], "big")
                if len(self.buffer) >= max(size, 4):
                    self.buffer = self.buffer[size:]
                    continue
            elif (end := head_end(self.buffer)) is not None:
                break
            elif len(self.buffer) > MAX_HEAD_BYTES:
                raise MalformedReply(f"its header is longer than {MAX_HEAD_BYTES} bytes")
            self.buffer += self._recv()
        reply = parse_head(self.buffer[:end].rstrip(b"\r\n"), cseq=self.cseq)
        self.buffer = self.buffer[end:]
        while len(self.buffer) < reply.content_length:
            self.buffer += self._recv()
        body, self.buffer = self.buffer[:reply.content_length], self.buffer[reply.content_length:]
        return RtspReply(reply.status, reply.reason, reply.headers, body)


def diagnose(url: str, timeout: float = 3.0) -> str | None:
    """The first malformed reply or SDP the camera at `url` sends, as a sentence; or None.

    None when everything parses, when the camera refuses a step (its status
    is then FFmpeg's to report), or when the camera cannot be reached.
    """
    parts = urlsplit(url)
    if parts.hostname is None:
        return None
    try:
        port = parts.port or 554
    except ValueError:
        return None
    if parts.scheme.lower() != "rtsp":
        return None  # rtsps: FFmpeg's TLS handshake is not replayed here
    deadline = time.monotonic() + timeout
    # As FFmpeg does: the user info goes in the Authorization header, never the request line.
    plain = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout) as sock:
            return _handshake(_Exchange(sock, deadline), plain)
    except MalformedReply as e:
        return str(e)
    except (OSError, EOFError, TimeoutError, ValueError):
        return None


def _handshake(ex: _Exchange, url: str) -> str | None:
    if not _ok(ex.request("OPTIONS", url)):
        return None
    described = ex.request("DESCRIBE", url, {"Accept": "application/sdp"})
    if not _ok(described):
        return None
    try:
        sdp = described.body.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"the SDP is not text (byte 0x{described.body[e.start]:02x} at offset {e.start})"
    video = parse_video(sdp)
    if video.encoding.upper() not in ("H264", "H265"):
        return f"the camera sends {video.encoding} video; edge takes H.264 or H.265"
    base = described.header("content-base") or described.header("content-location") or url
    control = video.control
    if not control or control == "*":
        track = base
    elif "://" in control:
        track = control
    else:
        track = urljoin(base if base.endswith("/") else base + "/", control)
    setup = ex.request("SETUP", track, {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"})
    if not _ok(setup):
        return None
    session = (setup.header("session") or "").split(";", 1)[0].strip()
    if not session:
        return "the reply to SETUP has no Session header"
    if not _ok(ex.request("PLAY", base, {"Session": session, "Range": "npt=0.000-"})):
        return None
    ex.send("TEARDOWN", base, {"Session": session})  # its reply does not matter
    return None


def _ok(reply: RtspReply) -> bool:
    return 200 <= reply.status < 300
