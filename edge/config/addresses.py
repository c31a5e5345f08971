"""Host names, IP addresses, ports and the URLs built from them, checked as an operator types them.

Each check returns the value or raises ``ValueError`` with one sentence that
names the bad part (the config turns it into "KEY: sentence"). A password in
a URL is never repeated back.
"""

from __future__ import annotations

import ipaddress
import re
import string
from urllib.parse import quote, urlsplit

_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f-\x9f]")
_ICE_URL = re.compile(r"^(?P<scheme>stuns?|turns?):(?P<host>[^?:]*)(:(?P<port>[^?]*))?"
                      r"(\?transport=(?P<transport>.*))?$")


def host_problem(host: str, *, ipv6: bool = True) -> str | None:
    """Why `host` is neither a host name nor an IP address (IPv6 in brackets), or None."""
    if host.startswith("[") or host.endswith("]"):
        inner = host[1:-1] if host.startswith("[") and host.endswith("]") else ""
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            return f'"{host}" is not a valid IPv6 address'
        return None if ipv6 else f'"{host}": an IPv6 address cannot be used here'
    try:
        ipaddress.IPv4Address(host)
        return None
    except ValueError:
        pass
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    # An all-numeric last label would be an IPv4 address, and this one is not valid.
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels) \
            or labels[-1].isdigit():
        return f'"{host}" is not a valid host name or IP address'
    return None


def port_problem(text: str, *, allow_zero: bool = False) -> str | None:
    """Why `text` is not a port number (1-65535, or 0 too when `allow_zero`), or None."""
    low = 0 if allow_zero else 1
    if not text.isascii() or not text.isdigit():
        return f'port "{text}" is not a number' if text else "the port after ':' is empty"
    if not low <= int(text) <= 65535:
        return f"port {int(text)} is not in {low}-65535"
    return None


def check_host_port(value: str, *, allow_zero_port: bool = False, ipv6: bool = True,
                    within: str | None = None) -> str:
    """`HOST:PORT` (an IPv6 host in brackets); `within` is the whole value, for messages."""
    host, sep, port = value.rpartition(":")
    if not sep:
        raise ValueError(f'expected HOST:PORT, got "{value}"')
    if not host:
        raise ValueError(f'no host before the port in "{value}"')
    why = host_problem(host, ipv6=ipv6) or port_problem(port, allow_zero=allow_zero_port)
    if why:
        raise ValueError(f"{why} (in {within or value})")
    return value


def redact(url: str) -> str:
    """`url` without the password of its user info, for messages."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    user, at, hostport = netloc.rpartition("@")
    if not (sep and at and ":" in user):
        return url
    return f"{scheme}://{user.split(':', 1)[0]}:***@{hostport}{slash}{path}"


def check_rtsp_url(value: str) -> str:
    """An rtsp:// or rtsps:// URL with a valid host and, if given, a port in 1-65535."""
    if not value.startswith(("rtsp://", "rtsps://")):
        raise ValueError(f'expected rtsp:// URL, got "{redact(value)}"')
    if _CONTROL_OR_SPACE.search(value):
        raise ValueError(f'"{redact(value)}" has a space or control character in it')
    netloc = value.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):
        if "]" not in hostport:
            raise ValueError(f'"{redact(value)}": the IPv6 address has no closing "]"')
        host, _, after = hostport.partition("]")
        host += "]"
        if after and not after.startswith(":"):
            raise ValueError(f'"{redact(value)}": unexpected "{after}" after the host')
        port = after[1:] if after else None
    else:
        host, sep, port_text = hostport.partition(":")
        port = port_text if sep else None
    if not host:
        raise ValueError(f'no host in "{redact(value)}"')
    why = host_problem(host) or (port_problem(port) if port is not None else None)
    if why:
        raise ValueError(f"{why} (in {redact(value)})")
    try:
        urlsplit(value).port  # noqa: B018 - our drivers read it with urlsplit: it must agree
    except ValueError:
        raise ValueError(f'"{redact(value)}" is not a URL the standard library can read') from None
    return value


def check_ice_url(value: str) -> str:
    """A STUN or TURN server URL (RFC 7064/7065) that aiortc can use."""
    m = _ICE_URL.match(value)
    if not m:
        raise ValueError(f'expected stun:HOST[:PORT] or turn:HOST[:PORT], got "{value}"')
    host, port, transport = m.group("host"), m.group("port"), m.group("transport")
    if not host:
        raise ValueError(f'no host in "{value}"')
    # aiortc's own URL pattern takes no bracketed IPv6 literal.
    why = host_problem(host, ipv6=False) or (port_problem(port) if port is not None else None)
    if why:
        raise ValueError(f"{why} (in {value})")
    if transport is not None:
        if m.group("scheme").startswith("stun"):
            raise ValueError(f'a STUN URL takes no ?transport= (in {value})')
        if transport not in ("udp", "tcp"):
            raise ValueError(f'transport must be udp or tcp, got "{transport}" (in {value})')
    return value


def check_link(value: str, kinds: tuple[str, ...]) -> str:
    """A MAVLink link `KIND:HOST:PORT` (HOST without brackets: pymavlink takes no IPv6)."""
    kind, _, rest = value.partition(":")
    if kind not in kinds or ":" not in rest:
        forms = ", ".join(f"{k}:HOST:PORT" for k in kinds)
        raise ValueError(f'expected {forms}, got "{value}"')
    check_host_port(rest, ipv6=False, within=value)
    return value


def check_zmq_endpoint(value: str) -> str:
    """A ZeroMQ endpoint: ipc://PATH, inproc://NAME or tcp://HOST:PORT (HOST may be *)."""
    m = re.match(r"^(ipc|tcp|inproc)://(.+)$", value)
    if not m:
        raise ValueError(f'expected a ZeroMQ endpoint (ipc://, tcp://), got "{value}"')
    if m.group(1) == "tcp":
        host, sep, port = m.group(2).rpartition(":")
        if not sep or not host:
            raise ValueError(f'expected tcp://HOST:PORT, got "{value}"')
        why = (None if host == "*" else host_problem(host)) or port_problem(port)
        if why:
            raise ValueError(f"{why} (in {value})")
    return value


# Where a URL names a vehicle's camera: `{vehicle}` and `{camera}`, filled in quoted.
URL_PLACEHOLDERS = ("vehicle", "camera")


def fill_url(template: str, vehicle: str, camera: str) -> str:
    """`template` with its placeholders filled in, each quoted as one path segment."""
    return template.format(vehicle=quote(vehicle, safe=""), camera=quote(camera, safe=""))


def check_url_template(value: str, *, example: str, token_key: str) -> str:
    """An http:// or https:// URL, optionally with ``{vehicle}`` and ``{camera}``
    placeholders, valid once they are filled in; `token_key` names where its credential
    goes instead of the URL."""
    shown = redact(value)[:80]  # a password in it is never echoed
    if not value.startswith(("http://", "https://")):
        raise ValueError(f'expected an http:// or https:// URL like "{example}", '
                         f'got "{shown}"')
    try:
        fields = [f for _, f, spec, conv in string.Formatter().parse(value)
                  if f is not None and (f not in URL_PLACEHOLDERS or spec or conv)]
    except ValueError:
        raise ValueError(f'"{shown}" has an unmatched {{ or }} (the placeholders are '
                         "{vehicle} and {camera})") from None
    if fields:
        raise ValueError(f'"{{{fields[0][:40]}}}" is not a placeholder: only {{vehicle}} and '
                         f'{{camera}} are (in "{shown}")')
    sample = fill_url(value, "north", "gate")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7f for c in sample):
        raise ValueError("the URL has a space or control character in it")
    try:
        parts = urlsplit(sample)
        port = parts.port
    except ValueError as e:
        raise ValueError(f'"{shown}": {e}') from None
    if parts.username is not None or parts.password is not None:
        # A URL is logged and shown; a credential is a secret reference of its own.
        raise ValueError("no user or password in the URL: give the token as "
                         f'{token_key} = {{ file = "…" }} or {{ credential = "…" }}')
    host = parts.hostname or ""
    why = host_problem(f"[{host}]" if ":" in host else host) if host else \
        f'no host in "{shown}"'
    if why:
        raise ValueError(why)
    if port == 0:
        raise ValueError(f'port 0 is not a port to reach (in "{shown}")')
    if parts.fragment:
        raise ValueError(f'"{shown}": a URL to post to has no #fragment')
    return value
