"""The centre's media server as the centre page reaches it: roll-call of pushed feeds.

A vehicle pushes chosen cameras to the centre's media server (WHIP, `[uplink.push]`);
the media server fans each out to its viewers, so the satellite carries a pushed feed
once however many operators watch it. When a camera's push is live and `[page]
media_whep_url` is set, the page relays roll-call (WHEP) there rather than through the
tunnel to the vehicle; when the media server will not play it (it has not got the feed
yet, it is down), the page falls back to the tunnel and says why.

The page names each media session itself (``/whep/<vehicle>/<camera>/<id>``) and keeps
the media server's resource URL for it: DELETE and PATCH go where the session is, and
the browser never learns the media server's addresses or token.
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

import aiohttp
from multidict import CIMultiDict

from edge.centre.page.uplinks import RELAYED_HEADERS, Relayed, UplinkError
from edge.config.addresses import fill_url

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0
# Sessions remembered for DELETE/PATCH; viewers that vanish without a DELETE are
# forgotten oldest first past this.
MAX_SESSIONS = 1000


@dataclass(frozen=True)
class MediaSession:
    vehicle: str
    camera: str
    resource: str  # the media server's absolute resource URL


class MediaRefused(Exception):
    """The media server did not take a viewer: why, in one line (for the fallback)."""


class MediaServer:
    """WHEP relayed to the centre's media server (`url_template` with ``{vehicle}`` and
    ``{camera}``; `token`: the media server's bearer token, "" none)."""

    def __init__(self, url_template: str, token: str = "") -> None:
        self.url_template = url_template
        self.token = token
        self._http: aiohttp.ClientSession | None = None
        self._sessions: OrderedDict[str, MediaSession] = OrderedDict()

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))

    async def close(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.close()

    def url(self, vehicle: str, camera: str) -> str:
        return fill_url(self.url_template, vehicle, camera)

    def _shown(self, url: str) -> str:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"

    async def _ask(self, method: str, url: str, body: bytes = b"",
                   content_type: str | None = None) -> tuple[int, bytes, CIMultiDict[str]]:
        assert self._http is not None, "MediaServer.start() first"
        headers = {"Content-Type": content_type} if content_type else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        async with self._http.request(method, url, data=body or None, headers=headers,
                                      allow_redirects=False) as r:
            return r.status, await r.read(), r.headers.copy()

    async def offer(self, vehicle: str, camera: str, body: bytes) -> Relayed:
        """A viewer's offer for a pushed camera: the media server's 201, its `Location`
        made the page's own; MediaRefused (one line) for anything else."""
        url = self.url(vehicle, camera)
        try:
            status, data, got = await self._ask("POST", url, body, "application/sdp")
        except TimeoutError:
            raise MediaRefused(f"the centre's media server ({self._shown(url)}) did not "
                               f"answer within {TIMEOUT_S:g} s") from None
        except (aiohttp.ClientError, OSError) as e:
            why = " ".join(str(e).split()) or type(e).__name__
            raise MediaRefused(f"the centre's media server is unreachable: {why}") from None
        location = got.get("Location")
        if status != 201 or not location:
            line = data.decode(errors="replace").strip().splitlines()[:1]
            why = f"{status}: {line[0][:160]}" if line else str(status)
            if status == 401:
                why += " (page.media_token)"
            raise MediaRefused(f"the centre's media server refused it ({why})")
        sid = secrets.token_hex(8)
        self._sessions[sid] = MediaSession(vehicle, camera, urljoin(url, location))
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return Relayed(status, data, self._headers(got, vehicle, camera, sid))

    def owns(self, vehicle: str, camera: str, session: str) -> bool:
        found = self._sessions.get(session)
        return found is not None and (found.vehicle, found.camera) == (vehicle, camera)

    async def session(self, method: str, vehicle: str, camera: str, session: str,
                      body: bytes = b"", content_type: str | None = None) -> Relayed:
        """DELETE or PATCH (trickle ICE) of a media session this page made."""
        found = self._sessions.get(session)
        if found is None or not self.owns(vehicle, camera, session):
            raise UplinkError(404, "no such session on the centre's media server")
        try:
            status, data, got = await self._ask(method, found.resource, body, content_type)
        except TimeoutError:
            raise UplinkError(504, "the centre's media server did not answer within "
                                   f"{TIMEOUT_S:g} s") from None
        except (aiohttp.ClientError, OSError) as e:
            why = " ".join(str(e).split()) or type(e).__name__
            raise UplinkError(502, f"the centre's media server is unreachable: {why}"
                              ) from None
        if method == "DELETE" and (status < 300 or status == 404):
            self._sessions.pop(session, None)
        return Relayed(status, data, self._headers(got, vehicle, camera, session))

    @staticmethod
    def _headers(got: CIMultiDict[str], vehicle: str, camera: str,
                 sid: str) -> list[tuple[str, str]]:
        out = [(k, v) for k in RELAYED_HEADERS for v in got.getall(k, [])]
        if got.get("Location"):
            out.append(("Location", f"/whep/{quote(vehicle, safe='')}/"
                                    f"{quote(camera, safe='')}/{sid}"))
        return out
