"""Short, operator-facing reasons for PyAV/FFmpeg failures.

The dashboard shows these next to a camera that is down, so they name the
cause ("401 unauthorized"), not the library's exception text.
"""

from __future__ import annotations

import errno
import re

import av

SERVER_BUSY = "camera busy or starting (RTSP 5xx)"
INVALID_DATA = "invalid data from source"
# FFmpeg's RTSP demuxer answers a reply whose status it does not expect (a mangled
# status line reads as a stray number) with a bare -1, which is AVERROR(EPERM):
# PyAV raises PermissionError, "Operation not permitted", though nothing was refused.
UNREADABLE_REPLY = "the camera sent an RTSP reply FFmpeg could not use (malformed status?)"
_USERINFO = re.compile(r"(rtsps?://)[^/@\s]*@", re.IGNORECASE)


class ProbeError(Exception):
    """A source could not be probed; `str()` is a one-line reason."""


class MalformedReply(ProbeError):
    """A camera's RTSP reply or SDP that does not parse; `str()` says what is wrong with it."""


def describe_error(exc: BaseException, *, opening: bool = False) -> str:
    """One-line reason for an exception raised while opening or reading."""
    if isinstance(exc, av.error.HTTPUnauthorizedError):
        return "401 unauthorized"
    if isinstance(exc, av.error.HTTPForbiddenError):
        return "403 forbidden"
    if isinstance(exc, av.error.HTTPNotFoundError):
        return "404 not found (wrong stream path?)"
    if isinstance(exc, av.error.HTTPBadRequestError):
        return "400 bad request"
    if isinstance(exc, av.error.HTTPClientError):
        return "RTSP request refused (4xx)"
    if isinstance(exc, av.error.HTTPServerError):
        # FFmpeg folds every 5xx into one error; from a camera it is nearly
        # always 503, booting or at its viewer limit.
        return SERVER_BUSY
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "connection reset by source"
    if isinstance(exc, av.error.ExitError | TimeoutError):
        return "timed out connecting" if opening else "timed out"
    if isinstance(exc, EOFError):
        return "closed by source"
    if isinstance(exc, av.error.InvalidDataError):
        return INVALID_DATA
    if isinstance(exc, av.error.FFmpegError) and isinstance(exc, OSError) \
            and exc.errno == errno.EPERM:
        return UNREADABLE_REPLY
    if isinstance(exc, OSError):
        code = exc.errno
        if code == errno.EHOSTUNREACH:
            return "host unreachable"
        if code == errno.ENETUNREACH:
            return "network unreachable"
        if code == errno.ECONNABORTED:
            return "connection aborted"
        if code == errno.EIO:
            return "I/O error talking to source"
        if exc.strerror:
            return exc.strerror.lower()
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    # PyAV's messages end with the URL; its password must not reach a dashboard.
    return _USERINFO.sub(r"\1", text)[:120]


def describe_open_error(exc: BaseException, elapsed: float, open_timeout: float) -> str:
    """Like `describe_error` for a failed open that took `elapsed` seconds.

    When PyAV's deadline interrupts the RTSP handshake, FFmpeg reports the
    half-read reply as invalid data; an open that ran into its deadline is
    a timeout whatever the error says.
    """
    if elapsed >= open_timeout * 0.95 and isinstance(exc, av.error.InvalidDataError | TimeoutError):
        return "timed out connecting"
    return describe_error(exc, opening=True)
