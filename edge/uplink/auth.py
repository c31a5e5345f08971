"""The centre's bearer token: read from a file or systemd credential, compared in constant time.

The token is only ever held as bytes in memory: it is never logged, never put
in a URL (so no access log can carry it) and never echoed in an error.
"""

from __future__ import annotations

from pathlib import Path

from edge.config import ConfigError, UplinkConfig
from edge.config.secrets import bearer_ok

__all__ = ["MIN_TOKEN_BYTES", "bearer_ok", "load_token"]

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
