"""RFC 2617 MD5 digest: the RFC's own example, challenges, nonces and wrong answers."""

from __future__ import annotations

import hashlib

import pytest

from drivers.gb28181.digest import (
    Credentials,
    DigestAuthority,
    DigestError,
    digest_response,
    parse_params,
)


def test_rfc2617_example() -> None:
    # RFC 2617 §3.5: the only published vector, qop=auth.
    assert digest_response(
        username="Mufasa", realm="testrealm@host.com", password="Circle Of Life",
        method="GET", uri="/dir/index.html", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        qop="auth", nc="00000001", cnonce="0a4f113b",
    ) == "6629fae49393a05397450978507c4ef1"


def test_rfc2069_form_without_qop() -> None:
    # MD5(HA1:nonce:HA2), with HA1 and HA2 as above: computed independently here.
    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5("34020000001320000001:3402000000:12345678")
    ha2 = md5("REGISTER:sip:34020000002000000001@3402000000")
    assert digest_response(
        username="34020000001320000001", realm="3402000000", password="12345678",
        method="REGISTER", uri="sip:34020000002000000001@3402000000", nonce="abc",
    ) == md5(f"{ha1}:abc:{ha2}")


def test_parse_params_quoted_commas_and_escapes() -> None:
    params = parse_params('Digest username="a,b", realm="r\\"x", nc=00000001 ,qop=auth')
    assert params == {"username": "a,b", "realm": 'r"x', "nc": "00000001", "qop": "auth"}


@pytest.mark.parametrize(("value", "reason"), [
    ('Basic dXNlcjpwYXNz', "not a Digest header"),
    ('Digest username="x", realm="r"', "lacks nonce, uri, response"),
    ('Digest username="x', "unclosed quote"),
    ('Digest username', "without a value"),
    ('Digest username="u", realm="r", nonce="n", uri="u", response="r", algorithm=SHA-256',
     "unsupported algorithm"),
])
def test_bad_authorization(value: str, reason: str) -> None:
    with pytest.raises(DigestError, match=reason):
        Credentials.parse(value)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def answer(authority: DigestAuthority, password: str, *, qop: bool = True,
           nonce: str | None = None) -> Credentials:
    challenge = parse_params(authority.challenge())
    nonce = nonce or challenge["nonce"]
    uri = "sip:34020000002000000001@3402000000"
    common = dict(username="34020000001320000001", realm=challenge["realm"], nonce=nonce,
                  uri=uri)
    if qop:
        response = digest_response(password=password, method="REGISTER", qop="auth",
                                   nc="00000001", cnonce="c0ffee", **common)
        return Credentials(response=response, qop="auth", nc="00000001", cnonce="c0ffee",
                           **common)
    return Credentials(response=digest_response(password=password, method="REGISTER",
                                                **common), **common)


@pytest.mark.parametrize("qop", [True, False])
def test_verify_right_and_wrong(qop: bool) -> None:
    authority = DigestAuthority("3402000000", clock=Clock())
    assert authority.verify(answer(authority, "12345678", qop=qop), password="12345678",
                            method="REGISTER") == "ok"
    assert authority.verify(answer(authority, "wrong", qop=qop), password="12345678",
                            method="REGISTER") == "wrong"


def test_nonce_expires_and_cannot_be_forged() -> None:
    clock = Clock()
    authority = DigestAuthority("3402000000", clock=clock, lifetime=300)
    credentials = answer(authority, "pw")
    clock.now += 301
    assert authority.verify(credentials, password="pw", method="REGISTER") == "stale"
    # A nonce made up by the device, or one from another platform's secret, is no good.
    forged = answer(authority, "pw", nonce="00000000" + "0" * 32)
    assert authority.verify(forged, password="pw", method="REGISTER") == "wrong"
    other = DigestAuthority("3402000000", clock=clock)
    assert authority.verify(answer(other, "pw"), password="pw", method="REGISTER") == "wrong"


def test_challenge_says_stale() -> None:
    params = parse_params(DigestAuthority("r", qop=False).challenge(stale=True))
    assert params["stale"] == "true" and "qop" not in params and params["algorithm"] == "MD5"
