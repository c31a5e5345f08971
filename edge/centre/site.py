"""The city centre's site: the vehicles' probe responder and the far end of their tunnels.

`edge centre --config centre.toml` hosts one (:mod:`edge.cli.centre_cmd`). Two parts:

- the :class:`~edge.centre.probe_responder.ProbeResponder` on ``listen:probe_port``,
  which answers each WAN's probes by the WAN they came from; it needs no privilege;
- with ``[tunnel]``, a :class:`~edge.links.wireguard.WireGuardTunnel` listening on
  ``tunnel.port`` (every address: wireguard-go binds no single one), one peer per
  ``[[vehicles]]`` with its public key and its tunnel address as its only allowed
  IP. No peer has an endpoint: the centre learns each vehicle's from its packets and
  follows it when the vehicle's links service moves the tunnel to another WAN (a
  roam). It needs CAP_NET_ADMIN and ``wireguard-go``; without them the responder
  still runs and :attr:`CentreSite.tunnel_why` says why the tunnel does not.

Every key is read and checked in :meth:`CentreSite.start`, before anything listens, so
a bad key is a config error (:class:`~edge.config.errors.ConfigError`, exit 2) rather
than a tunnel that comes up and never completes a handshake.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.centre.probe_responder import ProbeResponder
from edge.config.centre_site import CentreSiteConfig
from edge.config.errors import ConfigError
from edge.config.secrets import SecretRef
from edge.config.toml_lines import KeyPath, key_lines
from edge.links.probe_socket import ProbeSocketError
from edge.links.wireguard import (
    WIREGUARD_GO,
    PeerSpec,
    TunnelError,
    TunnelSpec,
    WireGuardTunnel,
    encode_key,
    parse_key,
    tunnel_preflight,
)
from edge.links.wireguard_uapi import endpoint_text

__all__ = ["CentreSite", "CentreSiteError", "EndpointCallback", "VehicleSeen"]

#: how often the tunnel's peers are read: a roam is printed within this long
POLL_S = 0.25

#: called with (vehicle id, its endpoint now, its endpoint before or None)
EndpointCallback = Callable[[str, tuple[str, int], tuple[str, int] | None], None]


class CentreSiteError(RuntimeError):
    """The site cannot run (not a config problem); `str()` is one line for an operator."""


@dataclass(slots=True)
class VehicleSeen:
    """One configured vehicle as the tunnel sees it."""

    id: str
    tunnel_address: str
    public_key: str  # base64, as WireGuard prints it
    endpoint: tuple[str, int] | None = None
    latest_handshake: float | None = None  # Unix time
    rx_bytes: int = 0
    tx_bytes: int = 0
    roams: int = 0  # endpoint changes after the first

    def as_dict(self) -> dict[str, Any]:
        return {"tunnel_address": self.tunnel_address,
                "endpoint": endpoint_text(*self.endpoint) if self.endpoint else None,
                "latest_handshake": self.latest_handshake, "rx_bytes": self.rx_bytes,
                "tx_bytes": self.tx_bytes, "roams": self.roams}


class CentreSite:
    """The responder and (when it can run) the tunnel, between :meth:`start` and :meth:`close`.

    `config_dir` is where relative key files are; `source` names the config file in
    error messages (and gives their line numbers). `on_endpoint` is called, on the event
    loop, when a vehicle's endpoint is first seen and each time it changes.
    """

    def __init__(self, config: CentreSiteConfig, config_dir: Path, *,
                 source: Path | None = None, on_endpoint: EndpointCallback | None = None,
                 binary: str = WIREGUARD_GO) -> None:
        self.config = config
        self.config_dir = config_dir
        self.source = source
        self.binary = binary
        self.responder = ProbeResponder()
        self.tunnel: WireGuardTunnel | None = None
        #: why the tunnel does not run (None while it does, or when none is configured)
        self.tunnel_why: str | None = None
        self.vehicles: dict[str, VehicleSeen] = {}
        self._by_key: dict[str, VehicleSeen] = {}
        self._on_endpoint = on_endpoint
        self._tunnel_stopped = False
        self._lines: dict[KeyPath, int] | None = None

    # -- starting ------------------------------------------------------------------------
    async def start(self) -> None:
        """Check the keys, answer probes, open the tunnel if it can run here.

        Raises :class:`ConfigError` for what the config gets wrong (a key file missing or
        not a key, a listen address this machine does not have, a port in use) and
        :class:`CentreSiteError` when the tunnel fails to start.
        """
        spec = self._tunnel_spec()
        try:
            await self.responder.start(self.config.listen, self.config.probe_port)
        except ProbeSocketError as e:
            raise self._error(("listen",), self._bind_problem(e)) from None
        if spec is None:
            return
        self.tunnel_why = tunnel_preflight(self.binary)
        if self.tunnel_why is not None:
            return
        tunnel = WireGuardTunnel(spec, binary=self.binary)
        try:
            await tunnel.open()
        except TunnelError as e:
            self.responder.close()
            raise CentreSiteError(str(e)) from None
        self.tunnel = tunnel

    def _bind_problem(self, e: ProbeSocketError) -> str:
        if e.errno == errno.EADDRNOTAVAIL:
            return (f"{self.config.listen} is not an address of this machine (the address "
                    "the vehicles reach the centre at must be one of its own)")
        return f"cannot answer probes on {self.config.listen} port {self.config.probe_port}: {e}"

    def _tunnel_spec(self) -> TunnelSpec | None:
        tunnel = self.config.tunnel
        if tunnel is None:
            return None
        private = self._key(tunnel.private_key, ("tunnel", "private_key"))
        own = ipaddress.ip_interface(tunnel.address)
        peers = []
        taken: dict[str, str] = {}
        for i, v in enumerate(self.config.vehicles):
            where: KeyPath = ("vehicles", i)
            # The config's validator makes both present whenever there is a [tunnel].
            assert v.public_key is not None and v.tunnel_address is not None
            key = self._key(v.public_key, (*where, "public_key"))
            if key in self._by_key:
                raise self._error((*where, "public_key"), f"the same key as vehicle "
                                  f"{self._by_key[key].id!r}: each vehicle needs its own")
            address = ipaddress.ip_address(v.tunnel_address)
            if address.version != own.version or address not in own.network:
                raise self._error((*where, "tunnel_address"), f"{address} is outside the "
                                  f"tunnel's network {own.network} (tunnel.address)")
            if address == own.ip:
                raise self._error((*where, "tunnel_address"),
                                  f"{address} is the centre's own (tunnel.address)")
            if str(address) in taken:
                raise self._error((*where, "tunnel_address"), f"{address} is already "
                                  f"vehicle {taken[str(address)]!r}'s")
            taken[str(address)] = v.id
            seen = VehicleSeen(v.id, str(address), key)
            self.vehicles[v.id] = seen
            self._by_key[key] = seen
            host_prefix = 32 if address.version == 4 else 128
            peers.append(PeerSpec(key, (f"{address}/{host_prefix}",), name=v.id))
        return TunnelSpec(tunnel.interface, private, (tunnel.address,),
                          listen_port=tunnel.port, peers=tuple(peers))

    def _key(self, ref: SecretRef, keys: KeyPath) -> str:
        """A key file's key, normalised to WireGuard's base64; a ConfigError otherwise."""
        try:
            text = ref.read_text(self.config_dir)
        except ConfigError as e:
            raise self._error(keys, f"{e.path}: {'; '.join(e.problems)}") from None
        try:
            return encode_key(parse_key(text, "not a key"))
        except ValueError as e:
            raise self._error(keys, f"{ref.path(self.config_dir)}: {e}") from None

    def _error(self, keys: KeyPath, what: str) -> ConfigError:
        """A ConfigError as the loader words them: FILE:LINE: key.path: what."""
        where = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys).lstrip(".")
        problem = f"{where}: {what}"
        if self.source is None:
            return ConfigError("centre config", [problem])
        if self._lines is None:
            try:
                self._lines = key_lines(self.source.read_text())
            except (OSError, UnicodeDecodeError):
                self._lines = {}
        for n in range(len(keys), 0, -1):
            if keys[:n] in self._lines:
                problem = f"{self._lines[keys[:n]]}: {problem}"
                break
        return ConfigError(str(self.source), [problem])

    # -- running -------------------------------------------------------------------------
    def describe(self) -> list[str]:
        """What the site serves, for the operator (one line each)."""
        host, port = self.responder.address
        lines = [f"probe responder on {endpoint_text(host, port)} (udp)"]
        tunnel = self.config.tunnel
        if tunnel is None:
            lines.append("no tunnel configured ([tunnel])")
        elif self.tunnel is None:
            lines.append(f"tunnel {tunnel.interface} cannot run here: {self.tunnel_why}")
        else:
            lines.append(f"tunnel {tunnel.interface} {tunnel.address} on udp port "
                         f"{tunnel.port} (every address)")
        lines += [f"vehicle {v.id}: tunnel address {v.tunnel_address}, public key "
                  f"{v.public_key}" for v in self.vehicles.values()]
        return lines

    async def refresh(self) -> None:
        """Read the tunnel's peers now; report endpoints that changed. TunnelError if the
        tunnel stopped."""
        if self.tunnel is None:
            return
        for peer in await self.tunnel.peers():
            seen = self._by_key.get(peer.public_key)
            if seen is None:
                continue
            seen.latest_handshake = peer.latest_handshake
            seen.rx_bytes, seen.tx_bytes = peer.rx_bytes, peer.tx_bytes
            if peer.endpoint is None or peer.endpoint == seen.endpoint:
                continue
            previous, seen.endpoint = seen.endpoint, peer.endpoint
            if previous is not None:
                seen.roams += 1
            if self._on_endpoint is not None:
                self._on_endpoint(seen.id, peer.endpoint, previous)

    async def run(self, every_s: float = POLL_S) -> None:
        """Follow the vehicles until cancelled. Raises :class:`CentreSiteError` if the
        tunnel's wireguard-go stops under us."""
        if self.tunnel is None:
            await asyncio.Event().wait()
            return
        while True:
            try:
                await self.refresh()
            except TunnelError as e:
                self._tunnel_stopped = True
                raise CentreSiteError(f"the tunnel stopped: {e}") from None
            await asyncio.sleep(every_s)

    async def status(self) -> dict[str, Any]:
        """Responder counters, the tunnel, and each vehicle's endpoint and latest handshake
        (read afresh while the tunnel runs; as last read after it stopped)."""
        running = self.tunnel is not None and not self._tunnel_stopped
        if running:
            try:
                await self.refresh()
            except TunnelError:
                running = False  # it stopped: what was last read stands
        c = self.responder.counters
        tunnel = self.config.tunnel
        return {
            "centre": self.config.centre,
            "probe": {"listen": endpoint_text(self.config.listen, self.config.probe_port),
                      "reflected": c.reflected, "malformed": c.malformed,
                      "send_errors": c.send_errors},
            "tunnel": None if tunnel is None else {
                "interface": tunnel.interface, "address": tunnel.address, "port": tunnel.port,
                "running": running, "why": self.tunnel_why},
            "vehicles": {v.id: v.as_dict() for v in self.vehicles.values()},
        }

    async def close(self) -> None:
        """Stop answering and stop the tunnel. Idempotent; never raises."""
        self.responder.close()
        self._tunnel_stopped = True
        if self.tunnel is not None:
            await self.tunnel.close()
