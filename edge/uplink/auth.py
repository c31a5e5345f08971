"""The centre's bearer token: read from a file or systemd credential, compared in constant time.

The token is only ever held as bytes in memory: it is never logged, never put
in a URL (so no access log can carry it) and never echoed in an error.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from edge.config import ConfigError, UplinkConfig

MIN_TOKEN_BYTES = 16


def load_token(config: UplinkConfig, config_dir: Path, source: str = "config") -> bytes:
    """The token's bytes; ConfigError (one line for the operator) when there is none fit for use.

    The uplink refuses to serve without one rather than serve unprotected.
    """
    if config.token is None:
        raise ConfigError(source, ['uplink.token: required, e.g. { file = "uplink.token" } or '
                                   '{ credential = "uplink-token" }'])
    try:
        token = config.token.read_text(config_dir).encode()
    except ConfigError as e:
        raise ConfigError(e.path, [f"uplink.token: {p}" for p in e.problems]) from None
    if len(token) < MIN_TOKEN_BYTES:
        raise ConfigError(source, [f"uplink.token: shorter than {MIN_TOKEN_BYTES} characters; "
                                   "make a longer one (e.g. openssl rand -hex 24)"])
    return token


def bearer_ok(authorization: str | None, token: bytes) -> bool:
    """Whether an Authorization header carries `token`, compared in constant time."""
    if not authorization:
        return False
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    # compare_digest takes the same time whatever the first differing byte;
    # comparing digests makes the inputs equally long, so not even the
    # token's length shows in the timing.
    given = hashlib.sha256(value.strip().encode()).digest()
    return hmac.compare_digest(given, hashlib.sha256(token).digest())
