"""WS-Discovery responder (WS-Discovery 2005/04 as ONVIF uses it) for the simulated camera.

Joins the multicast group (239.255.255.250, UDP 3702 by default) and answers a Probe
whose Types and Scopes it matches with a unicast ProbeMatches to the sender, carrying
the device's XAddrs and scopes. A Probe sent straight to its port is answered the
same way. The group, port and interface are configurable so that a test can use a
private port on loopback.
"""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import struct
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import cast
from xml.sax.saxutils import escape

log = logging.getLogger(__name__)

GROUP = "239.255.255.250"
PORT = 3702
ENV = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
WSD = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
DN = "http://www.onvif.org/ver10/network/wsdl"
TDS = "http://www.onvif.org/ver10/device/wsdl"
PROBE = f"{WSD}/Probe"
TYPES = {(DN, "NetworkVideoTransmitter"), (TDS, "Device")}


def _qnames(text: str, prefixes: dict[str, str]) -> set[tuple[str, str]] | None:
    """The QNames in a Types list; None if a prefix is undeclared (matches nothing)."""
    names = set()
    for item in text.split():
        prefix, _, local = item.rpartition(":")
        if prefix not in prefixes:
            return None
        names.add((prefixes[prefix], local))
    return names


def scope_matches(wanted: str, scopes: Sequence[str]) -> bool:
    """RFC 3986 matching (the default rule): equal, or a prefix ending at a '/'."""
    wanted = wanted.rstrip("/")
    return any(s == wanted or s.startswith(wanted + "/") for s in scopes)


def probe_matches(data: bytes, scopes: Sequence[str]) -> str | None:
    """The Probe's MessageID if `data` is a Probe this device matches; None otherwise."""
    prefixes: dict[str, str] = {}
    try:
        for _, (prefix, uri) in ET.iterparse(io.BytesIO(data), events=("start-ns",)):
            prefixes.setdefault(prefix, uri)  # first wins: enough for a flat Probe
        root = ET.fromstring(data)
    except ET.ParseError:
        return None
    probe = root.find(f"{{{ENV}}}Body/{{{WSD}}}Probe")
    if probe is None:
        return None
    types = (probe.findtext(f"{{{WSD}}}Types") or "").strip()
    if types:
        wanted = _qnames(types, prefixes)
        if wanted is None or not wanted <= TYPES:
            return None
    if not all(scope_matches(s, scopes)
               for s in (probe.findtext(f"{{{WSD}}}Scopes") or "").split()):
        return None
    return root.findtext(f"{{{ENV}}}Header/{{{WSA}}}MessageID") or ""


def probe_matches_xml(relates_to: str, endpoint: str, xaddrs: Sequence[str],
                      scopes: Sequence[str]) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<env:Envelope xmlns:env="{ENV}" xmlns:wsa="{WSA}" xmlns:d="{WSD}" '
        f'xmlns:dn="{DN}" xmlns:tds="{TDS}"><env:Header>'
        f"<wsa:MessageID>urn:uuid:{uuid.uuid4()}</wsa:MessageID>"
        f"<wsa:RelatesTo>{escape(relates_to)}</wsa:RelatesTo>"
        f"<wsa:To>{WSA}/role/anonymous</wsa:To>"
        f"<wsa:Action>{WSD}/ProbeMatches</wsa:Action>"
        "</env:Header><env:Body><d:ProbeMatches><d:ProbeMatch>"
        f"<wsa:EndpointReference><wsa:Address>{escape(endpoint)}</wsa:Address>"
        "</wsa:EndpointReference>"
        "<d:Types>dn:NetworkVideoTransmitter tds:Device</d:Types>"
        f"<d:Scopes>{escape(' '.join(scopes))}</d:Scopes>"
        f"<d:XAddrs>{escape(' '.join(xaddrs))}</d:XAddrs>"
        "<d:MetadataVersion>1</d:MetadataVersion>"
        "</d:ProbeMatch></d:ProbeMatches></env:Body></env:Envelope>"
    ).encode()


class _Responder(asyncio.DatagramProtocol):
    def __init__(self, owner: DiscoveryResponder) -> None:
        self.owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        owner = self.owner
        message_id = probe_matches(data, owner.scopes)
        if message_id is None or self.transport is None:
            return
        owner.probes_answered += 1
        log.debug("ws-discovery: probe from %s:%d answered", *addr)
        self.transport.sendto(probe_matches_xml(message_id, owner.endpoint, owner.xaddrs,
                                                owner.scopes), addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("ws-discovery socket: %s", exc)


class DiscoveryResponder:
    """Answers Probes for one device until `close()`.

    `interface` is the local address whose link joins the group (127.0.0.1 for a
    test on loopback; 0.0.0.0, the default, lets the kernel choose by its routes and
    joins on loopback as well).
    """

    def __init__(self, endpoint: str, xaddrs: Sequence[str], scopes: Sequence[str], *,
                 port: int = PORT, group: str = GROUP, interface: str = "0.0.0.0") -> None:
        self.endpoint = endpoint
        self.xaddrs = list(xaddrs)
        self.scopes = list(scopes)
        self.port = port
        self.group = group
        self.interface = interface
        self.probes_answered = 0
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            # Several devices (and clients) share 3702 on one host, as on a LAN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("", self.port))
            self._join(sock, self.interface)
            if self.interface == "0.0.0.0":
                # Loopback too: a client on this host may send its probe out of lo, and
                # the kernel delivers it only to members on that interface. Refused when
                # the default route is lo already; that join then covers it.
                try:
                    self._join(sock, "127.0.0.1")
                except OSError as exc:
                    log.debug("ws-discovery: not joined on loopback as well: %s", exc)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Responder(self), sock=sock)
        log.info("ws-discovery: answering probes on %s:%d and UDP port %d", self.group,
                 self.port, self.port)

    def _join(self, sock: socket.socket, interface: str) -> None:
        membership = struct.pack("4s4s", socket.inet_aton(self.group),
                                 socket.inet_aton(interface))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
