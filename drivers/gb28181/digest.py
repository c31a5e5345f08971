"""HTTP digest authentication as SIP uses it (RFC 2617 MD5, RFC 3261 §22.4): the server's
challenge and check, and the client's answer (:func:`authorization`, for a device).

GB/T 28181 devices authenticate REGISTER this way. Nonces are stateless: a hex issue
time and an HMAC of it under a per-process secret, so a restart invalidates them all
(devices simply take the next 401) and nothing is stored per challenge.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

NONCE_LIFETIME = 300.0
"""Seconds a nonce is good for; an older one gets a fresh challenge with `stale=true`."""


class DigestError(ValueError):
    """An Authorization header we cannot use; `str()` says what was wrong."""


def md5_hex(text: str) -> str:
    # Devices hash the password bytes as they store them; UTF-8 is what SIPp and wvp use.
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def digest_response(*, username: str, realm: str, password: str, method: str, uri: str,
                    nonce: str, qop: str | None = None, nc: str | None = None,
                    cnonce: str | None = None) -> str:
    """The `response` value (RFC 2617 §3.2.2.1), with `qop=auth` or without (RFC 2069)."""
    ha1 = md5_hex(f"{username}:{realm}:{password}")
    ha2 = md5_hex(f"{method}:{uri}")
    if qop is None:
        return md5_hex(f"{ha1}:{nonce}:{ha2}")
    if qop != "auth":
        raise DigestError(f"unsupported qop {qop!r} (only auth)")
    if not nc or not cnonce:
        raise DigestError("qop=auth without nc and cnonce")
    return md5_hex(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def parse_params(value: str) -> dict[str, str]:
    """`Digest a="x, y", b=z` -> {"a": "x, y", "b": "z"} (names lower-cased)."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise DigestError(f"not a Digest header (scheme {scheme[:20]!r})")
    out: dict[str, str] = {}
    i = 0
    n = len(rest)
    while i < n:
        while i < n and rest[i] in " \t,":
            i += 1
        if i >= n:
            break
        eq = rest.find("=", i)
        if eq < 0:
            raise DigestError(f"parameter without a value near {rest[i:i + 30]!r}")
        name = rest[i:eq].strip().lower()
        i = eq + 1
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] == '"':
            j = i + 1
            chars: list[str] = []
            while j < n and rest[j] != '"':
                if rest[j] == "\\" and j + 1 < n:
                    j += 1
                chars.append(rest[j])
                j += 1
            if j >= n:
                raise DigestError(f"unclosed quote in parameter {name!r}")
            out[name] = "".join(chars)
            i = j + 1
        else:
            j = rest.find(",", i)
            j = n if j < 0 else j
            out[name] = rest[i:j].strip()
            i = j
        if not name:
            raise DigestError("empty parameter name")
    return out


def authorization(challenge: str, *, username: str, password: str, method: str,
                  uri: str) -> str:
    """The client's `Authorization` value answering a `WWW-Authenticate` challenge
    (`qop=auth` when offered); :class:`DigestError` for a challenge it cannot answer."""
    params = parse_params(challenge)
    realm, nonce = params.get("realm"), params.get("nonce")
    if realm is None or nonce is None:
        raise DigestError("challenge without realm or nonce")
    qop = "auth" if "auth" in [q.strip() for q in params.get("qop", "").split(",")] else None
    nc, cnonce = ("00000001", secrets.token_hex(8)) if qop else (None, None)
    response = digest_response(username=username, realm=realm, password=password,
                               method=method, uri=uri, nonce=nonce, qop=qop, nc=nc,
                               cnonce=cnonce)
    fields = [f'username="{username}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"',
              f'response="{response}"', "algorithm=MD5"]
    if qop:
        fields += [f"qop={qop}", f"nc={nc}", f'cnonce="{cnonce}"']
    if "opaque" in params:
        fields.append(f'opaque="{params["opaque"]}"')
    return "Digest " + ", ".join(fields)


@dataclass(frozen=True)
class Credentials:
    """The fields of an Authorization header that verification needs."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    algorithm: str | None = None

    @classmethod
    def parse(cls, value: str) -> Credentials:
        params = parse_params(value)
        missing = [k for k in ("username", "realm", "nonce", "uri", "response")
                   if k not in params]
        if missing:
            raise DigestError(f"Authorization lacks {', '.join(missing)}")
        algorithm = params.get("algorithm")
        if algorithm is not None and algorithm.upper() != "MD5":
            raise DigestError(f"unsupported algorithm {algorithm[:20]!r} (only MD5)")
        return cls(params["username"], params["realm"], params["nonce"], params["uri"],
                   params["response"], params.get("qop"), params.get("nc"),
                   params.get("cnonce"), algorithm)


NonceState = Literal["good", "stale", "forged"]


class DigestAuthority:
    """Issues challenges and checks answers for one realm."""

    def __init__(self, realm: str, *, qop: bool = True, lifetime: float = NONCE_LIFETIME,
                 clock: Callable[[], float] = time.time, secret: bytes | None = None) -> None:
        self.realm = realm
        # Many cameras answer qop=auth; some only RFC 2069. Answers of both kinds verify.
        self.qop = qop
        self.lifetime = lifetime
        self._clock = clock
        self._secret = secret if secret is not None else secrets.token_bytes(32)

    def new_nonce(self) -> str:
        stamp = f"{int(self._clock()):08x}"
        return stamp + self._mac(stamp)

    def _mac(self, stamp: str) -> str:
        return hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()[:32]

    def nonce_state(self, nonce: str) -> NonceState:
        stamp, mac = nonce[:8], nonce[8:]
        if len(nonce) != 40 or not hmac.compare_digest(mac, self._mac(stamp)):
            return "forged"
        try:
            issued = int(stamp, 16)
        except ValueError:
            return "forged"
        age = self._clock() - issued
        return "good" if -5 <= age <= self.lifetime else "stale"

    def challenge(self, *, stale: bool = False) -> str:
        """A WWW-Authenticate value with a fresh nonce."""
        parts = [f'Digest realm="{self.realm}"', f'nonce="{self.new_nonce()}"']
        if self.qop:
            parts.append('qop="auth"')
        parts.append("algorithm=MD5")
        if stale:
            parts.append("stale=true")
        return ", ".join(parts)

    def verify(self, credentials: Credentials, *, password: str,
               method: str) -> Literal["ok", "stale", "wrong"]:
        """`ok`, `stale` (right answer to an expired nonce: challenge again, not a
        failure), or `wrong` (bad password, another realm, or a nonce we never issued)."""
        if credentials.realm != self.realm:
            return "wrong"
        state = self.nonce_state(credentials.nonce)
        if state == "forged":
            return "wrong"
        try:
            expected = digest_response(
                username=credentials.username, realm=credentials.realm, password=password,
                method=method, uri=credentials.uri, nonce=credentials.nonce,
                qop=credentials.qop, nc=credentials.nc, cnonce=credentials.cnonce)
        except DigestError:
            return "wrong"
        if not hmac.compare_digest(expected, credentials.response.lower()):
            return "wrong"
        return "ok" if state == "good" else "stale"
