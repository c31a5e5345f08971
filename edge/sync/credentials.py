"""NATS nkeys: who may talk to a NATS server of ours, and how a client proves it.

An nkey is an Ed25519 key pair in NATS's encoding: the **seed** (``SU…``, secret) stays
with whoever connects, the **public key** (``U…``) goes in the server's list of users.
The server sends a nonce, the client signs it: no password crosses the link. We use
user nkeys for both the client port (the bridge on a vehicle; ``edge centre`` and the
centre page) and the centre's leafnode port (each vehicle's leaf connection).

Seeds are read from a :class:`~edge.config.secrets.SecretRef` where they are used,
and a file holding a seed or a public key that is not one is a one-line
:class:`~edge.config.errors.ConfigError` naming the file.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

import nkeys

from edge.config.errors import ConfigError
from edge.config.secrets import SecretRef

SEED_PREFIX = "SU"
PUBLIC_PREFIX = "U"


def new_user_seed() -> str:
    """A fresh user seed (``SU…``)."""
    seed: bytes = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER)
    return seed.decode()


def _decoded(text: str) -> bytes | None:
    """The raw bytes of an nkey's text form when its checksum holds, else None."""
    try:
        data = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        return None
    if len(data) < 3 or nkeys.crc16_checksum(data[:-2]) != data[-2:]:
        return None
    return data[:-2]


def public_key_of_seed(seed: str) -> str:
    """The public key (``U…``) of a user seed; ValueError naming what is wrong."""
    text = seed.strip()
    if text.startswith(PUBLIC_PREFIX) and len(text) == 56:
        raise ValueError("this is a public key, not a seed (the .seed file)")
    raw = _decoded(text)
    if not text.startswith(SEED_PREFIX) or raw is None or len(raw) != 34:
        raise ValueError(f"not an nkey user seed (58 characters starting with {SEED_PREFIX}, "
                         "with a valid checksum)")
    public: bytes = nkeys.from_seed(bytearray(text.encode())).public_key
    return public.decode()


def check_public_key(text: str) -> str:
    """`text` if it is a user public key (``U…``); ValueError otherwise."""
    key = text.strip()
    if key.startswith(SEED_PREFIX):
        raise ValueError("this is a seed (secret), not a public key: give the .pub file")
    raw = _decoded(key)
    if not key.startswith(PUBLIC_PREFIX) or raw is None or len(raw) != 33:
        raise ValueError(f"not an nkey user public key (56 characters starting with "
                         f"{PUBLIC_PREFIX}, with a valid checksum)")
    return key


def read_seed(ref: SecretRef, base_dir: Path | None, what: str) -> str:
    """A seed from `ref`, checked; ConfigError "<file>: <what>: …" otherwise."""
    text = ref.read_text(base_dir)
    try:
        public_key_of_seed(text)
    except ValueError as e:
        raise ConfigError(str(ref.path(base_dir)), [f"{what}: {e}"]) from None
    return text


def read_public_key(ref: SecretRef, base_dir: Path | None, what: str) -> str:
    """A public key from `ref`, checked; ConfigError "<file>: <what>: …" otherwise."""
    text = ref.read_text(base_dir)
    try:
        return check_public_key(text)
    except ValueError as e:
        raise ConfigError(str(ref.path(base_dir)), [f"{what}: {e}"]) from None


def write_key_pair(directory: Path, name: str) -> tuple[Path, Path, str]:
    """`name`.seed (owner-only) and `name`.pub in `directory`; (seed path, pub path, key).

    FileExistsError when either is there already: a seed is never overwritten."""
    seed_path, pub_path = directory / f"{name}.seed", directory / f"{name}.pub"
    for p in (seed_path, pub_path):
        if p.exists():
            raise FileExistsError(f"{p} exists already (a key is never overwritten)")
    seed = new_user_seed()
    public = public_key_of_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(seed_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(seed + "\n")
    pub_path.write_text(public + "\n")
    return seed_path, pub_path, public
