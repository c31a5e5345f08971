"""Secrets are never values in the TOML, only references to where they live.

A reference is ``{ file = "…" }`` (relative to the config file) or
``{ credential = "name" }`` (systemd ``LoadCredential=``, read from
``$CREDENTIALS_DIRECTORY``). It is read where the secret is used, never
while the config loads, so ``edge config check`` runs without them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path
from typing import Any

from pydantic import model_validator

from edge.config.errors import ConfigError
from edge.config.model import Model


class SecretRef(Model):
    """Where a secret lives: a file, or a systemd credential name (LoadCredential=)."""

    file: str | None = None
    credential: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _a_reference(cls, value: Any) -> Any:
        if isinstance(value, dict | SecretRef):
            return value
        raise ValueError('a secret is never written in the config itself: give '
                         '{ file = "…" } or { credential = "name" }')

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.file is None) == (self.credential is None):
            raise ValueError("expected exactly one of `file` or `credential`")
        return self

    def path(self, base_dir: Path | None = None) -> Path:
        if self.credential is not None:
            creds = os.environ.get("CREDENTIALS_DIRECTORY")
            if not creds:
                raise ConfigError(
                    "secret", [f"credential {self.credential!r}: $CREDENTIALS_DIRECTORY is not set"]
                )
            return Path(creds) / self.credential
        assert self.file is not None
        p = Path(self.file)
        return p if p.is_absolute() or base_dir is None else base_dir / p

    def read_bytes(self, base_dir: Path | None = None) -> bytes:
        p = self.path(base_dir)
        try:
            return p.read_bytes()
        except OSError as e:
            raise ConfigError(str(p), [f"cannot read secret: {e.strerror}"]) from None

    def read_text(self, base_dir: Path | None = None) -> str:
        data = self.read_bytes(base_dir)
        try:
            return data.decode().strip()
        except UnicodeDecodeError as e:
            raise ConfigError(str(self.path(base_dir)), [
                f"secret is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})"
            ]) from None


def bearer_ok(authorization: str | None, token: bytes) -> bool:
    """Whether an HTTP Authorization header carries `token`, compared in constant time."""
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
