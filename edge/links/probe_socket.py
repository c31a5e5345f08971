"""UDP sockets for probes, bound where they must be, and their errors in one line.

Shared by the prober (bound to one WAN's source address and interface, so its probes
leave by that WAN and outside the tunnel) and the centre's responder.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from collections.abc import Callable

#: makes an unbound UDP socket of a family: ``socket.socket`` here, or one made in
#: another network namespace (tests hand the prober one from the vehicle's)
SocketFactory = Callable[[socket.AddressFamily], socket.socket]
_IFNAMSIZ = 16


class ProbeSocketError(OSError):
    """A probe socket could not be made, bound or used; the message is one line."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()  # no "[Errno 98]" before the sentence


def default_factory(family: socket.AddressFamily) -> socket.socket:
    return socket.socket(family, socket.SOCK_DGRAM)


def address_family(host: str, what: str) -> socket.AddressFamily:
    """The family of an IP address literal; names are refused (resolving one blocks)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{what} {host!r} is not an IP address") from None
    return socket.AF_INET6 if ip.version == 6 else socket.AF_INET


def check_port(port: int, what: str) -> int:
    if not 0 <= port <= 65535:
        raise ValueError(f"{what} port {port}: expected 0..65535")
    return port


def check_interface(name: str) -> str:
    """`name` if the kernel could call an interface so (its dev_valid_name)."""
    if (not 0 < len(name.encode()) < _IFNAMSIZ or name in (".", "..")
            or any(c in "/:" or c.isspace() for c in name)):
        raise ValueError(f"interface name {name!r}: expected 1-15 characters, "
                         "no '/', ':' or spaces")
    return name


def open_udp(family: socket.AddressFamily, host: str, port: int, *,
             interface: str | None = None,
             factory: SocketFactory = default_factory) -> socket.socket:
    """A non-blocking UDP socket bound to (`host`, `port`), and to `interface` if given.

    Raises :class:`ProbeSocketError` saying what failed, in one line.
    """
    try:
        sock = factory(family)
    except OSError as e:
        raise ProbeSocketError(e.errno, f"cannot make a UDP socket: {_reason(e)}") from None
    try:
        sock.setblocking(False)
        if interface is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
            except OSError as e:
                raise ProbeSocketError(e.errno, bind_device_error(e, interface)) from None
        try:
            sock.bind((host, port))
        except OSError as e:
            raise ProbeSocketError(e.errno, bind_error(e, host, port)) from None
    except BaseException:
        sock.close()
        raise
    return sock


def bind_device_error(e: OSError, interface: str) -> str:
    if e.errno == errno.EPERM:
        return (f"binding to interface {interface} needs root (CAP_NET_RAW): "
                "operation not permitted")
    if e.errno == errno.ENODEV:
        return f"no interface named {interface}"
    return f"cannot bind to interface {interface}: {_reason(e)}"


def bind_error(e: OSError, host: str, port: int) -> str:
    if e.errno == errno.EADDRNOTAVAIL:
        return f"address {host} is not on this host (is the link's interface up?)"
    if e.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is in use"
    if e.errno == errno.EACCES:
        return f"port {port} on {host} needs root: permission denied"
    return f"cannot bind to {host} port {port}: {_reason(e)}"


def send_error(e: OSError) -> str:
    """What a failed send means for the link, in one line."""
    reason = _reason(e)
    if e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return f"no route: {reason}"
    if e.errno == errno.EADDRNOTAVAIL:
        return f"the source address is gone: {reason}"
    if e.errno in (errno.ENODEV, errno.ENXIO):
        return f"the interface is gone: {reason}"
    if e.errno in (errno.EAGAIN, errno.ENOBUFS):
        return f"send buffer full: {reason}"
    return f"send failed: {reason}"


def _reason(e: OSError) -> str:
    text = e.strerror or str(e) or type(e).__name__
    return text[:1].lower() + text[1:]


def close_watched(loop: asyncio.AbstractEventLoop | None, sock: socket.socket) -> None:
    """Stop `loop` watching `sock` for reading (unless it is closed already), then close it."""
    if loop is not None and not loop.is_closed():
        loop.remove_reader(sock.fileno())
    sock.close()
