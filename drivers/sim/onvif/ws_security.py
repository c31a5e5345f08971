"""WS-Security UsernameToken checking, as an ONVIF device does it.

PasswordDigest is Base64(SHA-1(nonce + created + password)) with the nonce
Base64-decoded and `created` the literal text of wsu:Created; PasswordText is the
password itself. A digest is refused when its Created is more than `window_s` from
the device's clock or its nonce was already used within that window (a replayed
request), so a captured request cannot be sent again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
PASSWORD_DIGEST = ("http://docs.oasis-open.org/wss/2004/01/"
                   "oasis-200401-wss-username-token-profile-1.0#PasswordDigest")
PASSWORD_TEXT = ("http://docs.oasis-open.org/wss/2004/01/"
                 "oasis-200401-wss-username-token-profile-1.0#PasswordText")


class AuthFailure(Exception):
    """Why a request's credentials were refused (for the log, never told to the client)."""


def password_digest(nonce: bytes, created: str, password: str) -> str:
    return base64.b64encode(hashlib.sha1(nonce + created.encode() + password.encode()).digest()
                            ).decode()


def parse_created(text: str) -> float:
    """wsu:Created (xs:dateTime, UTC with Z or an offset) as a Unix time."""
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise AuthFailure(f"Created {text!r} is not a date and time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


class UsernameTokenChecker:
    """Checks the UsernameToken in a SOAP header against one user and password."""

    def __init__(self, user: str, password: str, *, window_s: float = 300.0) -> None:
        self.user = user
        self.password = password
        self.window_s = window_s
        self._nonces: dict[bytes, float] = {}

    def check(self, header: ET.Element | None, now: float | None = None) -> None:
        """Return if the header carries this user's valid token; else raise AuthFailure."""
        now = time.time() if now is None else now
        token = None if header is None else header.find(f"{{{WSSE}}}Security/"
                                                        f"{{{WSSE}}}UsernameToken")
        if token is None:
            raise AuthFailure("no UsernameToken")
        user = token.findtext(f"{{{WSSE}}}Username") or ""
        password = token.find(f"{{{WSSE}}}Password")
        if password is None:
            raise AuthFailure("no Password")
        kind = password.get("Type", PASSWORD_TEXT)
        given = password.text or ""
        if kind == PASSWORD_TEXT:
            ok = hmac.compare_digest(given.encode(), self.password.encode())
        elif kind == PASSWORD_DIGEST:
            ok = self._digest_ok(token, given, now)
        else:
            raise AuthFailure(f"unknown password type {kind}")
        if not ok or not hmac.compare_digest(user.encode(), self.user.encode()):
            raise AuthFailure(f"wrong user or password for {user!r}")

    def _digest_ok(self, token: ET.Element, given: str, now: float) -> bool:
        nonce_text = token.findtext(f"{{{WSSE}}}Nonce") or ""
        created = token.findtext(f"{{{WSU}}}Created")
        if created is None:
            raise AuthFailure("PasswordDigest without Created")
        try:
            nonce = base64.b64decode(nonce_text, validate=True)
        except (binascii.Error, ValueError):
            raise AuthFailure("Nonce is not Base64") from None
        if not nonce:
            raise AuthFailure("PasswordDigest without Nonce")
        if abs(now - parse_created(created)) > self.window_s:
            raise AuthFailure(f"Created {created} is more than {self.window_s:g} s off")
        expected = password_digest(nonce, created, self.password)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return False
        # Only a valid digest's nonce is remembered: garbage cannot fill the table.
        self._nonces = {n: t for n, t in self._nonces.items() if now - t <= self.window_s}
        if nonce in self._nonces:
            raise AuthFailure("nonce replayed")
        self._nonces[nonce] = now
        return True
