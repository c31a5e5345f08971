"""The viewer's SDP offer, checked line by line before aiortc reads it.

aiortc's parser trusts what it reads: a line it cannot split raises whatever
Python raises there (``StopIteration``, ``IndexError``, a bare ``assert``),
and what it does not check at all goes on to fail later, out of sight: a
candidate port of 70000 is handed to ``sendto`` by the ICE checks and shows up
as a traceback in the log after the viewer was told 201. So every line aiortc
reads, and every value it uses, is checked here first, and a bad one is
refused with a sentence that names it (:class:`BadOffer`, a 400).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from aiortc.rtcdtlstransport import X509_DIGEST_ALGORITHMS
from aiortc.rtp import FORBIDDEN_PAYLOAD_TYPES
from aiortc.sdp import DTLS_SETUP_ROLE, FMTP_INT_PARAMETERS

MAX_SECTIONS = 16
_LINE = re.compile(r"^[a-z]=")
# Characters no SDP line holds; some of them also end a line for str.splitlines (aiortc's split).
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_MEDIA = re.compile(r"^m=([^ ]+) ([^ ]+) ([^ ]+)((?: [^ ]+)*)$")
_CONNECTION = re.compile(r"^IN (IP4|IP6) ([^ ]+)$")
_ICE_CHARS = re.compile(r"^[A-Za-z0-9+/]+$")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`{|}~0-9A-Za-z-]+$")
_FINGERPRINT = re.compile(r"^([^ ]+) ([0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})+)$")
_RTPMAP = re.compile(r"^([^ ]+) ([^/ ]+)/([^/ ]+)(?:/([^/ ]+))?$")
_MDNS = re.compile(r"^[a-zA-Z0-9-]{1,63}\.local$")
# RFC 3551's static payload types: the only ones that need no a=rtpmap.
_STATIC_PTS = range(0, 35)
_CANDIDATE_TYPES = ("host", "srflx", "prflx", "relay")
_SHOWN = 80


class BadOffer(ValueError):
    """An offer we cannot answer; `str()` is the reason the viewer gets with a 400."""


def shown(text: str) -> str:
    """`text` quoted for a one-line reason: escaped and cut short."""
    quoted = text.encode("unicode_escape").decode("ascii").replace('"', '\\"')
    return f'"{quoted[:_SHOWN]}…"' if len(quoted) > _SHOWN else f'"{quoted}"'


def _int(text: str, low: int, high: int) -> int | None:
    """`text` as an int in low..high, or None: plain ASCII digits only, as in SDP."""
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        return None
    value = int(text)
    return value if low <= value <= high else None


@dataclass
class _Section:
    number: int  # line number of its m= line
    line: str
    kind: str = ""
    formats: list[str] = field(default_factory=list)
    mid: str | None = None
    rtpmap: dict[int, str] = field(default_factory=dict)  # pt -> encoding name
    fmtp: dict[int, str] = field(default_factory=dict)  # pt -> parameters
    attrs: set[str] = field(default_factory=set)
    hashes: list[str] = field(default_factory=list)  # of its a=fingerprint lines


def check_offer(sdp: str) -> None:
    """Raise BadOffer naming the first thing in `sdp` that aiortc cannot take."""
    text = sdp.replace("\r\n", "\n")
    lines = text.split("\n")
    for number, line in enumerate(lines, 1):
        if bad := _CONTROL.search(line):
            raise BadOffer(f"line {number} of the offer has a control character "
                           f"(U+{ord(bad.group()):04X}) in it")
    if not any(line.startswith("m=") for line in lines):
        raise BadOffer("the offer has no video section (m=video)")
    session_attrs: set[str] = set()
    session_hashes: list[str] = []
    sections: list[_Section] = []
    for number, line in enumerate(lines, 1):
        if not line:
            continue
        if not _LINE.match(line):
            raise BadOffer(f"line {number} of the offer, {shown(line)}, is not TYPE=VALUE")
        if line.startswith("m="):
            if len(sections) == MAX_SECTIONS:
                raise BadOffer(f"the offer has more than {MAX_SECTIONS} media sections")
            sections.append(_media_line(number, line))
            continue
        section = sections[-1] if sections else None
        if line.startswith("c="):
            _connection(line)
        elif line.startswith("v=") and line != "v=0":
            raise BadOffer(f"the offer's {shown(line)} is not v=0")
        elif line.startswith("a="):
            name, _, value = line[2:].partition(":")
            _attribute(line, name, value, section)
            (section.attrs if section else session_attrs).add(name)
            if name == "fingerprint":
                (section.hashes if section else session_hashes).append(value.split(" ")[0])
    mids: dict[str, _Section] = {}
    for section in sections:
        _check_section(section, session_attrs)
        # aiortc verifies the viewer's certificate with the digests it knows, and drops
        # the handshake (unseen, after the 201) when none of the offer's is one of them.
        if not any(h.lower() in X509_DIGEST_ALGORITHMS for h in session_hashes + section.hashes):
            raise BadOffer(f"the offer's m={section.kind} section has no a=fingerprint with "
                           f"{', '.join(X509_DIGEST_ALGORITHMS)}")
        if section.mid in mids:
            raise BadOffer(f"two media sections of the offer have a=mid:{section.mid}")
        mids[section.mid or ""] = section
    for line in lines:
        if line.startswith("a=group:BUNDLE"):
            for item in line.split()[1:]:
                if item not in mids:
                    raise BadOffer(f"the offer's a=group:BUNDLE names mid {shown(item)}, "
                                   "which no media section has")


def _media_line(number: int, line: str) -> _Section:
    m = _MEDIA.match(line)
    if m is None or not m.group(4):
        raise BadOffer(f"the offer's media line {shown(line)} is not "
                       "m=KIND PORT PROTOCOL FORMAT...")
    kind, port, proto = m.group(1), m.group(2), m.group(3)
    if kind not in ("audio", "video", "application"):
        raise BadOffer(f"the offer's {shown(line)} is {kind}, not audio, video or application")
    if _int(port, 0, 65535) is None:
        raise BadOffer(f"the offer's {shown(line)} has port {shown(port)}, not 0-65535")
    if not re.fullmatch(r"[A-Z/]+", proto):
        raise BadOffer(f"the offer's {shown(line)} has no valid protocol ({shown(proto)})")
    formats = m.group(4).split()
    if kind != "application":
        for fmt in formats:
            pt = _int(fmt, 0, 127)
            if pt is None or pt in FORBIDDEN_PAYLOAD_TYPES:
                raise BadOffer(f"the offer's {shown(line)} lists format {shown(fmt)}, not an "
                               "RTP payload type (0-71, 77-127)")
    return _Section(number, line, kind, formats)


def _connection(line: str) -> None:
    m = _CONNECTION.match(line[2:])
    if m is None:
        raise BadOffer(f"the offer's {shown(line)} is not c=IN IP4|IP6 ADDRESS")
    try:
        address = ipaddress.ip_address(m.group(2))
    except ValueError:
        raise BadOffer(f"the offer's {shown(line)} has no valid IP address") from None
    if f"IP{address.version}" != m.group(1):
        raise BadOffer(f"the offer's {shown(line)} says {m.group(1)} for an "
                       f"IPv{address.version} address")


def _attribute(line: str, name: str, value: str, section: _Section | None) -> None:
    """One a= line, as aiortc would read it at session or media level."""
    if name == "fingerprint":
        m = _FINGERPRINT.match(value)
        if m is None:
            raise BadOffer(f"the offer's {shown(line)} is not a=fingerprint:HASH XX:XX:...")
    elif name == "setup":
        if value not in DTLS_SETUP_ROLE:
            raise BadOffer(f"the offer's {shown(line)} is not a=setup:actpass, active or "
                           "passive")
    elif name == "ice-ufrag":
        if not 4 <= len(value) <= 256 or not _ICE_CHARS.match(value):
            raise BadOffer(f"the offer's {shown(line)} is not 4-256 ICE characters "
                           "(A-Z a-z 0-9 + /)")
    elif name == "ice-pwd":
        if not 22 <= len(value) <= 256 or not _ICE_CHARS.match(value):
            raise BadOffer(f"the offer's {shown(line)} is not 22-256 ICE characters "
                           "(A-Z a-z 0-9 + /)")
    elif section is None:
        return  # aiortc reads nothing else at session level
    elif name == "candidate":
        _candidate(line, value)
    elif name == "extmap":
        bits = value.split()
        ext_id = bits[0].split("/", 1)[0] if bits else ""
        if len(bits) != 2 or _int(ext_id, 1, 255) is None or bits[0].count("/") > 1:
            raise BadOffer(f"the offer's {shown(line)} is not a=extmap:ID URI "
                           "(ID 1-255, no extension attributes)")
    elif name == "max-message-size":
        if _int(value, 0, 2**32 - 1) is None:
            raise BadOffer(f"the offer's {shown(line)} is not a number of bytes")
    elif name == "mid":
        if not 1 <= len(value) <= 32 or not _TOKEN.match(value):
            raise BadOffer(f"the offer's {shown(line)} is not a=mid:TOKEN (at most 32 "
                           "characters)")
        section.mid = value
    elif name == "rtcp":
        port, sep, address = value.partition(" ")
        if _int(port, 0, 65535) is None:
            raise BadOffer(f"the offer's {shown(line)} has no port 0-65535")
        if sep:
            _connection("c=" + address)
    elif name == "rtpmap":
        _rtpmap(line, value, section)
    elif name == "fmtp":
        pt_text, sep, params = value.partition(" ")
        pt = _int(pt_text, 0, 127)
        if pt is None or not sep:
            raise BadOffer(f"the offer's {shown(line)} is not a=fmtp:PT PARAMETERS")
        if pt in section.fmtp:
            raise BadOffer(f"the offer has two a=fmtp lines for format {pt}")
        section.fmtp[pt] = params
        _listed(line, pt, section)
    elif name == "rtcp-fb":
        bits = value.split(" ")
        if len(bits) < 2 or (bits[0] != "*" and _int(bits[0], 0, 127) is None) or not bits[1]:
            raise BadOffer(f"the offer's {shown(line)} is not a=rtcp-fb:PT TYPE")
    elif name == "sctpmap":
        number, sep, _ = value.partition(" ")
        if not sep or _int(number, 0, 65535) is None:
            raise BadOffer(f"the offer's {shown(line)} is not a=sctpmap:PORT PROTOCOL")
    elif name == "sctp-port":
        if _int(value, 1, 65535) is None:
            raise BadOffer(f"the offer's {shown(line)} has no port 1-65535")
    elif name == "ssrc-group":
        if any(_int(bit, 0, 2**32 - 1) is None for bit in value.split()[1:]):
            raise BadOffer(f"the offer's {shown(line)} is not a=ssrc-group:SEMANTICS SSRC...")
    elif name == "ssrc":
        ssrc, _, desc = value.partition(" ")
        if _int(ssrc, 0, 2**32 - 1) is None or ":" not in desc:
            raise BadOffer(f"the offer's {shown(line)} is not a=ssrc:SSRC ATTRIBUTE:VALUE")


def _listed(line: str, pt: int, section: _Section) -> None:
    if str(pt) not in section.formats:
        raise BadOffer(f"the offer's {shown(line)} is for format {pt}, which its "
                       f"m={section.kind} line does not list")


def _rtpmap(line: str, value: str, section: _Section) -> None:
    m = _RTPMAP.match(value)
    pt = _int(m.group(1), 0, 127) if m else None
    if m is None or pt is None or _int(m.group(3), 1, 10**9) is None \
            or (m.group(4) is not None and _int(m.group(4), 1, 255) is None):
        raise BadOffer(f"the offer's {shown(line)} is not a=rtpmap:PT NAME/CLOCK-RATE")
    if pt in section.rtpmap:
        raise BadOffer(f"the offer has two a=rtpmap lines for format {pt}")
    section.rtpmap[pt] = m.group(2)
    _listed(line, pt, section)


def _candidate(line: str, value: str) -> None:
    """An ICE candidate (RFC 8839 5.1) that aioice can pair and send to."""
    bits = value.split()
    if len(bits) < 8 or bits[6] != "typ":
        raise BadOffer(f"the offer's candidate {shown(line)} is not FOUNDATION COMPONENT "
                       "TRANSPORT PRIORITY ADDRESS PORT typ TYPE")
    foundation, component, transport, priority, address, port, _, kind = bits[:8]
    if not 1 <= len(foundation) <= 32 or not _ICE_CHARS.match(foundation):
        raise BadOffer(f"the offer's candidate {shown(line)} has foundation "
                       f"{shown(foundation)}, not 1-32 ICE characters")
    if _int(component, 1, 256) is None:
        raise BadOffer(f"the offer's candidate {shown(line)} has component {shown(component)}, "
                       "not 1-256")
    if transport.lower() not in ("udp", "tcp"):
        raise BadOffer(f"the offer's candidate {shown(line)} has transport {shown(transport)}, "
                       "not udp or tcp")
    if _int(priority, 1, 2**31 - 1) is None:
        raise BadOffer(f"the offer's candidate {shown(line)} has priority {shown(priority)}, "
                       "not 1-2147483647")
    if not _MDNS.match(address):
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise BadOffer(f"the offer's candidate {shown(line)} has address {shown(address)}, "
                           "neither an IP address nor an mDNS .local name") from None
        if ip.is_multicast or ip.is_unspecified or ip == ipaddress.ip_address("255.255.255.255"):
            raise BadOffer(f"the offer's candidate {shown(line)} has address {address}, "
                           "which is not a unicast address")
    if _int(port, 1, 65535) is None:
        raise BadOffer(f"the offer's candidate {shown(line)} has port {shown(port)}, "
                       "not 1-65535")
    if kind not in _CANDIDATE_TYPES:
        raise BadOffer(f"the offer's candidate {shown(line)} has type {shown(kind)}, not host, "
                       "srflx, prflx or relay")
    extensions = bits[8:]
    for name, val in zip(extensions[::2], extensions[1::2], strict=False):
        if name == "raddr" and not _MDNS.match(val):
            try:
                ipaddress.ip_address(val)
            except ValueError:
                raise BadOffer(f"the offer's candidate {shown(line)} has raddr {shown(val)}, "
                               "not an IP address") from None
        elif name == "rport" and _int(val, 0, 65535) is None:
            raise BadOffer(f"the offer's candidate {shown(line)} has rport {shown(val)}, "
                           "not 0-65535")
        elif name == "tcptype" and val not in ("active", "passive", "so"):
            raise BadOffer(f"the offer's candidate {shown(line)} has tcptype {shown(val)}, "
                           "not active, passive or so")


def _looks_h264(params: str) -> bool:
    return "packetization-mode" in params or "profile-level-id" in params


def _check_section(section: _Section, session_attrs: set[str]) -> None:
    where = f"the offer's m={section.kind} section (line {section.number})"
    has = section.attrs | session_attrs
    for needed, what in (("ice-ufrag", "ICE credentials (a=ice-ufrag / a=ice-pwd)"),
                         ("ice-pwd", "ICE credentials (a=ice-ufrag / a=ice-pwd)"),
                         ("fingerprint", "DTLS fingerprint (a=fingerprint)"),
                         ("setup", "DTLS role (a=setup)")):
        if needed not in has:
            raise BadOffer(f"{where} has no {what}")
    if section.mid is None:
        raise BadOffer(f"{where} has no a=mid")
    if section.kind == "application":
        proto = section.line.split(" ")[2]
        if proto == "DTLS/SCTP":
            if _int(section.formats[0], 0, 65535) is None:
                raise BadOffer(f"{where} names no SCTP port")
        elif proto != "UDP/DTLS/SCTP" or "sctp-port" not in section.attrs:
            raise BadOffer(f"{where} is not a WebRTC data channel (UDP/DTLS/SCTP with "
                           "a=sctp-port)")
        return
    if "rtcp-mux" not in section.attrs:
        raise BadOffer(f"{where} does not multiplex RTCP (a=rtcp-mux), which this server needs")
    for fmt in section.formats:
        pt = int(fmt)
        if pt not in section.rtpmap and pt not in _STATIC_PTS:
            what = "H.264 format" if _looks_h264(section.fmtp.get(pt, "")) else \
                f"{section.kind} format"
            raise BadOffer(f"the offer's {what} {pt} has no rtpmap (a=rtpmap:{pt} ...)")
    for pt, params in section.fmtp.items():
        if pt not in section.rtpmap:  # aiortc finds an a=fmtp's codec by its a=rtpmap
            what = "H.264 format" if _looks_h264(params) else f"{section.kind} format"
            raise BadOffer(f"the offer's {what} {pt} has an a=fmtp but no rtpmap")
        for item in params.split(";"):
            key, sep, val = item.partition("=")
            if sep and key in FMTP_INT_PARAMETERS and _int(val, 0, 2**32 - 1) is None:
                raise BadOffer(f"the offer's a=fmtp:{pt} has {key}={shown(val)}, not a number")
            if key == "apt" and sep and int(val) not in section.rtpmap:
                raise BadOffer(f"the offer's format {pt} repairs format {val} (apt), which "
                               f"its m={section.kind} line does not have")
