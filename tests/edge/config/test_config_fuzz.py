"""`edge config check` on hostile files: one line per problem naming the file, never a traceback.

A few real CLI runs (the operator's view: exit code and stderr), then hypothesis
over the loader in-process: random bytes, random TOML, deep nesting, and every
URL, port and address field of the schema filled with good and bad values.
"""

from __future__ import annotations

import ipaddress
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from edge.config import ConfigError, VehicleConfig, load_config, parse_config
from tests.support import run_edge

pytestmark = pytest.mark.timeout(120)

# What a Python exception leaks into a message when it is passed on as-is.
INTERNALS = re.compile(r"Error:|Traceback|NoneType|StopIteration|not in list|"
                       r"object has no attribute|RecursionError|UnicodeDecodeError")

CAMERA = '[[cameras]]\nid = "gate"\nname = "Gate"\nmain = "rtsp://127.0.0.1:8554/gate/main"\n'


def assert_one_line_each(err: ConfigError, path: str) -> None:
    assert err.problems, "a ConfigError with no problem"
    for line in str(err).split("\n"):
        assert line.startswith(f"{path}:"), line
        assert not INTERNALS.search(line), line
        assert len(line) < 600, line  # a huge value is shown cut short, not in full
    for problem in err.problems:
        assert "\n" not in problem and "\r" not in problem, repr(problem)


def load_text(data: bytes) -> VehicleConfig | ConfigError:
    """`load_config` on a real file holding `data`: the config, or its ConfigError."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vehicle.toml"
        path.write_bytes(data)
        try:
            return load_config(path)
        except ConfigError as e:
            assert_one_line_each(e, str(path))
            return e


def problems_of(data: dict[str, Any]) -> list[str]:
    try:
        parse_config(data, "v.toml")
    except ConfigError as e:
        assert_one_line_each(e, "v.toml")
        return e.problems
    return []


# --------------------------------------------------------------------------- the CLI

async def check(tmp_path: Path, data: bytes) -> tuple[int, list[str], Path]:
    path = tmp_path / "vehicle.toml"
    path.write_bytes(data)
    code, out, err = await run_edge("config", "check", str(path))
    assert "Traceback" not in err and not INTERNALS.search(err), err
    return code, err.strip().split("\n"), path


async def test_cli_refuses_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    code, lines, path = await check(tmp_path, CAMERA.encode() + b'sub = "caf\xe9"\n')
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"{path}") and "UTF-8" in lines[0] and "line 5" in lines[0]


@pytest.mark.parametrize("opener", ["[", "{a="])
async def test_cli_refuses_deep_nesting(tmp_path: Path, opener: str) -> None:
    closer = {"[": "]", "{a=": "}"}[opener]
    code, lines, path = await check(tmp_path, f"x = {opener * 5000}1{closer * 5000}\n".encode())
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"{path}") and "nested" in lines[0]


@pytest.mark.parametrize(("url", "words"), [
    ("rtsp://", "no host"),
    ("rtsp://cam.local:99999/main", "port 99999"),
    ("rtsp://0.00.-1.999999999999:65536/main", "0.00.-1.999999999999"),
    ("rtsp://user:secret@:554/main", "no host"),
])
async def test_cli_refuses_bad_rtsp_urls(tmp_path: Path, url: str, words: str) -> None:
    code, lines, path = await check(tmp_path, (CAMERA + f'sub = "{url}"\n').encode())
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"{path}:5: cameras[0].sub: ") and words in lines[0], lines
    assert "secret" not in lines[0]  # a password in a URL is never echoed


# --------------------------------------------------------------------------- random files

TOML_BITS = st.sampled_from([
    "[", "]", "[[", "]]", "{", "}", "=", ",", ".", '"', "'", '"""', "\n", " ", "#",
    "cameras", "uplink", "drones", "endpoints", "id", "main", "listen", "url", "port",
    '"rtsp://h:1/x"', "1", "-1", "99999", "inf", "nan", "true", "1979-05-27", "0x1f",
    "\\u0000", "\x00", "\xe9", "\ud7ff",
])
toml_like = st.lists(TOML_BITS, max_size=60).map("".join)


@settings(max_examples=150, deadline=None)
@given(data=st.one_of(
    st.binary(max_size=400),
    toml_like.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.builds(lambda head, tail: (CAMERA + head).encode() + tail,
              toml_like, st.binary(max_size=8)),
    st.builds(lambda depth, o: f"x = {o * depth}1{o.replace('[', ']') * depth}".encode(),
              st.integers(1, 4000), st.sampled_from(["[", "[ "])),
))
@example(data=b"\xff\xfe[cameras]")
@example(data=b"x = " + b"[" * 3000 + b"]" * 3000)
def test_any_file_loads_or_names_its_problems(data: bytes) -> None:
    load_text(data)


# --------------------------------------------------------------------------- addresses

LABEL = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?\Z")
HOSTNAMES = st.lists(LABEL, min_size=1, max_size=4).map(".".join).filter(
    lambda h: not h.rsplit(".", 1)[-1].isdigit())
IPV4 = st.ip_addresses(v=4).map(str)
IPV6 = st.ip_addresses(v=6).map(lambda a: f"[{a}]")
GOOD_HOST = st.one_of(HOSTNAMES, IPV4, IPV6)
BAD_HOST = st.one_of(
    st.sampled_from(["0.00.-1.999999999999", "999.1.1.1", "1.2.3", "-cam", "cam-", "a..b",
                     "cam_1", "[::zz]", "[1.2.3.4]", "ca m", "x" * 64, "1.2.3.4.5", "256.0.0.1"]),
    st.builds(lambda a, bad, b: a + bad + b, LABEL, st.sampled_from("!$%&'()*,;=\\~`^"), LABEL),
)
GOOD_PORT = st.integers(1, 65535)
BAD_PORT = st.one_of(st.integers(65536, 10**12), st.just(0), st.sampled_from(["x", "1e3", ""]))


def camera_with(**fields: str) -> dict[str, Any]:
    return {"cameras": [{"id": "gate", "name": "Gate", "main": "rtsp://h/x", **fields}]}


@settings(max_examples=120, deadline=None)
@given(host=GOOD_HOST, port=st.none() | GOOD_PORT, scheme=st.sampled_from(["rtsp", "rtsps"]),
       user=st.none() | st.just("admin:p%40ss@"), path=st.sampled_from(["", "/", "/a/b?x=1"]))
def test_good_rtsp_urls_pass(host: str, port: int | None, scheme: str, user: str | None,
                             path: str) -> None:
    url = f"{scheme}://{user or ''}{host}{'' if port is None else f':{port}'}{path}"
    assert problems_of(camera_with(sub=url)) == [], url


@settings(max_examples=120, deadline=None)
@given(st.one_of(
    st.builds(lambda h, p: f"rtsp://{h}:{p}/x", BAD_HOST, GOOD_PORT),
    st.builds(lambda h, p: f"rtsp://{h}:{p}/x", GOOD_HOST, BAD_PORT),
    st.sampled_from(["rtsp://", "rtsp:///x", "rtsp://:554/x", "rtsp://u:p@/x", "rtsp//h/x",
                     "rtsp://h:/x", "rtsp://h x/y", "rtsp://h/\nx", "rtsp://[::1/x"]),
))
@example("rtsp://0.00.-1.999999999999:65536/x")
def test_bad_rtsp_urls_are_refused_naming_the_key(url: str) -> None:
    out = problems_of(camera_with(main=url))
    assert len(out) == 1 and out[0].startswith("cameras[0].main: "), (url, out)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@settings(max_examples=120, deadline=None)
@given(good=st.booleans(), kind=st.sampled_from(["listen", "endpoint", "connection", "ice",
                                                   "sim_drone", "bus", "centre"]),
       host=st.data())
def test_every_address_field_checks_host_and_port(good: bool, kind: str,
                                                  host: st.DataObject) -> None:
    h = host.draw(GOOD_HOST if good else BAD_HOST, label="host")
    if good and kind in ("endpoint", "connection", "sim_drone", "ice") and h.startswith("["):
        h = "127.0.0.1"  # these HOST:PORT forms (and aiortc's STUN URLs) take no IPv6
    # A port that is good for every field; a bad one for the port check.
    bad_port = host.draw(st.booleans(), label="bad port") if good else False
    port: int | str = host.draw(BAD_PORT if bad_port else GOOD_PORT, label="port")
    ok = good and not bad_port
    if kind == "listen":
        if port == 0:
            ok = good  # port 0 is "any free port": the tests' servers listen that way
        data: dict[str, Any] = {"uplink": {"listen": f"{h}:{port}"}}
        key = "uplink.listen"
    elif kind == "endpoint":
        data = {"drones": [{"id": "d", "connection": "tcp:127.0.0.1:5760",
                            "endpoints": [{"name": "gcs", "url": f"udpout:{h}:{port}"}]}]}
        key = "drones[0].endpoints[0].url"
    elif kind == "connection":
        data = {"drones": [{"id": "d", "connection": f"udpin:{h}:{port}"}]}
        key = "drones[0].connection"
    elif kind == "sim_drone":
        data = {"demo": {"sim_drones": [{"connection": f"tcp:{h}:{port}"}]}}
        key = "demo.sim_drones[0].connection"
    elif kind == "ice":
        data = {"uplink": {"ice_servers": [f"stun:{h}:{port}"]}}
        key = "uplink.ice_servers[0]"
    elif kind == "bus":
        data = {"bus": {"pub_endpoint": f"tcp://{h}:{port}"}}
        key = "bus.pub_endpoint"
    else:
        # The centre is an address, never a name: resolving one needs a working WAN.
        address = h.strip("[]") if good else h  # a good IPv6 host comes in brackets
        data = {"centre": {"address": address}}
        key = "centre.address"
        ok = good and _is_ip(address)
    out = problems_of(data)
    if ok:
        assert out == [], (data, out)
    else:
        assert len(out) == 1 and out[0].startswith(f"{key}: "), (data, out)
