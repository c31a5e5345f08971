"""`edge run uplink` as production runs it, its place in the demo, and its token."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge.bus.client import BusClient
from edge.bus.endpoints import Endpoints
from edge.config import ConfigError, SecretRef, parse_config
from edge.runtime.supervisor import plan
from edge.services import SERVICES
from edge.services.uplink import UplinkService
from edge.uplink.auth import bearer_ok, load_token
from tests.support import REPO, free_port
from tests.support.uplink import TOKEN, hosted, write_config

pytestmark = pytest.mark.timeout(60)


def test_uplink_is_a_service_the_demo_runs() -> None:
    assert SERVICES["uplink"].target == "edge.services.uplink:UplinkService"
    demo = parse_config({"uplink": {"listen": "127.0.0.1:8800"}})
    assert "uplink" in [c.name for c in plan(demo, Path("demo.toml"))]
    off = parse_config({"uplink": {"enabled": False}})
    assert "uplink" not in [c.name for c in plan(off, Path("v.toml"))]


def test_demo_config_serves_on_8800_with_its_token_file() -> None:
    from edge.config import load_config

    cfg = load_config(REPO / "config" / "demo.toml")
    assert cfg.uplink.listen == "127.0.0.1:8800"
    assert load_token(cfg.uplink, REPO / "config") == \
        (REPO / "config" / "demo.token").read_text().strip().encode()
    assert {c.id for c in cfg.cameras} >= {"north-gate", "east-yard", "furnace-3", "south-road"}


def test_token_problems_are_one_line_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def problem(uplink: dict[str, object]) -> str:
        with pytest.raises(ConfigError) as e:
            load_token(parse_config({"uplink": uplink}).uplink, tmp_path, "v.toml")
        return str(e.value)

    assert "uplink.token: required" in problem({})
    assert "cannot read secret" in problem({"token": {"file": "missing.token"}})
    (tmp_path / "short.token").write_text("abc\n")
    assert "shorter than 16 characters" in problem({"token": {"file": "short.token"}})
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert "CREDENTIALS_DIRECTORY" in problem({"token": {"credential": "uplink-token"}})
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    (tmp_path / "uplink-token").write_text(TOKEN + "\n")
    cfg = parse_config({"uplink": {"token": {"credential": "uplink-token"}}})
    assert load_token(cfg.uplink, tmp_path) == TOKEN.encode()


def test_bearer_comparison() -> None:
    token = TOKEN.encode()
    assert bearer_ok(f"Bearer {TOKEN}", token) and bearer_ok(f"bearer  {TOKEN} ", token)
    for bad in (None, "", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN[:-1]}", "Bearer ",
                f"Bearer {TOKEN}{TOKEN}"):
        assert not bearer_ok(bad, token)


async def test_edge_run_uplink_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "uplink.token").write_text(TOKEN + "\n")
    config = tmp_path / "vehicle.toml"
    config.write_text(f'[bus]\nruntime_dir = "{tmp_path}"\n[uplink]\n'
                      f'listen = "127.0.0.1:{port}"\ntoken = {{ file = "uplink.token" }}\n')
    env = dict(os.environ, EDGE_RUNTIME_DIR=str(tmp_path))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge", "run", "uplink", "--config", str(config), cwd=REPO,
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        async with aiohttp.ClientSession() as http:
            async def state() -> dict[str, Any] | None:
                """The state, or None while the service is not listening yet."""
                try:
                    async with http.get(f"http://127.0.0.1:{port}/api/state",
                                        headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                        assert r.status == 200
                        answer: dict[str, Any] = await r.json()
                        return answer
                except aiohttp.ClientConnectionError:
                    return None

            # Asked again until it answers: a starting process, however slow, is not a failure.
            async with asyncio.timeout(40):
                while (answer := await state()) is None:
                    await asyncio.sleep(0.05)
            assert answer["cameras"] == []
            # A centre system following the events must not hold the stop up.
            async with http.get(f"http://127.0.0.1:{port}/api/events",
                                headers={"Authorization": f"Bearer {TOKEN}"}) as events:
                assert (await events.content.readuntil(b"\n\n")).startswith(b"event: state")
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(proc.wait(), 6) == 0
        assert proc.stderr is not None
        log = (await proc.stderr.read()).decode()
        assert TOKEN not in log and "Traceback" not in log
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def self_signed(tmp: Path) -> tuple[Path, Path]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vehicle")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return tmp / "cert.pem", tmp / "key.pem"


async def test_https_when_a_certificate_is_configured(
        tmp_path: Path, endpoints: Endpoints, bus: BusClient) -> None:
    cert, _ = self_signed(tmp_path)
    config, path = write_config(tmp_path, [], {"tls_cert": "cert.pem", "tls_key": "key.pem"})
    async with hosted(UplinkService, "uplink", config, path, endpoints) as service:
        assert isinstance(service, UplinkService) and service.url.startswith("https://127.0.0.1:")
        tls = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{service.url}/api/state", ssl=tls,
                                headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                assert r.status == 200 and (await r.json())["vehicle"] == "test"
            with pytest.raises(aiohttp.ClientError):
                async with http.get(service.url.replace("https:", "http:") + "/api/state"):
                    pass


def test_unusable_tls_files_are_one_line(tmp_path: Path) -> None:
    from edge.uplink.whep import tls_context

    with pytest.raises(ConfigError) as e:
        tls_context("missing.pem", SecretRef(file="missing.key"), tmp_path, "v.toml")
    assert str(e.value) == ("v.toml: uplink.tls_cert / tls_key: cannot load: "
                            "No such file or directory")
    (tmp_path / "bad.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError):
        tls_context("bad.pem", None, tmp_path)
