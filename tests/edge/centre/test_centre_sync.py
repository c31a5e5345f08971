"""The centre's sourcing and its watch (:mod:`edge.centre.sync`) against real, keyed NATS
servers: the figures, a source stalled by a centre restart and kicked, garbage on a
vehicle's subject beside the bridge's own messages; and `edge centre nats` with
`edge centre` as an operator runs them, two vehicles on one host and no tunnel."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from edge.bus import topics
from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.bus.messages import Alert
from edge.centre.sync import RESUME_GRACE_S, CentreSync
from edge.config import VehicleConfig
from edge.config.centre_site import CentreNatsConfig
from edge.services.sync import SyncService
from edge.sync.credentials import write_key_pair
from edge.sync.streams import centre_stream_name, ensure_vehicle_stream
from tests.support import REPO, eventually, free_port, hosted, run_edge
from tests.support.sync import VEHICLE, Pair, PairKeys, body, nats_pair, stream_messages

STREAM = centre_stream_name(VEHICLE)
PAGE_TOKEN = "centre-page-token-0123456789"
# Functional bounds only: a loaded 2-core machine is slow, not wrong. Without the kick
# a source stalled by a centre restart was seen to resume after 40 s or more, so the
# restart test waits longer than that and checks the kick happened.
ARRIVE_S = 30.0
RESUME_S = 90.0


def _watch_config(pair: Pair, tmp: Path, stall_after_s: float = 1.0) -> CentreNatsConfig:
    assert pair.keys is not None
    (tmp / "centre-client.seed").write_text(pair.keys.centre_client)
    spec = pair.centre.spec
    return CentreNatsConfig(port=spec.port, monitor_port=spec.monitor_port,
                            leaf_port=spec.leaf_listen_port,
                            client_seed={"file": "centre-client.seed"},  # type: ignore[arg-type]
                            stall_after_s=stall_after_s, max_age_hours=1,
                            max_mb_per_vehicle=64)


@contextlib.asynccontextmanager
async def watching(pair: Pair, tmp: Path, lines: list[str], stall_after_s: float = 1.0
                   ) -> AsyncIterator[CentreSync]:
    sync = CentreSync(_watch_config(pair, tmp, stall_after_s), [VEHICLE], tmp,
                      on_line=lines.append)
    await sync.start()
    task = asyncio.create_task(sync.run(every_s=0.25))
    try:
        yield sync
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sync.close()


async def _publish(pair: Pair, subjects_payloads: list[tuple[str, bytes, dict[str, str]]]
                   ) -> None:
    nc = await pair.vehicle_client()
    try:
        await ensure_vehicle_stream(nc.jsm(), VEHICLE, 3600, 1 << 26)
        js = nc.jetstream()
        for subject, payload, headers in subjects_payloads:
            await js.publish(subject, payload, headers=headers or None)
    finally:
        await nc.close()


def _alerts(first: int, count: int) -> list[tuple[str, bytes, dict[str, str]]]:
    return [(f"veh.{VEHICLE}.alert.gate", json.dumps({"text": f"{i}"}).encode(),
             {"Edge-Ts": str(time.time_ns())}) for i in range(first, first + count)]


@pytest.mark.timeout(150)
async def test_a_source_stalled_by_a_centre_restart_is_said_and_kicked_and_catches_up(
        tmp_path: Path) -> None:
    lines: list[str] = []
    async with nats_pair(tmp_path, PairKeys.fresh()) as pair, \
            watching(pair, tmp_path, lines) as sync:
        figures = sync.figures()[VEHICLE]
        await _publish(pair, _alerts(0, 10))
        await eventually(lambda: figures.messages == 10 and figures.leaf_connected,
                         within=ARRIVE_S, what="10 messages sourced")
        assert figures.last_vehicle_ts is not None and figures.malformed == 0
        assert figures.last_message_at is not None and not figures.stalled
        assert figures.kicks == 0 and "vehicle veh1: leaf link up" in lines

        await pair.centre.stop()
        await _publish(pair, _alerts(10, 10))
        await pair.centre.start()
        await eventually(lambda: figures.messages == 20, within=RESUME_S,
                         what="the backlog after the centre's restart")
        assert figures.kicks >= 1, lines
        assert any("source stalled" in line for line in lines), lines
        assert pair.keys is not None
        msgs = await stream_messages(pair.centre.url, STREAM, pair.keys.centre_client)
    # In order, once each: the kick resumes the source after what the centre holds.
    assert [body(m)["text"] for m in msgs] == [f"{i}" for i in range(20)]


async def test_garbage_on_a_vehicle_subject_is_counted_and_the_bridges_messages_pass(
        tmp_path: Path, endpoints: Endpoints, bus: BusClient) -> None:
    keys = PairKeys.fresh()
    lines: list[str] = []
    (tmp_path / "bridge.seed").write_text(keys.vehicle_client)
    async with nats_pair(tmp_path, keys) as pair, watching(pair, tmp_path, lines) as sync:
        figures = sync.figures()[VEHICLE]
        config = VehicleConfig.model_validate({"vehicle": VEHICLE, "sync": {
            "enabled": True, "nats_url": pair.vehicle.url,
            "client_seed": {"file": "bridge.seed"}}})
        async with hosted(SyncService, "sync", config, tmp_path / "v.toml", endpoints) as h:
            bridge = h.service.bridge
            assert bridge is not None

            async def sent(text: str) -> bool:
                bus.publish(topics.alert("gate"), Alert(text=text))
                await asyncio.sleep(0.2)
                # At the centre, not the bridge's count: its own health may come first.
                msgs = await stream_messages(pair.centre.url, STREAM, keys.centre_client)
                return any(m.subject == f"veh.{VEHICLE}.alert.gate" for m in msgs)

            loop = asyncio.get_running_loop()
            deadline = loop.time() + ARRIVE_S
            while not await sent("before"):  # the service's subscription may be joining
                assert loop.time() < deadline, "the bridge never published"
            # Someone else's client publishes garbage on the vehicle's subjects. The watch
            # reads the newest message of each poll: garbage followed at once by the
            # bridge's health is not seen, so it is sent again until it is.
            while figures.malformed < 1:
                assert loop.time() < deadline + ARRIVE_S, "the garbage never seen"
                await _publish(pair, [
                    (f"veh.{VEHICLE}.alert.junk", b"\xff\x00not json", {}),
                    (f"veh.{VEHICLE}.x", b"{}", {"Edge-Ts": "yesterday"})])
                await asyncio.sleep(0.5)
            published = bridge.stats.published
            bus.publish(topics.alert("gate"), Alert(text="after"))
            await eventually(lambda: bridge.stats.published > published, within=ARRIVE_S,
                             what="the bridge's next message")
            await eventually(lambda: figures.last_vehicle_ts is not None
                             and figures.messages >= published + 2, within=ARRIVE_S,
                             what="the bridge's message at the centre")
            assert bridge.connected and not bridge.stats.rejected
        malformed_lines = [line for line in lines if "not the bridge's" in line]
        assert len(malformed_lines) == 1 and "\n" not in malformed_lines[0]
        assert not figures.error and not figures.stalled
        msgs = await stream_messages(pair.centre.url, STREAM, keys.centre_client)
    texts = [body(m).get("text") for m in msgs if m.subject == f"veh.{VEHICLE}.alert.gate"]
    assert "before" in texts and texts[-1] == "after"


def _centre_toml(tmp: Path, vehicles: list[str]) -> Path:
    write_key_pair(tmp, "centre-client")
    blocks = []
    for v in vehicles:
        write_key_pair(tmp, f"{v}-leaf")
        blocks.append(f'[[vehicles]]\nid = "{v}"\nnats_key = {{ file = "{v}-leaf.pub" }}\n')
    (tmp / "page.token").write_text(PAGE_TOKEN)
    path = tmp / "centre.toml"
    path.write_text(
        f'listen = "127.0.0.1"\nprobe_port = {free_port()}\n\n[nats]\n'
        f"port = {free_port()}\nmonitor_port = {free_port()}\nleaf_port = {free_port()}\n"
        f'store_dir = "store"\nclient_seed = {{ file = "centre-client.seed" }}\n\n'
        f'[page]\nlisten = "127.0.0.1:{free_port()}"\ntoken = {{ file = "page.token" }}\n\n'
        + "\n".join(blocks))
    return path


async def _edge(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge", *args, cwd=REPO, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})


async def _line_with(proc: asyncio.subprocess.Process, text: str, within: float) -> str:
    assert proc.stderr is not None
    async with asyncio.timeout(within):
        while line := (await proc.stderr.readline()).decode():
            if text in line:
                return line
    raise AssertionError(f"the process ended without saying {text!r}")


async def _stop(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(f"did not stop on SIGTERM: {err.decode()[-2000:]}") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.mark.timeout(90)
async def test_edge_centre_sources_every_listed_vehicle_without_a_tunnel(
        tmp_path: Path) -> None:
    config = _centre_toml(tmp_path, ["cv-01", "cv-02"])
    server = await _edge("centre", "nats", "--config", str(config))
    try:
        ready = await _line_with(server, "JetStream domain centre", ARRIVE_S)
        assert "nkeys" in ready
        centre = await _edge("centre", "--config", str(config))
        try:
            await _line_with(centre, "sourcing 2 vehicle(s)", ARRIVE_S)
            said = await _line_with(centre, "centre page on http://", ARRIVE_S)
            url = said.split("centre page on ")[1].strip()
            # The page shows both listed vehicles, to its token holders only.
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{url}/api/state") as r:
                    assert r.status == 401
                async with http.get(f"{url}/api/state", headers={
                        "Authorization": f"Bearer {PAGE_TOKEN}"}) as r:
                    assert r.status == 200
                    state = await r.json()
            assert [v["id"] for v in state["vehicles"]] == ["cv-01", "cv-02"]
        finally:
            code, out = await _stop(centre)
        assert code == 0
        status = json.loads(out.strip().splitlines()[-1])
        sync = status["sync"]["vehicles"]
        assert sorted(sync) == ["cv-01", "cv-02"]
        assert sync["cv-01"]["stream"] == "VEHICLE_cv-01" and not sync["cv-01"]["stalled"]
        assert sync["cv-02"]["leaf_connected"] is False
        assert (tmp_path / "store" / "jetstream").is_dir()
    finally:
        code, _ = await _stop(server)
    assert code == 0


async def test_edge_centre_nats_with_a_bad_vehicle_key_is_one_line_and_exit_2(
        tmp_path: Path) -> None:
    config = _centre_toml(tmp_path, ["cv-01"])
    (tmp_path / "cv-01-leaf.pub").write_text("not a key\n")
    code, _, err = await run_edge("centre", "nats", "--config", str(config))
    assert code == 2 and err.count("\n") == 1, err
    assert "cv-01-leaf.pub" in err and "nkey user public key" in err



async def test_a_source_idle_after_the_leaf_link_returns_is_restarted_at_once() -> None:
    """nats-server was seen to leave a source idle for 30-45 s after its vehicle's leaf
    link came back with a backlog (`edge bench sync`: its consumer request, sent into the
    dead link, times out first). The watch's rule, on the figures it reads: a source not
    seen moving within RESUME_GRACE_S of the link's return is restarted then, long
    before the stall rule; one that moves is left alone. (Whether nats-server stalls
    depends on the outage; the bench measures it, this checks our rule.)"""
    now = [1000.0]
    lines: list[str] = []
    sync = CentreSync(CentreNatsConfig(stall_after_s=300.0), ["a", "b"], Path("."),
                      on_line=lines.append, clock=lambda: now[0])
    kicked: list[str] = []

    async def kick(vehicle: str) -> None:
        kicked.append(vehicle)
        sync.vehicles[vehicle].kicks += 1

    sync.kick = kick  # type: ignore[method-assign]
    for vehicle in ("a", "b"):
        sync._watch[vehicle].leaf_up_at = now[0]  # as refresh() notes a link coming up
        figures = sync.vehicles[vehicle]
        figures.leaf_connected, figures.active_s, figures.lag = True, 75.0, None
    await sync._judge(sync.vehicles["a"])
    assert kicked == []  # within the grace: nats-server may yet resume it
    now[0] += RESUME_GRACE_S
    sync.vehicles["b"].active_s = 0.5  # b's source moved after its link came back
    for vehicle in ("a", "b"):
        await sync._judge(sync.vehicles[vehicle])
    assert kicked == ["a"] and not sync.vehicles["a"].stalled
    assert lines == ["vehicle a: source idle 2 s after the leaf link came back"]
    now[0] += 10
    await sync._judge(sync.vehicles["a"])  # once per return of the link, not again
    assert kicked == ["a"]
