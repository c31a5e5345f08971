"""The vehicles' uplinks as the centre page reaches them: roll-call (WHEP) and thumbnails.

The page's server relays, the browser never talks to a vehicle's HTTP itself: the
vehicle's token stays at the centre, the browser has one origin and one token, and
only the centre needs a route to the vehicles' tunnel addresses for HTTP. The media
itself goes browser ↔ vehicle over ICE (the uplink offers the address the request
reached it at: its tunnel address), so the centre's network must route the tunnel
addresses for its operators' machines.

Thumbnails are not on NATS (the bridge keeps them on the vehicle); one is fetched from
the vehicle's uplink (``/api/cameras/<id>/thumbnail``) when a browser asks, at most once
per :data:`THUMBNAIL_TTL_S` per camera however many browsers ask.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
from multidict import CIMultiDict

THUMBNAIL_TTL_S = 5.0
TIMEOUT_S = 10.0
# What a WHEP answer carries that a player needs (Location is rewritten).
RELAYED_HEADERS = ("Content-Type", "Link", "Retry-After", "X-Edge-Stream", "ETag",
                   "Accept-Post", "Allow")


@dataclass(frozen=True)
class VehicleUplink:
    """A vehicle's uplink: its base URL as the centre reaches it, and its token."""

    id: str
    url: str
    token: str


@dataclass
class Relayed:
    status: int
    body: bytes
    headers: list[tuple[str, str]]


class UplinkError(Exception):
    """A vehicle's uplink that cannot be asked: status for the browser, one line."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


@dataclass
class _Thumb:
    at: float
    result: tuple[bytes, str] | None  # (jpeg, captured ns) or None: the vehicle has none


class Uplinks:
    def __init__(self, vehicles: dict[str, VehicleUplink]) -> None:
        self.vehicles = vehicles
        self._http: aiohttp.ClientSession | None = None
        self._thumbs: dict[tuple[str, str], _Thumb] = {}
        self._fetching: dict[tuple[str, str], asyncio.Future[tuple[bytes, str] | None]] = {}

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S))

    async def close(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.close()

    def _vehicle(self, vehicle: str) -> VehicleUplink:
        found = self.vehicles.get(vehicle)
        if found is None or not found.url:
            raise UplinkError(404, f"no uplink configured for vehicle {vehicle} "
                                   "(page.vehicles uplink_url): no roll-call or thumbnails")
        return found

    async def _ask(self, v: VehicleUplink, method: str, path: str, body: bytes = b"",
                   headers: dict[str, str] | None = None) -> tuple[int, bytes, CIMultiDict[str]]:
        assert self._http is not None, "Uplinks.start() first"
        hdrs = {"Authorization": f"Bearer {v.token}", **(headers or {})}
        try:
            async with self._http.request(method, v.url + path, data=body or None,
                                          headers=hdrs, allow_redirects=False) as r:
                data = await r.read()
                status, got = r.status, r.headers.copy()
        except TimeoutError:
            raise UplinkError(504, f"vehicle {v.id}'s uplink did not answer within "
                                   f"{TIMEOUT_S:g} s") from None
        except (aiohttp.ClientError, OSError) as e:
            why = " ".join(str(e).split()) or type(e).__name__
            raise UplinkError(502, f"vehicle {v.id}'s uplink is unreachable: {why}") from None
        if status == 401:
            # The centre's token for this vehicle, not the operator's: say whose it is.
            raise UplinkError(502, f"vehicle {v.id}'s uplink refused the centre's token for "
                                   "it (page.vehicles uplink_token)")
        return status, data, got

    async def whep(self, method: str, vehicle: str, camera: str, session: str = "",
                   query: str = "", body: bytes = b"",
                   content_type: str | None = None) -> Relayed:
        """A WHEP request relayed to `vehicle`'s uplink; its answer with `Location` made
        the centre's own (``/whep/<vehicle>/<camera>/<session>``)."""
        v = self._vehicle(vehicle)
        path = f"/whep/{quote(camera, safe='')}"
        if session:
            path += f"/{quote(session, safe='')}"
        if query:
            path += f"?{query}"
        headers = {"Content-Type": content_type} if content_type else {}
        status, data, got = await self._ask(v, method, path, body, headers)
        out = [(k, val) for k in RELAYED_HEADERS for val in got.getall(k, [])]
        location = got.get("Location")
        if location:
            sid = location.rstrip("/").rpartition("/")[2]
            out.append(("Location", f"/whep/{quote(vehicle, safe='')}/"
                                    f"{quote(camera, safe='')}/{sid}"))
        return Relayed(status, data, out)

    async def thumbnail(self, vehicle: str, camera: str) -> tuple[bytes, str] | None:
        """The camera's latest thumbnail (JPEG, captured ns) or None while it has none."""
        v = self._vehicle(vehicle)
        key = (vehicle, camera)
        now = time.monotonic()
        held = self._thumbs.get(key)
        if held is not None and now - held.at < THUMBNAIL_TTL_S:
            return held.result
        pending = self._fetching.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch_thumbnail(v, camera))
            self._fetching[key] = pending
            pending.add_done_callback(lambda _: self._fetching.pop(key, None))
        return await asyncio.shield(pending)

    async def _fetch_thumbnail(self, v: VehicleUplink, camera: str) -> tuple[bytes, str] | None:
        status, data, got = await self._ask(
            v, "GET", f"/api/cameras/{quote(camera, safe='')}/thumbnail")
        result = None
        if status == 200:
            result = (data, str(got.get("X-Captured-Ns", "")))
        elif status != 404:
            raise UplinkError(502, f"vehicle {v.id}'s uplink answered {status} for a "
                                   "thumbnail")
        self._thumbs[(v.id, camera)] = _Thumb(time.monotonic(), result)
        return result
