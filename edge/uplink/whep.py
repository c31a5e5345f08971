"""HTTP(S) for the centre: WHEP, the viewer page, and the state API (aiohttp).

WHEP (draft-ietf-wish-whep):

- ``POST /whep/<camera>[?profile=main|sub|auto]`` with ``Content-Type:
  application/sdp`` and ``Authorization: Bearer <token>``: ``201 Created``,
  the SDP answer, ``Location`` of the session, ICE servers as ``Link``
  headers (``rel="ice-server"``);
- ``DELETE <Location>`` ends the session (200); ``PATCH`` (trickle ICE, ICE
  restart) is not supported: 405, as the draft asks of such servers;
- ``OPTIONS`` answers CORS preflight with ``Accept-Post: application/sdp``
  (and, when it carries the token, the ``Link`` headers too).

Refusals are plain text an operator can act on: 401 (no or wrong token),
404 (unknown camera), 409 + ``Retry-After`` (camera not live), 415 (not
application/sdp), 400 (bad SDP, with the reason), 503 (sessions or
transcoders all in use). No request ever answers with a traceback.

The page (``/``, ``/viewer.js``, ``/viewer.css``) is static and public; it
holds no secret, and everything it shows comes from the authenticated API:
``GET /api/state`` (JSON), ``GET /api/events`` (server-sent events),
``GET /api/cameras/<id>/thumbnail`` (JPEG). CORS allows any origin: access
is by bearer token, never by cookie, so a foreign page gains nothing.

``POST /api/cameras/<id>/ptz`` steers a camera for the centre where its config
allows (``ptz = { centre = true }``): JSON ``{action, pan, tilt, zoom, preset}``
becomes a ``PtzCommand`` of the ``centre`` controller, asked of the camera's
service, whose reply comes back as JSON: 200 carried out, 403 refused (with the
reason: not allowed, the commander holds it, the device said no), 409 busy, 502
or 504 when the camera service could not be asked; 400 names the bad field.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiortc import RTCIceServer

from edge.bus.messages import (
    PTZ_ACTIONS,
    REPLAY_ACTIONS,
    PtzCommand,
    ReplayCommand,
    Reply,
    ReplyStatus,
    SchemaError,
)
from edge.config import ConfigError, SecretRef
from edge.uplink.auth import bearer_ok
from edge.uplink.session import SessionManager
from edge.uplink.state import UplinkState
from edge.uplink.streams import Refusal
from edge.web import web_file

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
STATIC = {"index.html": "text/html", "viewer.js": "text/javascript",
          "viewer.css": "text/css"}
SSE_KEEPALIVE_S = 15.0
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, DELETE, PATCH, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, Link, ETag, Retry-After, Accept-Post, "
                                     "X-Edge-Stream",
    "Access-Control-Max-Age": "600",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def ice_link_headers(servers: list[RTCIceServer]) -> list[str]:
    """`Link` values announcing ICE servers, as the WHIP/WHEP drafts spell them.

    Only authenticated requests get them: a TURN server's credential is in its link.
    """
    links = []
    for server in servers:
        urls = [server.urls] if isinstance(server.urls, str) else server.urls
        auth = "" if server.username is None else (
            f'; username="{server.username}"; credential="{server.credential}"'
            '; credential-type="password"')
        links += [f'<{url}>; rel="ice-server"{auth}' for url in urls]
    return links


def _text(status: int, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=reason.rstrip() + "\n", headers=headers)


ReplayControl = Callable[[ReplayCommand], Awaitable[Reply]]
# Asks a camera's service (`camera@<id>`) to steer it: (camera id, request) -> its reply.
PtzControl = Callable[[str, PtzCommand], Awaitable[Reply]]
# The HTTP status of a camera service's answer to the centre's steering.
PTZ_HTTP_STATUS: dict[ReplyStatus, int] = {
    "accepted": 200, "rejected": 403, "busy": 409, "timeout": 504, "error": 502}
PTZ_FIELDS = ("action", "pan", "tilt", "zoom", "preset")
PRESET_RANGE = range(1, 256)


def ptz_request(body: Any) -> PtzCommand | str:
    """The centre's steering request from its JSON, or what is wrong with it (one line,
    naming the field)."""
    if not isinstance(body, dict):
        return 'the request must be a JSON object, like {"action": "move", "pan": 0.5}'
    unknown = sorted(str(k)[:40] for k in body if k not in PTZ_FIELDS)
    if unknown:
        return f"unknown field {unknown[0]!r} (the fields are {', '.join(PTZ_FIELDS)})"
    action = body.get("action")
    if action not in PTZ_ACTIONS:
        return f"action must be one of {', '.join(PTZ_ACTIONS)}"
    command = PtzCommand(action=action, controller="centre")
    for axis in ("pan", "tilt", "zoom"):
        value = body.get(axis, 0.0)
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or not math.isfinite(value) or not -1.0 <= value <= 1.0):
            return f"{axis} must be a number from -1 to 1"
        setattr(command, axis, float(value))
    preset = body.get("preset", 0)
    needs_preset = action in ("preset", "set_preset")
    if (isinstance(preset, bool) or not isinstance(preset, int)
            or not (preset in PRESET_RANGE or preset == 0 and not needs_preset)):
        return "preset must be a whole number from 1 to 255"
    command.preset = preset
    return command


class UplinkHttp:
    def __init__(self, manager: SessionManager, state: UplinkState, token: bytes,
                 ice_servers: list[RTCIceServer], replay: ReplayControl | None = None,
                 ptz: PtzControl | None = None) -> None:
        self.manager = manager
        self.state = state
        self._token = token
        self.ice_servers = ice_servers
        # Asks the replay vehicle (`replay.command` on the bus), so the page drives the
        # same replay the dashboard and a script do.
        self.replay = replay
        # Steers a camera for the centre's page (through its camera service, on the bus).
        self.ptz = ptz
        self.stopping = asyncio.Event()
        self.app = web.Application(middlewares=[self._cors_and_errors],
                                   client_max_size=256 * 1024)
        r = self.app.router
        r.add_get("/", self.page)
        r.add_get("/{name:viewer\\.(?:js|css)|page_kit\\.js}", self.static)
        r.add_route("OPTIONS", "/whep/{path:.*}", self.options)
        r.add_route("OPTIONS", "/api/{path:.*}", self.options)
        r.add_post("/whep/{camera}", self.whep_post)
        r.add_delete("/whep/{camera}/{session}", self.whep_delete)
        r.add_patch("/whep/{camera}/{session}", self.whep_patch)
        r.add_get("/api/state", self.api_state)
        r.add_get("/api/events", self.api_events)
        r.add_get("/api/cameras/{camera}/thumbnail", self.api_thumbnail)
        r.add_post("/api/replay", self.api_replay)
        r.add_post("/api/cameras/{camera}/ptz", self.api_ptz)

    # -- plumbing -----------------------------------------------------------------------
    @web.middleware
    async def _cors_and_errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except Refusal as e:
            response = _text(e.status, e.text, e.headers)
        except web.HTTPException as e:
            response = _text(e.status, e.reason)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:  # the operator gets one line; the log gets the detail
            log.exception("%s %s failed", request.method, request.path)
            response = _text(500, "internal error in the uplink (its log has the details)")
        if not response.prepared:
            for k, v in CORS.items():
                response.headers.setdefault(k, v)
        return response

    def _authorized(self, request: web.Request) -> bool:
        return bearer_ok(request.headers.get("Authorization"), self._token)

    def _require_auth(self, request: web.Request) -> None:
        if not self._authorized(request):
            why = "no bearer token" if "Authorization" not in request.headers else \
                "wrong bearer token"
            raise Refusal(401, f"{why}: send Authorization: Bearer <the uplink token>",
                            {"WWW-Authenticate": 'Bearer realm="edge uplink"'})

    # -- the page -----------------------------------------------------------------------
    async def page(self, request: web.Request) -> web.StreamResponse:
        return self._file("index.html")

    async def static(self, request: web.Request) -> web.StreamResponse:
        return self._file(request.match_info["name"])

    def _file(self, name: str) -> web.StreamResponse:
        found = web_file(name, WEB_DIR, STATIC)
        if found is None:
            raise Refusal(404, "no such file")
        path, content_type = found
        return web.FileResponse(path, headers={"Content-Type": content_type,
                                               "Cache-Control": "no-cache"})

    # -- WHEP ---------------------------------------------------------------------------
    async def options(self, request: web.Request) -> web.StreamResponse:
        headers = {"Accept-Post": "application/sdp"} if request.path.startswith("/whep/") else {}
        response = web.Response(status=204, headers=headers)
        if request.path.startswith("/whep/") and self._authorized(request):
            for link in ice_link_headers(self.ice_servers):
                response.headers.add("Link", link)
        return response

    async def whep_post(self, request: web.Request) -> web.StreamResponse:
        self._require_auth(request)
        if request.content_type != "application/sdp":
            got = request.headers.get("Content-Type", "no Content-Type")
            raise Refusal(415, f"the offer must be sent as Content-Type: application/sdp "
                            f"(got {got})", {"Accept-Post": "application/sdp"})
        camera = request.match_info["camera"]
        profile = request.query.get("profile", self.manager.config.profile)
        # SDP is UTF-8 (RFC 8866) whatever charset the request claims; aiohttp's
        # text() would decode with that charset, and fail on an unknown one.
        body = await request.read()
        try:
            offer = body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise Refusal(400, f"the offer is not UTF-8 text (byte 0x{body[e.start]:02x} at "
                            f"offset {e.start})") from None
        remote = request.remote or "?"
        # The address the viewer reached us at: its session offers that one alone.
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        local = sockname[0] if isinstance(sockname, tuple) and sockname else None
        session, answer = await self.manager.create(
            camera, profile, offer, remote, request.headers.get("User-Agent", ""), local)
        location = f"/whep/{camera}/{session.id}"
        response = web.Response(status=201, text=answer, content_type="application/sdp",
                                headers={"Location": location, "ETag": f'"{session.id}"',
                                         "X-Edge-Stream": session.key.name})
        for link in ice_link_headers(self.ice_servers):
            response.headers.add("Link", link)
        return response

    async def whep_delete(self, request: web.Request) -> web.StreamResponse:
        self._require_auth(request)
        session = self.manager.sessions.get(request.match_info["session"])
        if session is None or session.camera_id != request.match_info["camera"]:
            raise Refusal(404, "no such session (it may have ended already)")
        await self.manager.close(session.id, "closed by the viewer (DELETE)")
        return _text(200, "session closed")

    async def whep_patch(self, request: web.Request) -> web.StreamResponse:
        self._require_auth(request)
        if request.match_info["session"] not in self.manager.sessions:
            raise Refusal(404, "no such session (it may have ended already)")
        raise Refusal(405, "this server takes the complete offer in the POST; trickle ICE "
                        "and ICE restarts are not supported (start a new session)",
                        {"Allow": "DELETE, OPTIONS"})

    # -- state API ----------------------------------------------------------------------
    async def api_state(self, request: web.Request) -> web.StreamResponse:
        self._require_auth(request)
        return web.json_response(self.state.snapshot(), dumps=_dumps,
                                 headers={"Cache-Control": "no-store"})

    async def api_replay(self, request: web.Request) -> web.StreamResponse:
        """A replay control from the page: JSON with `action` (play, pause, seek, next_mark,
        prev_mark, speed, step) and its `time_ns`, `speed` or `seconds`; the replay's
        answer and its status after it."""
        self._require_auth(request)
        if self.replay is None or self.state.replay_json() is None:
            raise Refusal(404, "this is a vehicle, not a replay: there is nothing to control")
        try:
            body = await request.json()
        except ValueError:
            raise Refusal(400, "the control must be JSON, like {\"action\": \"pause\"}"
                          ) from None
        if not isinstance(body, dict) or body.get("action") not in REPLAY_ACTIONS:
            raise Refusal(400, f"action must be one of {', '.join(REPLAY_ACTIONS)}")
        try:
            command = ReplayCommand.from_body({k: v for k, v in body.items()
                                               if k in ("action", "time_ns", "speed",
                                                        "seconds")})
        except SchemaError as e:
            raise Refusal(400, f"bad control: {e}") from None
        reply = await self.replay(command)
        return web.json_response({"status": reply.status, "detail": reply.detail,
                                  "replay": reply.data or None},
                                 status=200 if reply.status == "accepted" else 409,
                                 dumps=_dumps)

    async def api_ptz(self, request: web.Request) -> web.StreamResponse:
        """Steering from the centre's page: see the module's docstring."""
        self._require_auth(request)
        camera_id = request.match_info["camera"]
        cam = self.state.camera(camera_id)
        if cam is None:
            raise Refusal(404, f"no camera {camera_id[:64]!r} on this vehicle")
        if self.ptz is None or self.state.replay_json() is not None:
            raise Refusal(404, "this uplink steers no camera (a replay is only watched)")
        try:
            body = await request.json()
        except ValueError:
            raise Refusal(400, 'the request must be JSON, like {"action": "move", "pan": 0.5}'
                          ) from None
        command = ptz_request(body)
        if isinstance(command, str):
            raise Refusal(400, command)
        command.who = f"centre page {request.remote or '?'}"
        # The camera service decides (ptz.centre, who holds it, the device): one rule.
        reply = await self.ptz(camera_id, command)
        if command.action not in ("move", "stop") or reply.status != "accepted":
            log.info("ptz %s on %s by %s: %s %s", command.action, camera_id, command.who,
                     reply.status, reply.detail)
        return web.json_response({"status": reply.status, "detail": reply.detail,
                                  "elapsed_ms": reply.elapsed_ms, "data": reply.data},
                                 status=PTZ_HTTP_STATUS.get(reply.status, 502), dumps=_dumps)

    async def api_thumbnail(self, request: web.Request) -> web.StreamResponse:
        self._require_auth(request)
        found = self.state.thumbnail(request.match_info["camera"])
        if found is None:
            raise Refusal(404, "no thumbnail for this camera yet")
        jpeg, captured_ns = found
        return web.Response(body=jpeg, content_type="image/jpeg",
                            headers={"Cache-Control": "no-store",
                                     "X-Captured-Ns": str(captured_ns)})

    async def api_events(self, request: web.Request) -> web.StreamResponse:
        self._require_auth(request)
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no", **CORS})
        await response.prepare(request)
        watcher = self.state.watch()
        stopping: asyncio.Future[Any] = asyncio.ensure_future(self.stopping.wait())
        changes: asyncio.Future[Any] | None = None
        try:
            await response.write(_event("state", self.state.snapshot()))
            while not stopping.done():
                if changes is None:
                    changes = asyncio.ensure_future(watcher.next())
                done, _ = await asyncio.wait({changes, stopping}, timeout=SSE_KEEPALIVE_S,
                                             return_when=asyncio.FIRST_COMPLETED)
                if changes in done:
                    for kind, value in changes.result():
                        await response.write(_event(kind, value))
                    changes = None
                elif not stopping.done():
                    await response.write(b": keep-alive\n\n")
        except ConnectionError:
            pass  # the reader went away
        finally:
            for task in (stopping, changes):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            watcher.close()
        return response


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _event(kind: str, value: Any) -> bytes:
    return f"event: {kind}\ndata: {_dumps(value)}\n\n".encode()


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def tls_context(cert: str | None, key: SecretRef | None, base: Path,
                source: str = "config") -> ssl.SSLContext | None:
    """TLS when a certificate is configured; ConfigError (one line) if it cannot be used."""
    if not cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(_resolve(cert, base), key.path(base) if key else None)
    except (OSError, ssl.SSLError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ConfigError(source, [f"uplink.tls_cert / tls_key: cannot load: {why}"]) from None
    return ctx


def _resolve(path: str, base: Path) -> str:
    p = Path(path)
    return str(p if p.is_absolute() else base / p)


async def serve(http: UplinkHttp, listen: str,
                tls: ssl.SSLContext | None) -> tuple[web.AppRunner, str]:
    """Start listening; the runner (to clean up) and the base URL actually bound."""
    host, port = parse_listen(listen)
    # A short shutdown: long-lived SSE readers must not hold the service past its stop grace.
    runner = web.AppRunner(http.app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=tls)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        raise ConfigError("uplink.listen", [f"cannot listen on {listen}: "
                                            f"{e.strerror or e}"]) from None
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0]
    scheme = "https" if tls else "http"
    shown = f"[{bound[0]}]" if ":" in str(bound[0]) else bound[0]
    return runner, f"{scheme}://{shown}:{bound[1]}"
