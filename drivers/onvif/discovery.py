"""WS-Discovery Probe for ONVIF devices (WS-Discovery 2005/04, as ONVIF Core §7 uses it).

One UDP socket sends a Probe for `dn:NetworkVideoTransmitter` to the
multicast group 239.255.255.250:3702 (or to the addresses given, which is
how tests and routed networks reach a device) and collects the ProbeMatches
that answer it until the timeout. Each device is reported once, by its
endpoint reference, with the address it answered from, its XAddrs and the
name and hardware it states in its `onvif://www.onvif.org/…` scopes.

Our own ~150 lines rather than the PyPI `wsdiscovery` package: that one runs
its own threads and its README says it does not verify what it receives
and may crash; a Probe and its matches are two small
messages, parsed here with the standard library (expat ≥ 2.4 refuses
entity-expansion bombs) and every field checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import unquote

MULTICAST = ("239.255.255.250", 3702)
_SOAP = "http://www.w3.org/2003/05/soap-envelope"
_WSA = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
_WSD = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
_SCOPE = "onvif://www.onvif.org/"
_MAX_DATAGRAM = 65535
# WS-Discovery's UDP repeat: a second copy a moment later, since a lost Probe is not retried.
_REPEAT_AFTER = 0.2


class DiscoveryError(Exception):
    """The probe could not be sent at all; `str()` is one line."""


@dataclass(frozen=True)
class Device:
    """One device that answered: where from, what it calls itself, where its services are."""

    address: str  # the IP it answered from
    endpoint: str  # its EPR, e.g. urn:uuid:…, stable across reboots and addresses
    xaddrs: tuple[str, ...]  # device service URLs
    scopes: tuple[str, ...] = field(default=())
    types: tuple[str, ...] = field(default=())

    def scope(self, kind: str) -> str | None:
        """The value of the first `onvif://www.onvif.org/<kind>/<value>` scope, unquoted."""
        prefix = f"{_SCOPE}{kind}/"
        for s in self.scopes:
            if s.startswith(prefix):
                return unquote(s[len(prefix):])
        return None

    @property
    def name(self) -> str | None:
        return self.scope("name")

    @property
    def hardware(self) -> str | None:
        return self.scope("hardware")

    def as_dict(self) -> dict[str, object]:
        return {"address": self.address, "endpoint": self.endpoint, "name": self.name,
                "hardware": self.hardware, "xaddrs": list(self.xaddrs),
                "scopes": list(self.scopes), "types": list(self.types)}


def probe_message(message_id: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<s:Envelope xmlns:s="{_SOAP}" xmlns:a="{_WSA}" xmlns:d="{_WSD}"'
        ' xmlns:dn="http://www.onvif.org/ver10/network/wsdl">'
        "<s:Header>"
        f'<a:Action s:mustUnderstand="1">{_WSD}/Probe</a:Action>'
        f"<a:MessageID>{message_id}</a:MessageID>"
        f"<a:ReplyTo><a:Address>{_WSA}/role/anonymous</a:Address></a:ReplyTo>"
        '<a:To s:mustUnderstand="1">urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To>'
        "</s:Header>"
        "<s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></s:Body>"
        "</s:Envelope>").encode()


def _words(element: ET.Element | None) -> tuple[str, ...]:
    return tuple((element.text or "").split()) if element is not None else ()


def parse_probe_matches(data: bytes, address: str, message_id: str | None) -> list[Device]:
    """The devices in one ProbeMatches datagram; [] for anything else or anything malformed.

    `message_id`: when given, a reply that relates to another probe is not ours.
    """
    try:
        root = ET.fromstring(data)
    except (ET.ParseError, ValueError):
        return []
    header, body = root.find(f"{{{_SOAP}}}Header"), root.find(f"{{{_SOAP}}}Body")
    if body is None:
        return []
    relates = header.find(f"{{{_WSA}}}RelatesTo") if header is not None else None
    if message_id is not None and relates is not None \
            and (relates.text or "").strip() != message_id:
        return []
    devices = []
    for match in body.iterfind(f"{{{_WSD}}}ProbeMatches/{{{_WSD}}}ProbeMatch"):
        epr = match.find(f"{{{_WSA}}}EndpointReference/{{{_WSA}}}Address")
        xaddrs = tuple(x for x in _words(match.find(f"{{{_WSD}}}XAddrs"))
                       if x.startswith(("http://", "https://")))
        endpoint = (epr.text or "").strip() if epr is not None else ""
        if not endpoint or not xaddrs:
            continue  # a match we could neither name nor reach
        devices.append(Device(address=address, endpoint=endpoint, xaddrs=xaddrs,
                              scopes=_words(match.find(f"{{{_WSD}}}Scopes")),
                              types=_words(match.find(f"{{{_WSD}}}Types"))))
    return devices


class _Collector(asyncio.DatagramProtocol):
    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.found: dict[str, Device] = {}

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        for device in parse_probe_matches(data, str(addr[0]), self.message_id):
            self.found.setdefault(device.endpoint, device)

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP unreachable from one target must not end the listening


async def discover(timeout: float = 3.0, targets: list[tuple[str, int]] | None = None, *,
                   interface: str | None = None) -> list[Device]:
    """Probe `targets` (default: the multicast group) and return who answered within `timeout`.

    `interface`: the local IPv4 address whose link multicast goes out on (a vehicle
    has several); by default the kernel picks by its routes.
    """
    targets = targets or [MULTICAST]
    message_id = f"urn:uuid:{uuid.uuid4()}"
    message = probe_message(message_id)
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)  # the vehicle's LAN only
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)  # a device on this host
    if interface is not None:
        try:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                            ipaddress.IPv4Address(interface).packed)
        except (ValueError, OSError):
            sock.close()
            raise DiscoveryError(f"interface {interface}: expected an IPv4 address of this "
                                 "host, e.g. 192.168.1.10") from None
    sock.bind(("0.0.0.0", 0))
    transport, collector = await loop.create_datagram_endpoint(
        lambda: _Collector(message_id), sock=sock)
    try:
        sent_any, problems = False, []
        for attempt in range(2):
            for host, port in targets:
                try:
                    # On the socket itself: the transport would hand a send error
                    # (no multicast route) to error_received and say nothing.
                    sock.sendto(message, (host, port))
                    sent_any = True
                except OSError as e:
                    if attempt == 0:
                        problems.append(f"{host}:{port}: {e.strerror or e}")
            if not sent_any:
                raise DiscoveryError("cannot send the WS-Discovery probe: " + "; ".join(problems))
            if attempt == 0:
                await asyncio.sleep(min(_REPEAT_AFTER, timeout))
        await asyncio.sleep(max(0.0, timeout - _REPEAT_AFTER))
    finally:
        with contextlib.suppress(Exception):
            transport.close()
    return sorted(collector.found.values(), key=lambda d: (d.address, d.endpoint))
