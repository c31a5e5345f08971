"""The centre page's HTTP server (aiohttp): the page, its state API and events, roll-call.

- ``/`` (``index.html``, ``centre.js``, ``centre.css``): static and public, nothing from
  the internet; it asks for the token once and reads everything else with it.
- ``GET /api/state``: every vehicle and the timeline (JSON).
- ``GET /api/events``: server-sent events (read with ``fetch``, which can send the
  token): ``state`` first (everything), then ``vehicle`` (one vehicle, coalesced over
  0.2 s) and ``timeline`` (new entries); every event carries the server's clock so the
  browser ages everything by it.
- ``GET /api/vehicles/<v>/cameras/<c>/thumbnail``: the camera's thumbnail from the
  vehicle's uplink (``X-Captured-Ns``: when it was taken).
- ``POST /whep/<v>/<c>[?profile=…]``, ``DELETE /whep/<v>/<c>/<session>``, ``OPTIONS``:
  WHEP for any camera of any vehicle, relayed to the vehicle's uplink with its token
  (roll-call). So the centre is one WHEP endpoint for every vehicle, for the page and
  for any other WHEP player with the page's token. A camera whose push (WHIP) is live
  plays from the centre's media server instead when ``media_whep_url`` is set
  (:mod:`~edge.centre.page.media_server`), through the tunnel when the media server
  will not play it; ``X-Edge-Via`` (``media`` or ``tunnel``) says which way, and
  ``X-Edge-Via-Note`` why the media server was passed over.

Every request but the static files needs ``Authorization: Bearer <token>`` (compared as
SHA-256 digests in constant time, never logged). Refusals are one plain-text line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from edge.centre.page.feed import Feed
from edge.centre.page.media_server import MediaRefused, MediaServer
from edge.centre.page.state import PageState
from edge.centre.page.uplinks import UplinkError, Uplinks, VehicleUplink
from edge.config import ConfigError
from edge.config.centre_page import CentrePageConfig
from edge.config.centre_site import CentreVehicleConfig
from edge.config.secrets import bearer_ok
from edge.web import web_file

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"
STATIC = {"index.html": "text/html", "centre.js": "text/javascript",
          "centre.css": "text/css"}
MIN_TOKEN_BYTES = 16
SSE_KEEPALIVE_S = 15.0
COALESCE_S = 0.2
MAX_OFFER_BYTES = 256 * 1024
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, DELETE, PATCH, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, Link, ETag, Retry-After, Accept-Post, "
                                     "X-Edge-Stream, X-Captured-Ns, X-Edge-Via, "
                                     "X-Edge-Via-Note",
    "Access-Control-Max-Age": "600",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Refused(Exception):
    def __init__(self, status: int, text: str, headers: Mapping[str, str] | None = None):
        super().__init__(text)
        self.status, self.text, self.headers = status, text, dict(headers or {})


def _text(status: int, text: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=text.rstrip() + "\n", headers=headers)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _event(kind: str, value: Any) -> bytes:
    return f"event: {kind}\ndata: {_dumps(value)}\n\n".encode()


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


class CentrePage:
    """The page for every vehicle: ``await page.start()`` (its URL), ``await page.close()``.

    `nats_url` is the centre's NATS (JetStream domain ``centre``); `nats_options` are
    extra ``nats.connect`` keywords (credentials). `vehicles` are what it shows, each
    with its uplink for roll-call and thumbnails (an empty URL: neither).
    `media_whep_url` is the centre's media server's WHEP URL template (``{vehicle}``,
    ``{camera}``; "" none) and `media_token` its bearer token."""

    def __init__(self, nats_url: str, vehicles: Sequence[VehicleUplink], listen: str,
                 token: bytes, *, contact_timeout_s: float = 12.0,
                 timeline_hours: float = 12.0, timeline_max: int = 500,
                 nats_options: Mapping[str, Any] | None = None,
                 media_whep_url: str = "", media_token: str = "") -> None:
        if len(token) < MIN_TOKEN_BYTES:
            raise ConfigError("page.token", [f"shorter than {MIN_TOKEN_BYTES} characters; "
                                             "make a longer one (e.g. openssl rand -hex 24)"])
        self.listen = listen
        self._token = token
        self.state = PageState([v.id for v in vehicles], contact_timeout_s, timeline_max,
                               uplinks=[v.id for v in vehicles if v.url])
        self.feed = Feed(nats_url, self.state, timeline_hours, nats_options)
        self.uplinks = Uplinks({v.id: v for v in vehicles})
        self.media = MediaServer(media_whep_url, media_token) if media_whep_url else None
        self.url = ""
        self.stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.app = web.Application(middlewares=[self._errors],
                                   client_max_size=MAX_OFFER_BYTES)
        r = self.app.router
        r.add_get("/", self.page)
        r.add_get("/{name:centre\\.(?:js|css)|page_kit\\.js}", self.static)
        r.add_get("/api/state", self.api_state)
        r.add_get("/api/events", self.api_events)
        r.add_get("/api/vehicles/{vehicle}/cameras/{camera}/thumbnail", self.api_thumbnail)
        r.add_route("OPTIONS", "/{path:(?:whep|api)/.*}", self.options)
        r.add_post("/whep/{vehicle}/{camera}", self.whep_post)
        r.add_delete("/whep/{vehicle}/{camera}/{session}", self.whep_delete)
        r.add_patch("/whep/{vehicle}/{camera}/{session}", self.whep_patch)

    @classmethod
    def from_config(cls, config: CentrePageConfig, vehicles: Sequence[CentreVehicleConfig],
                    nats_url: str, config_dir: Path,
                    nats_options: Mapping[str, Any] | None = None) -> CentrePage:
        """The page of a `[page]` section showing the centre's `[[vehicles]]`; ConfigError
        (one line each) for a missing or unreadable token."""
        if config.token is None:
            raise ConfigError("page.token", ['required, e.g. { file = "page.token" } or '
                                             '{ credential = "page-token" }'])
        token = config.token.read_text(config_dir).encode()
        uplinks = []
        for v in vehicles:
            secret = "" if v.uplink_token is None else v.uplink_token.read_text(config_dir)
            uplinks.append(VehicleUplink(v.id, v.uplink_url, secret))
        media_token = "" if config.media_token is None else \
            config.media_token.read_text(config_dir)
        return cls(nats_url, uplinks, config.listen, token,
                   contact_timeout_s=config.contact_timeout_s,
                   timeline_hours=config.timeline_hours, timeline_max=config.timeline_max,
                   nats_options=nats_options, media_whep_url=config.media_whep_url,
                   media_token=media_token)

    # -- life ---------------------------------------------------------------------------
    async def start(self) -> str:
        """Listen, and start reading the centre's NATS (in the background: the page
        serves, and says why, while NATS is away). Returns the base URL bound."""
        host, port = parse_listen(self.listen)
        # A short shutdown: long-lived event readers must not hold up a stop.
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as e:
            await runner.cleanup()
            why = os.strerror(e.errno) if e.errno else " ".join(str(e).split())
            raise ConfigError("page.listen", [f"cannot listen on {self.listen}: {why}"]
                              ) from None
        self._runner = runner
        bound = runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in str(bound[0]) else bound[0]
        self.url = f"http://{shown}:{bound[1]}"
        await self.uplinks.start()
        if self.media is not None:
            await self.media.start()
        self.feed.start()
        return self.url

    async def close(self) -> None:
        self.stopping.set()
        await self.feed.close()
        await self.uplinks.close()
        if self.media is not None:
            await self.media.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # -- plumbing -----------------------------------------------------------------------
    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except Refused as e:
            response = _text(e.status, e.text, e.headers)
        except UplinkError as e:
            response = _text(e.status, e.text)
        except web.HTTPException as e:
            response = _text(e.status, e.reason)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:  # the operator gets one line; the log gets the detail
            log.exception("%s %s failed", request.method, request.path)
            response = _text(500, "internal error in the centre page (its log has the "
                                  "details)")
        if not response.prepared:
            for k, v in CORS.items():
                response.headers.setdefault(k, v)
        return response

    def _require_auth(self, request: web.Request) -> None:
        if not bearer_ok(request.headers.get("Authorization"), self._token):
            why = "no bearer token" if "Authorization" not in request.headers else \
                "wrong bearer token"
            raise Refused(401, f"{why}: send Authorization: Bearer <the centre page token>",
                          {"WWW-Authenticate": 'Bearer realm="edge centre"'})

    def _vehicle(self, request: web.Request) -> str:
        vehicle = request.match_info["vehicle"]
        if vehicle not in self.state.vehicles:
            raise Refused(404, f"no vehicle {vehicle[:64]!r} on this page")
        return vehicle

    # -- the page -----------------------------------------------------------------------
    async def page(self, request: web.Request) -> web.StreamResponse:
        return self._file("index.html")

    async def static(self, request: web.Request) -> web.StreamResponse:
        return self._file(request.match_info["name"])

    def _file(self, name: str) -> web.StreamResponse:
        found = web_file(name, WEB_DIR, STATIC)
        if found is None:
            raise Refused(404, "no such file")
        path, content_type = found
        return web.FileResponse(path, headers={"Content-Type": content_type,
                                               "Cache-Control": "no-cache"})

    # -- state --------------------------------------------------------------------------
    async def api_state(self, request: web.Request) -> web.StreamResponse:
        self._require_auth(request)
        return web.json_response(self.state.snapshot(), dumps=_dumps,
                                 headers={"Cache-Control": "no-store"})

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
                    changes = asyncio.ensure_future(watcher.next(COALESCE_S))
                done, _ = await asyncio.wait({changes, stopping}, timeout=SSE_KEEPALIVE_S,
                                             return_when=asyncio.FIRST_COMPLETED)
                if changes in done:
                    vehicles, entries, everything = changes.result()
                    changes = None
                    await self._send_changes(response, vehicles, entries, everything)
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

    async def _send_changes(self, response: web.StreamResponse, vehicles: set[str],
                            entries: list[Any], everything: bool) -> None:
        if everything:
            await response.write(_event("state", self.state.snapshot()))
            return
        now_ms = int(self.state.clock() * 1000)
        for vehicle in sorted(vehicles):
            await response.write(_event("vehicle", {"now_ms": now_ms,
                                                    **self.state.vehicle_json(vehicle)}))
        if entries:
            await response.write(_event("timeline", {
                "now_ms": now_ms, "entries": [e.to_json() for e in entries]}))

    async def api_thumbnail(self, request: web.Request) -> web.StreamResponse:
        self._require_auth(request)
        vehicle = self._vehicle(request)
        found = await self.uplinks.thumbnail(vehicle, request.match_info["camera"])
        if found is None:
            raise Refused(404, "no thumbnail for this camera yet")
        jpeg, captured_ns = found
        return web.Response(body=jpeg, content_type="image/jpeg",
                            headers={"Cache-Control": "no-store",
                                     "X-Captured-Ns": captured_ns})

    # -- roll-call: WHEP relayed to the vehicle -----------------------------------------
    async def options(self, request: web.Request) -> web.StreamResponse:
        response = web.Response(status=204)
        parts = request.path.split("/")
        if len(parts) == 4 and parts[1] == "whep":
            response.headers["Accept-Post"] = "application/sdp"
            if bearer_ok(request.headers.get("Authorization"), self._token) and \
                    parts[2] in self.state.vehicles:
                # The vehicle's ICE servers (TURN credentials) go to authenticated askers.
                with contextlib.suppress(UplinkError):
                    relayed = await self.uplinks.whep("OPTIONS", parts[2], parts[3])
                    for k, v in relayed.headers:
                        if k == "Link":
                            response.headers.add(k, v)
        return response

    async def whep_post(self, request: web.Request) -> web.StreamResponse:
        self._require_auth(request)
        vehicle = self._vehicle(request)
        if request.content_type != "application/sdp":
            got = request.headers.get("Content-Type", "no Content-Type")
            raise Refused(415, f"the offer must be sent as Content-Type: application/sdp "
                               f"(got {got[:80]})", {"Accept-Post": "application/sdp"})
        camera = request.match_info["camera"]
        offer = await request.read()
        note = ""
        if self.media is not None and self._pushed_live(vehicle, camera):
            try:
                relayed = await self.media.offer(vehicle, camera, offer)
            except MediaRefused as e:
                # The operator still gets the camera, the long way round, and is told.
                note = str(e)
                log.info("roll-call %s/%s through the tunnel: %s", vehicle, camera, note)
            else:
                response = self._relay(relayed.status, relayed.body, relayed.headers)
                response.headers["X-Edge-Via"] = "media"
                return response
        relayed = await self.uplinks.whep(
            "POST", vehicle, camera, query=request.query_string,
            body=offer, content_type="application/sdp")
        response = self._relay(relayed.status, relayed.body, relayed.headers)
        response.headers["X-Edge-Via"] = "tunnel"
        if note:
            # A header is one line of Latin-1: the note is one line, made ASCII here.
            response.headers["X-Edge-Via-Note"] = note.encode("ascii", "replace").decode()
        return response

    def _pushed_live(self, vehicle: str, camera: str) -> bool:
        return any(f.camera_id == camera and f.state == "live"
                   for f in self.state.vehicles[vehicle].push)

    def _media_session(self, request: web.Request, vehicle: str) -> bool:
        return self.media is not None and self.media.owns(
            vehicle, request.match_info["camera"], request.match_info["session"])

    async def whep_delete(self, request: web.Request) -> web.StreamResponse:
        self._require_auth(request)
        vehicle = self._vehicle(request)
        if self.media is not None and self._media_session(request, vehicle):
            relayed = await self.media.session("DELETE", vehicle, request.match_info["camera"],
                                               request.match_info["session"])
        else:
            relayed = await self.uplinks.whep("DELETE", vehicle, request.match_info["camera"],
                                              request.match_info["session"])
        return self._relay(relayed.status, relayed.body, relayed.headers)

    async def whep_patch(self, request: web.Request) -> web.StreamResponse:
        self._require_auth(request)
        vehicle = self._vehicle(request)
        if self.media is not None and self._media_session(request, vehicle):
            # Trickle ICE or an ICE restart is the media server's to take or refuse.
            relayed = await self.media.session(
                "PATCH", vehicle, request.match_info["camera"], request.match_info["session"],
                await request.read(), request.headers.get("Content-Type"))
            return self._relay(relayed.status, relayed.body, relayed.headers)
        raise Refused(405, "this endpoint takes the complete offer in the POST; trickle ICE "
                           "and ICE restarts are not supported (start a new session)",
                      {"Allow": "DELETE, OPTIONS"})

    @staticmethod
    def _relay(status: int, body: bytes, headers: list[tuple[str, str]]) -> web.Response:
        response = web.Response(status=status, body=body)
        for k, v in headers:
            if k == "Content-Type":
                response.headers[k] = v
            else:
                response.headers.add(k, v)
        return response
