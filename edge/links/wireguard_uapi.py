"""WireGuard's configuration protocol on a userspace implementation's unix socket.

https://www.wireguard.com/xplatform/#configuration-protocol: a request is ``set=1`` or
``get=1`` followed by ``key=value`` lines and an empty line; the reply is ``key=value``
lines (keys in hex), ``errno=N`` and an empty line. One exchange per connection, as
``wg`` does. What to set lives with the tunnel (:mod:`edge.links.wireguard`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass

UAPI_TIMEOUT_S = 3.0


class TunnelError(RuntimeError):
    """The tunnel cannot be started or used; `str()` is one line for an operator."""


@dataclass(frozen=True, slots=True)
class PeerState:
    """A peer as wireguard-go sees it now."""

    public_key: str
    endpoint: tuple[str, int] | None
    latest_handshake: float | None  # Unix time; None before the first handshake
    rx_bytes: int
    tx_bytes: int


def endpoint_text(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_endpoint(text: str) -> tuple[str, int] | None:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


class Uapi:
    """One request/response exchange per connection on wireguard-go's socket."""

    def __init__(self, path: str, ifname: str) -> None:
        self.path = path
        self.ifname = ifname

    async def _exchange(self, request: str) -> list[str]:
        try:
            async with asyncio.timeout(UAPI_TIMEOUT_S):
                reply = await self._talk(request)
        except TimeoutError:
            raise TunnelError(f"tunnel {self.ifname}: wireguard-go did not answer on "
                              f"{self.path} within {UAPI_TIMEOUT_S:g} s") from None
        except (OSError, EOFError) as e:  # refused, reset, or closed mid-reply: it died
            why = e.strerror if isinstance(e, OSError) and e.strerror else "connection closed"
            raise TunnelError(f"tunnel {self.ifname}: cannot talk to wireguard-go on "
                              f"{self.path}: {why}") from None
        lines = reply.decode(errors="replace").splitlines()
        code = next((int(v) for k, _, v in (ln.partition("=") for ln in lines)
                     if k == "errno" and v.lstrip("-").isdigit()), None)
        if code is None:
            raise TunnelError(f"tunnel {self.ifname}: no errno in wireguard-go's reply")
        if code != 0:
            raise TunnelError(f"tunnel {self.ifname}: wireguard-go refused the request "
                              f"(errno {code}: {os.strerror(abs(code))})")
        return [ln for ln in lines if ln and not ln.startswith("errno=")]

    async def _talk(self, request: str) -> bytes:
        reader, writer = await asyncio.open_unix_connection(self.path)
        try:
            writer.write(request.encode())
            await writer.drain()
            return await reader.readuntil(b"\n\n")  # the reply ends with an empty line
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def set(self, lines: Sequence[str]) -> None:
        await self._exchange("set=1\n" + "".join(f"{ln}\n" for ln in lines) + "\n")

    async def get(self) -> list[str]:
        return await self._exchange("get=1\n\n")


def socket_owner(path: str) -> int | None:
    """The pid serving unix socket `path`, or None when nothing answers there."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1.0)
        s.connect(path)
        cred = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid: int = struct.unpack("3i", cred)[0]
        return pid
    except OSError:
        return None
    finally:
        s.close()


def parse_peers(lines: list[str]) -> list[PeerState]:
    peers: list[PeerState] = []
    current: dict[str, str] | None = None

    def flush() -> None:
        if current is None:
            return
        sec = int(current.get("last_handshake_time_sec", "0"))
        nsec = int(current.get("last_handshake_time_nsec", "0"))
        peers.append(PeerState(
            public_key=base64.b64encode(bytes.fromhex(current["public_key"])).decode(),
            endpoint=parse_endpoint(current["endpoint"]) if "endpoint" in current else None,
            latest_handshake=sec + nsec / 1e9 if sec or nsec else None,
            rx_bytes=int(current.get("rx_bytes", "0")),
            tx_bytes=int(current.get("tx_bytes", "0"))))

    for line in lines:
        key, _, value = line.partition("=")
        if key == "public_key":
            flush()
            current = {}
        if current is not None:
            current[key] = value
    flush()
    return peers
