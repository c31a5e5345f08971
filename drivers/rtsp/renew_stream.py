"""Ask an RTSP camera for a keyframe now: ``SET_PARAMETER`` with ``Renew-Stream: yes``.

RTSP has no standard request for a keyframe. What cameras take is one of:

- RTCP FIR/PLI on the RTP session (RFC 5104): our ingest is FFmpeg's RTSP
  demuxer, which sends no feedback and lets nobody else write on its session;
- ONVIF ``SetSynchronizationPoint`` and GB/T 28181's forced-keyframe command,
  over their own protocols (the camera sources of those kinds);
- ``SET_PARAMETER`` with a ``text/parameters`` body ``Renew-Stream: yes``,
  Axis's VAPIX RTSP API, which our simulated camera also honours.

This sends the last one, on a connection of its own to the stream's URL
(FFmpeg does not tell us its session id, so the request carries none: the
camera renews the stream for every session, as its one encoder would),
answering a 401 with Digest or Basic from the URL's credentials. A camera
that does not know the request says so (``451 Parameter Not Understood``,
``501``, ``405``, ``454``, ``551``): :class:`RenewUnsupported`, and the
caller stops asking. Anything else that goes wrong is a
:class:`RenewFailed` naming it; the stream itself is never touched.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from base64 import b64encode
from urllib.parse import unquote, urlsplit, urlunsplit

from drivers.rtsp.errors import MalformedReply
from drivers.rtsp.rtsp_reply import MAX_HEAD_BYTES, RtspReply, head_end, parse_head

USER_AGENT = "edge-camera"
BODY = b"Renew-Stream: yes\r\n"
UNSUPPORTED = frozenset({405, 451, 454, 501, 551})
_PARAM = re.compile(r'(\w+)=(?:"([^"]*)"|([^\s,]+))')


class RenewFailed(Exception):
    """The request could not be made or was refused; `str()` says why in one sentence."""


class RenewUnsupported(RenewFailed):
    """The camera does not renew streams on request."""


async def renew_stream(url: str, timeout: float = 3.0) -> None:
    """Ask the camera at `url` for a keyframe now; returns once it said yes."""
    parts = urlsplit(url)
    if parts.scheme not in ("rtsp", "rtsps") or not parts.hostname:
        raise RenewFailed(f"not an RTSP URL: {parts.scheme}://{parts.hostname or ''}")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else ""
    bare = urlunsplit((parts.scheme, _netloc(parts.hostname, parts.port), parts.path,
                       parts.query, ""))
    try:
        async with asyncio.timeout(timeout):
            await _renew(parts.hostname, parts.port or 554, bare, user, password,
                         ssl=parts.scheme == "rtsps")
    except TimeoutError:
        raise RenewFailed(f"no answer to SET_PARAMETER within {timeout:g} s") from None
    except (OSError, asyncio.IncompleteReadError) as e:
        raise RenewFailed(f"SET_PARAMETER: {e.strerror or e}" if isinstance(e, OSError)
                          else "the camera closed the connection") from None
    except MalformedReply as e:
        raise RenewFailed(f"the reply to SET_PARAMETER is malformed: {e}") from None


def _netloc(host: str, port: int | None) -> str:
    host = f"[{host}]" if ":" in host else host
    return host if port is None else f"{host}:{port}"


async def _renew(host: str, port: int, url: str, user: str | None, password: str,
                 ssl: bool) -> None:
    reader, writer = await asyncio.open_connection(host, port, ssl=ssl or None)
    try:
        reply = await _exchange(reader, writer, url, 1, None)
        if reply.status == 401 and user is not None:
            challenge = reply.header("www-authenticate") or ""
            auth = _authorization(challenge, user, password, url)
            reply = await _exchange(reader, writer, url, 2, auth)
        if reply.status == 200:
            return
        if reply.status in UNSUPPORTED:
            raise RenewUnsupported(f"the camera does not renew streams on request "
                                   f"({reply.status} {reply.reason})")
        if reply.status == 401:
            raise RenewFailed("the camera refused our credentials (401)" if user else
                              "the camera wants credentials the URL does not give (401)")
        raise RenewFailed(f"the camera answered {reply.status} {reply.reason}")
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, url: str,
                    cseq: int, authorization: str | None) -> RtspReply:
    head = [f"SET_PARAMETER {url} RTSP/1.0", f"CSeq: {cseq}", f"User-Agent: {USER_AGENT}",
            "Content-Type: text/parameters", f"Content-Length: {len(BODY)}"]
    if authorization:
        head.append(f"Authorization: {authorization}")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + BODY)
    await writer.drain()
    data = b""
    while (end := head_end(data)) is None:
        if len(data) > MAX_HEAD_BYTES:
            raise MalformedReply(f"its header is longer than {MAX_HEAD_BYTES} bytes")
        chunk = await reader.read(4096)
        if not chunk:
            raise asyncio.IncompleteReadError(data, None)
        data += chunk
    reply = parse_head(data[:end].rstrip(b"\r\n"), cseq=cseq)
    missing = reply.content_length - (len(data) - end)
    if missing > 0:
        await reader.readexactly(missing)
    return reply


def _authorization(challenge: str, user: str, password: str, url: str) -> str:
    scheme, _, rest = challenge.strip().partition(" ")
    if scheme.lower() == "basic":
        return "Basic " + b64encode(f"{user}:{password}".encode()).decode()
    if scheme.lower() != "digest":
        raise RenewFailed(f"the camera asks for {scheme or 'an unnamed'} authentication, "
                          "which we do not speak")
    params = {m[1].lower(): m[2] or m[3] for m in _PARAM.finditer(rest)}
    realm, nonce = params.get("realm", ""), params.get("nonce", "")

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 (RFC 2617 says MD5)

    ha1, ha2 = md5(f"{user}:{realm}:{password}"), md5(f"SET_PARAMETER:{url}")
    fields = [f'username="{user}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{url}"']
    if "auth" in [q.strip() for q in params.get("qop", "").split(",")]:
        cnonce = secrets.token_hex(8)
        response = md5(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")
        fields += ["qop=auth", "nc=00000001", f'cnonce="{cnonce}"']
    else:
        response = md5(f"{ha1}:{nonce}:{ha2}")
    fields.append(f'response="{response}"')
    if "opaque" in params:
        fields.append(f'opaque="{params["opaque"]}"')
    return "Digest " + ", ".join(fields)
