"""Roll-call of a pushed feed plays from the centre's media server, not through the tunnel.

Two vehicles in miniature (tests/support/centre_page.py): north pushes its camera to the
centre's media server (werift, tests/support/whip.py: WHIP in, WHEP out), south pushes
nothing. The page has `media_whep_url`: an aiortc WHEP viewer at the page's
/whep/north/gate gets frames fed by the pushed session while north's uplink serves no
WHEP session for it; south/gate still plays through the tunnel; and a media server that
has nothing under the name asked plays through the tunnel, saying why.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from edge.bench.whep_viewer import WhepViewer
from edge.centre.page import CentrePage, VehicleUplink
from tests.support import eventually
from tests.support.centre_page import AUTH, PAGE_TOKEN, PageWorld, page_world
from tests.support.uplink import TOKEN
from tests.support.whip import WeriftWhip, require_werift

pytestmark = pytest.mark.timeout(120)

# Generous bounds that only keep a broken run from hanging: NATS sourcing, the push's
# ICE and DTLS, and a GOP on a shared 2-core machine.
WITHIN_S = 45.0
FRAMES = 10


async def page_camera(w: PageWorld, vehicle: str, camera: str) -> dict[str, Any] | None:
    async with w.http.get(w.url + "/api/state", headers=AUTH) as r:
        state = await r.json()
    for v in state["vehicles"]:
        for cam in v["cameras"] if v["id"] == vehicle else []:
            if cam["id"] == camera:
                found: dict[str, Any] = cam
                return found
    return None


async def uplink_sessions(w: PageWorld, vehicle: str) -> list[dict[str, Any]]:
    up = w.vehicles[vehicle].uplink
    async with w.http.get(up.url + "/api/state",
                          headers={"Authorization": f"Bearer {TOKEN}"}) as r:
        sessions: list[dict[str, Any]] = (await r.json())["sessions"]
    return sessions


async def until(what: str, check: Any) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WITHIN_S
    while not await check():
        assert loop.time() < deadline, f"{what} within {WITHIN_S:g} s"
        await asyncio.sleep(0.2)


async def test_a_pushed_feed_plays_from_the_media_server(tmp_path: Path) -> None:
    require_werift()
    async with WeriftWhip() as media:
        # One path per feed on the media server, as MediaMTX names them: the vehicle
        # fills it in for each camera it pushes, the page for each it plays.
        template = f"http://127.0.0.1:{media.port}/whep/{{vehicle}}-{{camera}}"
        async with page_world(tmp_path, ("north", "south"),
                              pushes={"north": media.url("{vehicle}-{camera}")},
                              media_whep_url=template) as w:
            async def north_live() -> bool:
                cam = await page_camera(w, "north", "gate")
                return cam is not None and (cam["push"] or {}).get("state") == "live"

            async def south_seen() -> bool:
                return await page_camera(w, "south", "gate") is not None

            await until("north's push of gate live on the page", north_live)
            await until("south's gate on the page", south_seen)

            north = WhepViewer(w.url + "/whep/north/gate", PAGE_TOKEN, http=w.http)
            south = WhepViewer(w.url + "/whep/south/gate", PAGE_TOKEN, http=w.http)
            try:
                await north.start()
                assert north.response_headers["X-Edge-Via"] == "media"
                assert north.location is not None and "/whep/north/gate/" in north.location
                await north.wait_frames(FRAMES, WITHIN_S)

                (pushed_id, pushed), = [(i, s) for i, s in (await media.stats()).items()
                                        if s["name"] == "north-gate"]
                (viewer,) = (await media.viewers()).values()
                assert (viewer["name"], viewer["publisher"], viewer["state"]) == (
                    "north-gate", pushed_id, "connected")
                assert viewer["packets"] > 0 and await media.forwarded() >= viewer["packets"]
                # The satellite carries the feed once: the vehicle serves no viewer of it.
                assert [s for s in await uplink_sessions(w, "north")
                        if s["camera_id"] == "gate"] == []

                await south.start()
                assert south.response_headers["X-Edge-Via"] == "tunnel"
                assert "X-Edge-Via-Note" not in south.response_headers
                await south.wait_frames(FRAMES, WITHIN_S)
                assert [s["camera_id"] for s in await uplink_sessions(w, "south")] == ["gate"]
                assert len(await media.viewers()) == 1
            finally:
                north_deleted = await north.close()
                await south.close()
            assert north_deleted == 200
            (viewer,) = (await media.viewers()).values()
            assert viewer["deleted"] is True

            # A media server without the feed (here: another name) still gets the operator
            # the picture, through the tunnel, and the page says why.
            other = CentrePage(
                w.centre.url, [VehicleUplink("north", w.vehicles["north"].uplink.url, TOKEN)],
                "127.0.0.1:0", PAGE_TOKEN.encode(),
                media_whep_url=f"http://127.0.0.1:{media.port}/whep/nobody-{{camera}}")
            await other.start()
            fallback = WhepViewer(other.url + "/whep/north/gate", PAGE_TOKEN, http=w.http)
            try:
                await eventually(lambda: any(
                    f.camera_id == "gate" and f.state == "live"
                    for f in other.state.vehicles["north"].push),
                    within=WITHIN_S, every=0.1, what="the push live on the second page")
                await fallback.start()
                assert fallback.response_headers["X-Edge-Via"] == "tunnel"
                note = fallback.response_headers["X-Edge-Via-Note"]
                assert note.startswith("the centre's media server refused it (404: nothing "
                                       "is published under nobody-gate")
                await fallback.wait_frames(FRAMES, WITHIN_S)
                assert len(await media.viewers()) == 1  # the first viewer's, ended
            finally:
                await fallback.close()
                await other.close()
