"""UsernameToken checking against tokens made by zeep (the client onvif-zeep-async uses)."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest
from lxml import etree
from zeep.wsse.username import UsernameToken

from drivers.sim.onvif.ws_security import AuthFailure, UsernameTokenChecker

ENV = "http://www.w3.org/2003/05/soap-envelope"
NOW = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=dt.UTC)


def header(password: str, *, digest: bool = True, created: dt.datetime = NOW,
           nonce: str | None = None, user: str = "admin") -> ET.Element:
    """The Security header zeep puts on a request."""
    envelope = etree.Element(f"{{{ENV}}}Envelope", nsmap={"soap-env": ENV})
    etree.SubElement(envelope, f"{{{ENV}}}Header")
    etree.SubElement(envelope, f"{{{ENV}}}Body")
    token = UsernameToken(user, password, use_digest=digest, nonce=nonce,
                          created=created.replace(tzinfo=None),
                          zulu_timestamp=True)  # type: ignore[no-untyped-call]
    envelope, _ = token.apply(envelope, {})  # type: ignore[no-untyped-call]
    found = ET.fromstring(etree.tostring(envelope)).find(f"{{{ENV}}}Header")
    assert found is not None
    return found


@pytest.fixture
def checker() -> UsernameTokenChecker:
    return UsernameTokenChecker("admin", "s3cret", window_s=300)


def test_digest_and_text_passwords_are_accepted(checker: UsernameTokenChecker) -> None:
    checker.check(header("s3cret"), now=NOW.timestamp())
    checker.check(header("s3cret", digest=False), now=NOW.timestamp())


@pytest.mark.parametrize("digest", [True, False])
def test_wrong_password_or_user_is_refused(checker: UsernameTokenChecker, digest: bool) -> None:
    with pytest.raises(AuthFailure, match="wrong user or password"):
        checker.check(header("guess", digest=digest), now=NOW.timestamp())
    with pytest.raises(AuthFailure, match="wrong user or password"):
        checker.check(header("s3cret", digest=digest, user="root"), now=NOW.timestamp())


def test_a_replayed_digest_is_refused(checker: UsernameTokenChecker) -> None:
    same = header("s3cret", nonce="0123456789abcdef")
    checker.check(same, now=NOW.timestamp())
    with pytest.raises(AuthFailure, match="replayed"):
        checker.check(same, now=NOW.timestamp() + 1)
    # Another nonce at the same instant is a new request.
    checker.check(header("s3cret", nonce="fedcba9876543210"), now=NOW.timestamp() + 1)


def test_created_outside_the_window_is_refused(checker: UsernameTokenChecker) -> None:
    for skew in (-301, 301):
        stale = header("s3cret", created=NOW + dt.timedelta(seconds=skew))
        with pytest.raises(AuthFailure, match="more than 300 s off"):
            checker.check(stale, now=NOW.timestamp())
    checker.check(header("s3cret", created=NOW - dt.timedelta(seconds=299)),
                  now=NOW.timestamp())


def test_no_token_is_refused(checker: UsernameTokenChecker) -> None:
    with pytest.raises(AuthFailure, match="no UsernameToken"):
        checker.check(None)
    with pytest.raises(AuthFailure, match="no UsernameToken"):
        checker.check(ET.fromstring(f'<h:Header xmlns:h="{ENV}"/>'))
