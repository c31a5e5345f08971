"""OnvifClient against peers that are not a working ONVIF device: one clear line each.

Each peer is real (a refusing port, a listener that never answers, an HTTP
server answering 404 or garbage); the message must name the device and the
cause and carry no library text.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from drivers.onvif import OnvifClient, OnvifError, Profile, choose_profile
from drivers.onvif.client import parse_address
from tests.support import free_port

pytestmark = pytest.mark.timeout(60)

NOT_ONVIF = "the device's answer is not ONVIF (a web server, or the wrong path?)"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
ServerFactory = Callable[[Handler], Awaitable[int]]


@pytest.fixture
async def server() -> AsyncIterator[ServerFactory]:
    """Factory: a TCP server on 127.0.0.1 running `handler` per connection -> its port."""
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> int:
        s = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(s)
        port: int = s.sockets[0].getsockname()[1]
        return port

    yield start
    for s in servers:
        s.close()
        await s.wait_closed()


def http_answer(status: str, body: bytes, content_type: str = "text/html") -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            await reader.readexactly(length)
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                         + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return handle


def one_line(e: OnvifError) -> str:
    text = str(e)
    assert "\n" not in text and "Traceback" not in text, text
    for leak in ("zeep", "aiohttp", "ClientConnectorError", "Unknown error", "httpx"):
        assert leak not in text, text
    return text


async def test_refused_port_says_connection_refused() -> None:
    port = free_port()
    with pytest.raises(OnvifError) as caught:
        async with OnvifClient(f"http://127.0.0.1:{port}", "admin:admin", timeout=10):
            pass
    text = one_line(caught.value)
    assert f"127.0.0.1:{port}" in text and "connection refused" in text, text


async def test_silent_device_times_out_with_the_timeout_named(server: ServerFactory) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers; the client gives up first
        writer.close()

    port = await server(silent)
    with pytest.raises(OnvifError) as caught:
        async with OnvifClient(f"http://127.0.0.1:{port}", "admin:admin", timeout=1):
            pass
    assert "no answer within 1 s" in one_line(caught.value)


@pytest.mark.parametrize(("status", "body", "expected"), [
    ("404 Not Found", b"Not Found", NOT_ONVIF),
    ("404 Not Found", b"<html><body>nothing here</body></html>", NOT_ONVIF),
    ("404 Not Found", b"", "HTTP 404 from the device"),
    ("401 Unauthorized", b"", "wrong user name or password (HTTP 401)"),
    ("200 OK", b"<not-xml", "not valid ONVIF XML"),
])
async def test_http_answers_that_are_not_onvif(server: ServerFactory, status: str, body: bytes,
                                               expected: str) -> None:
    port = await server(http_answer(status, body, "application/soap+xml"))
    with pytest.raises(OnvifError) as caught:
        async with OnvifClient(f"http://127.0.0.1:{port}/onvif/device_service", "a:b",
                               timeout=10):
            pass
    text = one_line(caught.value)
    assert expected in text and f"127.0.0.1:{port}" in text, text


@pytest.mark.parametrize(("address", "expected"), [
    ("rtsp://192.0.2.10", "expected http://HOST[:PORT][/path]"),
    ("http://", "expected http://HOST[:PORT][/path]"),
    ("http://192.0.2.10:99999", "port is not a number in 1-65535"),
])
def test_bad_address_is_one_line(address: str, expected: str) -> None:
    with pytest.raises(OnvifError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        OnvifClient(address)


def test_address_forms() -> None:
    assert parse_address("http://192.0.2.10") == (
        "192.0.2.10", 80, "http://192.0.2.10:80/onvif/device_service")
    assert parse_address("http://cam.local:8080/onvif/device_service") == (
        "cam.local", 8080, "http://cam.local:8080/onvif/device_service")
    # A discovered XAddr elsewhere than the standard path is used as it is.
    assert parse_address("https://[fd00::5]/onvif/dev")[1:] == (443, "https://[fd00::5]:443/onvif/dev")


async def test_calls_before_connect_say_so() -> None:
    client = OnvifClient("http://127.0.0.1:1")
    with pytest.raises(OnvifError, match="not connected"):
        await client.profiles()


async def test_velocity_out_of_range_is_refused_before_sending() -> None:
    client = OnvifClient("http://127.0.0.1:1")
    with pytest.raises(OnvifError, match=r"pan velocity 1.5 is not in -1..1"):
        await client.continuous_move("p", pan=1.5)
    with pytest.raises(OnvifError, match=r"zoom step nan is not in -1..1"):
        await client.relative_zoom("p", float("nan"))


def profile(token: str, width: int | None, height: int | None,
            encoding: str | None = "H264") -> Profile:
    return Profile(token=token, name=token, encoding=encoding, width=width, height=height,
                   fps=None, ptz_configuration=None, ptz_node=None)


def test_main_is_the_largest_picture_and_sub_the_smallest() -> None:
    profiles = [profile("small", 640, 360), profile("audio", None, None, encoding=None),
                profile("big", 1920, 1080), profile("mid", 1280, 720)]
    assert choose_profile(profiles, "main").token == "big"
    assert choose_profile(profiles, "sub").token == "small"
    assert choose_profile(profiles, "mid").token == "mid"
    with pytest.raises(OnvifError, match='no profile with token "nope" .*small, audio, big, mid'):
        choose_profile(profiles, "nope")
    with pytest.raises(OnvifError, match="no video profile"):
        choose_profile([profile("audio", None, None, encoding=None)], "main")
