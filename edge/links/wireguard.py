"""The WireGuard tunnel to the centre: a `wireguard-go` child, configured over its UAPI socket.

This kernel has no WireGuard module, so the tunnel is Debian's userspace ``wireguard-go``
over a TUN device. We run it in the foreground as our own child (``wireguard-go -f``), so
it stops with us, and we configure it by speaking its configuration protocol
(https://www.wireguard.com/xplatform/#configuration-protocol) on its unix socket,
``/var/run/wireguard/IFNAME.sock``: text ``key=value`` lines, keys in hex. That is what
``wg`` itself does; speaking it directly spares a process per reading and a parser of
``wg``'s output, and leaves ``wg show`` free to be an independent reader.

Everything but the socket happens in the *current* network namespace: the TUN that
wireguard-go makes, its address and state (pyroute2). The socket directory, though, is
shared by every namespace of the machine, so two tunnels with one interface name in two
namespaces would fight over one socket: :meth:`WireGuardTunnel.open` refuses when the
socket is served by a live process.

Keys are WireGuard's base64 text, as ``wg genkey`` writes it (the caller reads it from a
:class:`edge.config.secrets.SecretRef`). A public key is derived from a private one with
the ``cryptography`` package's X25519 (installed with aiortc), not by running ``wg pubkey``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import ipaddress
import os
import re
import shutil
import signal
from dataclasses import dataclass, field
from types import TracebackType

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pyroute2 import AsyncIPRoute, NetlinkError

from edge.links.wireguard_uapi import (
    PeerState,
    TunnelError,
    Uapi,
    endpoint_text,
    parse_peers,
    socket_owner,
)

__all__ = ["PeerSpec", "PeerState", "TunnelError", "TunnelSpec", "WireGuardTunnel",
           "encode_key", "parse_key", "public_key_of", "tunnel_preflight"]

SOCKET_DIR = "/var/run/wireguard"
WIREGUARD_GO = "wireguard-go"
TUN_PATH = "/dev/net/tun"
KEY_BYTES = 32
START_TIMEOUT_S = 5.0
STOP_GRACE_S = 3.0
_IFNAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}$")  # IFNAMSIZ - 1, no '/'
_CAP_NET_ADMIN = 12
_OUTPUT_LINES = 20
#: wireguard-go's log prefix: "ERROR: (wgv0) 2026/12/01 22:27:38 "
_LOG_PREFIX = re.compile(r"^[A-Z]+: \(\S+\) \d{4}/\d\d/\d\d \d\d:\d\d:\d\d ")


# -- keys ---------------------------------------------------------------------------------


def parse_key(value: str | bytes, what: str) -> bytes:
    """The 32 raw bytes of a key given as ``wg genkey`` writes it (base64, 44 characters).

    `value` may be the text or the bytes of a key file (surrounding whitespace is
    ignored), or already the 32 raw bytes. `what` names the key in the error ("private
    key of tunnel wgv0"), which never quotes the value: it may be a secret.
    """
    raw = value
    if isinstance(raw, bytes) and len(raw) == KEY_BYTES:
        return raw
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"{what}: not a WireGuard key (expected base64 text as "
                             "`wg genkey` writes it)") from None
    text = raw.strip()
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what}: not a WireGuard key (expected 44 characters of base64 "
                         f"as `wg genkey` writes it, got {len(text)} characters that are "
                         "not base64)") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"{what}: not a WireGuard key (expected {KEY_BYTES} bytes once "
                         f"decoded from base64, got {len(key)})")
    return key


def encode_key(key: bytes) -> str:
    """A raw key as WireGuard writes it (base64)."""
    return base64.b64encode(key).decode("ascii")


def public_key_of(private_key: str | bytes, what: str = "private key") -> str:
    """The public key (base64) of a private key, as ``wg pubkey`` prints it."""
    return _public(parse_key(private_key, what))


def _public(private: bytes) -> str:
    return encode_key(X25519PrivateKey.from_private_bytes(private).public_key()
                      .public_bytes_raw())


# -- what to run --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerSpec:
    """One peer. The centre gives no `endpoint` for the vehicle: it learns it from
    the vehicle's packets (and follows it when the vehicle changes WAN)."""

    public_key: str | bytes
    allowed_ips: tuple[str, ...]
    endpoint: tuple[str, int] | None = None
    persistent_keepalive_s: int = 0
    name: str = "peer"  # only for messages


@dataclass(frozen=True, slots=True)
class TunnelSpec:
    """The tunnel device: its name, key, addresses and peers.

    `fwmark` marks the tunnel's own UDP packets (not the traffic inside it), so that a
    policy rule can route them (:mod:`edge.links.steering`). `listen_port` 0 lets
    wireguard-go pick one (fine for the side that only initiates).
    """

    ifname: str
    private_key: str | bytes = field(repr=False)
    addresses: tuple[str, ...] = ()
    listen_port: int = 0
    fwmark: int = 0
    peers: tuple[PeerSpec, ...] = ()


def _check_spec(spec: TunnelSpec) -> tuple[bytes, list[tuple[PeerSpec, bytes]]]:
    if not _IFNAME.match(spec.ifname):
        raise ValueError(f"tunnel interface name {spec.ifname!r}: expected 1-15 of "
                         "letters, digits, '_', '.' and '-'")
    private = parse_key(spec.private_key, f"private key of tunnel {spec.ifname}")
    for address in spec.addresses:
        try:
            ipaddress.ip_interface(address)
        except ValueError:
            raise ValueError(f"tunnel {spec.ifname}: address {address!r} is not an "
                             "address with a prefix (e.g. 10.0.0.2/24)") from None
    if not 0 <= spec.listen_port <= 65535:
        raise ValueError(f"tunnel {spec.ifname}: listen port {spec.listen_port} is not "
                         "0..65535")
    if not 0 <= spec.fwmark <= 0xFFFFFFFF:
        raise ValueError(f"tunnel {spec.ifname}: fwmark {spec.fwmark} is not a 32-bit value")
    peers = []
    for peer in spec.peers:
        key = parse_key(peer.public_key, f"public key of peer {peer.name!r}")
        for prefix in peer.allowed_ips:
            try:
                ipaddress.ip_network(prefix, strict=False)
            except ValueError:
                raise ValueError(f"peer {peer.name!r}: allowed IP {prefix!r} is not an "
                                 "address or prefix") from None
        if peer.endpoint is not None:
            host, port = peer.endpoint
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise ValueError(f"peer {peer.name!r}: endpoint {host!r} is not an IP "
                                 "address") from None
            if not 0 < port <= 65535:
                raise ValueError(f"peer {peer.name!r}: endpoint port {port} is not 1..65535")
        if not 0 <= peer.persistent_keepalive_s <= 65535:
            raise ValueError(f"peer {peer.name!r}: persistent keepalive "
                             f"{peer.persistent_keepalive_s} s is not 0..65535")
        peers.append((peer, key))
    return private, peers


# -- can it run here ----------------------------------------------------------------------


def _effective_caps() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def tunnel_preflight(binary: str = WIREGUARD_GO) -> str | None:
    """None if a tunnel can run here, else one sentence saying why not (shown as is)."""
    if shutil.which(binary) is None:
        return (f"{binary} is not installed (the userspace WireGuard this kernel needs; "
                "apt install wireguard-go)")
    if not (_effective_caps() >> _CAP_NET_ADMIN) & 1:
        return "needs root (CAP_NET_ADMIN) to create the tunnel's TUN device"
    try:
        os.close(os.open(TUN_PATH, os.O_RDWR | os.O_CLOEXEC))
    except FileNotFoundError:
        return (f"{TUN_PATH} is missing: this kernel or container has no TUN device "
                "(load the tun module, or give the container --device /dev/net/tun)")
    except OSError as e:
        return f"{TUN_PATH} cannot be opened: {e.strerror or e}"
    return None


def _set_lines(private: bytes, spec: TunnelSpec, peers: list[tuple[PeerSpec, bytes]]
               ) -> list[str]:
    lines = [f"private_key={private.hex()}", f"listen_port={spec.listen_port}",
             f"fwmark={spec.fwmark}", "replace_peers=true"]
    for peer, key in peers:
        lines += [f"public_key={key.hex()}", "replace_allowed_ips=true"]
        if peer.endpoint is not None:
            lines.append(f"endpoint={endpoint_text(*peer.endpoint)}")
        lines.append(f"persistent_keepalive_interval={peer.persistent_keepalive_s}")
        lines += [f"allowed_ip={ipaddress.ip_network(p, strict=False)}"
                  for p in peer.allowed_ips]
    return lines


# -- the tunnel ---------------------------------------------------------------------------


class WireGuardTunnel:
    """One tunnel device, up between :meth:`open` and :meth:`close` (or ``async with``).

    The spec is checked here, so a bad key fails before anything starts. `binary` is
    the wireguard-go to run (a name looked up in PATH, or a path).
    """

    def __init__(self, spec: TunnelSpec, *, binary: str = WIREGUARD_GO,
                 socket_dir: str = SOCKET_DIR) -> None:
        self.spec = spec
        self._private, self._peers = _check_spec(spec)
        self.public_key = _public(self._private)  # what the other side's PeerSpec needs
        self.binary = binary
        self.socket_path = f"{socket_dir}/{spec.ifname}.sock"
        self._uapi = Uapi(self.socket_path, spec.ifname)
        self._proc: asyncio.subprocess.Process | None = None
        self._output: collections.deque[str] = collections.deque(maxlen=_OUTPUT_LINES)
        self._output_task: asyncio.Task[None] | None = None

    @property
    def ifname(self) -> str:
        return self.spec.ifname

    @property
    def pid(self) -> int | None:
        """wireguard-go's pid while it runs."""
        return self._proc.pid if self._proc is not None else None

    async def __aenter__(self) -> WireGuardTunnel:
        await self.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def open(self) -> None:
        """Start wireguard-go, configure it, give the device its addresses and bring it up."""
        if self._proc is not None:
            raise TunnelError(f"tunnel {self.ifname} is already open")
        if (why := tunnel_preflight(self.binary)) is not None:
            raise TunnelError(f"tunnel {self.ifname}: {why}")
        owner = await asyncio.to_thread(socket_owner, self.socket_path)
        if owner is not None:
            raise TunnelError(f"tunnel {self.ifname}: {self.socket_path} is already served "
                              f"by process {owner}; interface names must differ across "
                              "network namespaces, since they share that directory")
        try:
            await self._start()
            await self._uapi.set(_set_lines(self._private, self.spec, self._peers))
            await self._configure_device()
        except BaseException:
            await self.close()
            raise

    async def _start(self) -> None:
        binary = shutil.which(self.binary) or self.binary
        # setpriv (util-linux) sets a parent-death signal and execs: should we be killed
        # without closing, wireguard-go stops too (and removes its socket) rather than
        # holding the interface name. A preexec_fn could do it, but is unsafe with threads.
        argv = [binary, "-f", self.ifname]
        if shutil.which("setpriv"):
            argv = ["setpriv", "--pdeathsig", "TERM", "--", *argv]
        # WG_PROCESS_FOREGROUND silences the banner telling to use the kernel module
        env = dict(os.environ, WG_PROCESS_FOREGROUND="1", LOG_LEVEL="error")
        # its log goes to stdout (usage and Go's own panics to stderr): both are kept
        self._proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=env)
        self._output_task = asyncio.create_task(self._keep_output(self._proc))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        while await asyncio.to_thread(socket_owner, self.socket_path) != self._proc.pid:
            if self._proc.returncode is not None:
                await asyncio.wait_for(self._output_task, 1.0)
                raise TunnelError(f"tunnel {self.ifname}: wireguard-go exited "
                                  f"({self._proc.returncode}): {self._last_error()}")
            if loop.time() > deadline:
                raise TunnelError(f"tunnel {self.ifname}: wireguard-go did not open "
                                  f"{self.socket_path} within {START_TIMEOUT_S:g} s")
            await asyncio.sleep(0.02)

    async def _keep_output(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            if text := line.decode(errors="replace").strip():
                self._output.append(text)

    def _last_error(self) -> str:
        if not self._output:
            return "no message"
        return _LOG_PREFIX.sub("", self._output[-1])

    async def _configure_device(self) -> None:
        async with AsyncIPRoute() as ipr:
            found = await ipr.link_lookup(ifname=self.ifname)
            if not found:
                raise TunnelError(f"tunnel {self.ifname}: wireguard-go made no interface "
                                  "of that name")
            index = found[0]
            for address in self.spec.addresses:
                iface = ipaddress.ip_interface(address)
                try:
                    await ipr.addr("add", index=index, address=str(iface.ip),
                                   prefixlen=iface.network.prefixlen)
                except NetlinkError as e:
                    raise TunnelError(f"tunnel {self.ifname}: cannot add address {address}: "
                                      f"{os.strerror(e.code)}") from None
            await ipr.link("set", index=index, state="up")

    async def peers(self) -> list[PeerState]:
        """Each peer's endpoint, latest handshake and byte counts, read from wireguard-go."""
        self._check_running()
        return parse_peers(await self._uapi.get())

    async def listen_port(self) -> int:
        """The UDP port the tunnel sends from and listens on now."""
        self._check_running()
        for line in await self._uapi.get():
            key, _, value = line.partition("=")
            if key == "listen_port":
                return int(value)
        return 0  # not bound: the device is down

    async def rebind(self) -> int:
        """Move the tunnel to a new local UDP port (chosen by the kernel); the new port.

        The second half of a WAN switch, after :meth:`Steering.steer
        <edge.links.steering.Steering.steer>`. wireguard-go sends each packet from the
        address *and interface* the peer's last packet arrived on ("sticky" source), and
        every packet it receives sets that again. While the old WAN still works, the
        centre's packets already in flight on it arrive after the route moved and pin the
        tunnel back on the old WAN, and the centre follows it back there. A new socket
        forgets every sticky source (wireguard-go's BindUpdate), and what the old WAN
        still delivers is addressed to the closed port, so it can no longer pin anything.
        The centre learns the new port with the first packet, as it learns a new address.
        """
        self._check_running()
        old = await self.listen_port()
        for _ in range(3):  # the kernel may hand the port just freed back: rare, try again
            await self._uapi.set(["listen_port=0"])
            if (port := await self.listen_port()) != old:
                return port
        raise TunnelError(f"tunnel {self.ifname}: wireguard-go kept port {old} when asked "
                          "for a new one")

    def _check_running(self) -> None:
        if self._proc is None or self._proc.returncode is not None:
            raise TunnelError(f"tunnel {self.ifname} is not running"
                              + (f": {self._last_error()}" if self._output else ""))

    async def close(self) -> None:
        """Stop wireguard-go (its TUN goes with it) and reap it. Idempotent; never raises."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._output_task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._output_task, 1.0)
            self._output_task = None
        # wireguard-go removes its socket when it stops cleanly; after a SIGKILL the file
        # stays. Removed only when nobody serves it: it may be someone else's by now.
        if await asyncio.to_thread(socket_owner, self.socket_path) is None:
            with contextlib.suppress(OSError):
                os.unlink(self.socket_path)
