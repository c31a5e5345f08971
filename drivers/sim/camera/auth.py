"""RTSP Basic and Digest authentication (RFC 2617 as RTSP cameras use it).

Dome cameras answer DESCRIBE with 401 and a Digest challenge; clients must
cope, so the simulator can demand either scheme.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Literal

AuthScheme = Literal["basic", "digest"]


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - RFC 2617 mandates MD5


def _parse_params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    i = 0
    while i < len(text):
        while i < len(text) and text[i] in " ,":
            i += 1
        eq = text.find("=", i)
        if eq < 0:
            break
        key = text[i:eq].strip().lower()
        i = eq + 1
        if i < len(text) and text[i] == '"':
            end = text.find('"', i + 1)
            if end < 0:
                end = len(text)
            params[key] = text[i + 1 : end]
            i = end + 1
        else:
            end = text.find(",", i)
            if end < 0:
                end = len(text)
            params[key] = text[i:end].strip()
            i = end
    return params


class Authenticator:
    """Checks Authorization headers against one user/password."""

    def __init__(
        self,
        user: str,
        password: str,
        scheme: AuthScheme = "digest",
        realm: str = "edge-sim-camera",
    ) -> None:
        self.user = user
        self.password = password
        self.scheme = scheme
        self.realm = realm
        # One nonce per server run is what many cameras do; it keeps clients that
        # reuse their first answer working across requests.
        self.nonce = secrets.token_hex(16)

    def challenge(self) -> str:
        if self.scheme == "basic":
            return f'Basic realm="{self.realm}"'
        return f'Digest realm="{self.realm}", nonce="{self.nonce}", algorithm=MD5'

    def check(self, method: str, authorization: str) -> bool:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() == "basic" and self.scheme == "basic":
            try:
                decoded = base64.b64decode(credentials, validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                return False
            return hmac.compare_digest(decoded, f"{self.user}:{self.password}")
        if scheme.lower() == "digest" and self.scheme == "digest":
            p = _parse_params(credentials)
            if p.get("username") != self.user or p.get("nonce") != self.nonce:
                return False
            ha1 = _md5(f"{self.user}:{self.realm}:{self.password}")
            ha2 = _md5(f"{method}:{p.get('uri', '')}")
            if "qop" in p:
                expected = _md5(
                    f"{ha1}:{self.nonce}:{p.get('nc', '')}:{p.get('cnonce', '')}:{p['qop']}:{ha2}"
                )
            else:
                expected = _md5(f"{ha1}:{self.nonce}:{ha2}")
            return hmac.compare_digest(p.get("response", "").lower(), expected)
        return False
