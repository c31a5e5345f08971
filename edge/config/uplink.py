"""`[uplink]`: the WHEP server the city centre pulls video from, and `[uplink.push]`: the
feeds the vehicle pushes to the centre's WHIP server."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from edge.config.addresses import check_host_port, check_ice_url, check_url_template
from edge.config.model import DeviceId, Model
from edge.config.secrets import SecretRef

TURN_USAGE = '{ url = "turn:HOST", username = "…", credential = { file = "…" } }'


class IceServerConfig(Model):
    """A STUN or TURN server; a TURN server needs a username and a credential.

    The credential is a secret reference, read when a peer connection is set
    up (:meth:`password`). A bare URL (`"stun:HOST"`) is `{ url = … }`.
    """

    url: str
    username: str | None = Field(default=None, min_length=1, max_length=256)
    credential: SecretRef | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_url(cls, value: Any) -> Any:
        # Checked here so that a bad bare URL is named by its own key, not `.url`.
        return {"url": check_ice_url(value)} if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_ice_url(v)

    @model_validator(mode="after")
    def _credentials(self) -> IceServerConfig:
        turn = self.url.startswith("turn")
        if turn and (self.username is None or self.credential is None):
            raise ValueError(f'"{self.url}": a TURN server needs a username and a credential, '
                             f"e.g. {TURN_USAGE}")
        if not turn and (self.username is not None or self.credential is not None):
            raise ValueError(f'a STUN server takes no username or credential (in {self.url})')
        return self

    def password(self, base_dir: Path | None = None) -> str | None:
        """The TURN credential, read from its file or systemd credential now."""
        return None if self.credential is None else self.credential.read_text(base_dir)


def check_whip_url(value: str) -> str:
    """The centre's WHIP endpoint: an http(s) URL, with `{vehicle}` and `{camera}` where a
    media server names each feed by its path (MediaMTX: one path per stream)."""
    return check_url_template(value, example="https://10.77.0.1:8889/{vehicle}-{camera}/whip",
                              token_key="token")


class PushConfig(Model):
    """`[uplink.push]`: the centre's WHIP server and the cameras pushed to it at start.

    Each pushed camera is one WHIP session (RFC 9725) offered by the uplink; a push
    that fails is retried from `retry_min_s`, doubling up to `retry_max_s`.
    """

    # Filled in per camera: `{vehicle}` and `{camera}` (quoted) where the server names
    # each feed by its path; one URL for all when it tells feeds apart itself.
    whip_url: str
    # The bearer token the WHIP server expects (a secret reference; none: no
    # Authorization header).
    token: SecretRef | None = None
    cameras: list[DeviceId] = []
    # Which stream goes up: "auto" follows the link to the centre as WHEP's auto does.
    profile: Literal["main", "sub", "auto"] = "auto"
    retry_min_s: float = Field(default=1.0, gt=0, le=600)
    retry_max_s: float = Field(default=30.0, gt=0, le=3600)

    @field_validator("whip_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_whip_url(v)

    @field_validator("cameras")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        for i, cam in enumerate(v):
            if cam in v[:i]:
                raise ValueError(f'"{cam}" is listed twice')
        return v

    @model_validator(mode="after")
    def _bounds(self) -> PushConfig:
        if self.retry_max_s < self.retry_min_s:
            raise ValueError(f"retry_max_s ({self.retry_max_s:g}) is below retry_min_s "
                             f"({self.retry_min_s:g})")
        return self

    def bearer(self, base_dir: Path | None = None) -> str | None:
        """The token, read from its file or systemd credential now."""
        return None if self.token is None else self.token.read_text(base_dir).strip()


class UplinkConfig(Model):
    enabled: bool = True
    listen: str = "127.0.0.1:8800"
    token: SecretRef | None = None
    tls_cert: str | None = None
    # The private key is a secret reference, read when TLS is set up. A bare
    # path (as older configs give it) is a file reference.
    tls_key: SecretRef | None = None
    ice: list[IceServerConfig] = Field(default=[], alias="ice_servers")
    max_sessions: int = Field(default=16, ge=1, le=256)
    max_transcodes: int = Field(default=1, ge=0, le=8)
    # The worst round trip a viewer may have (satellite): sizes NACK history.
    worst_rtt_ms: int = Field(default=1000, ge=50, le=10000)
    profile: Literal["main", "sub", "auto"] = "auto"
    # Every packet sent twice to a viewer across a satellite hop ("auto"), to
    # every viewer ("always") or to none ("off"): see edge/uplink/redundancy.py.
    redundancy: Literal["auto", "always", "off"] = "auto"
    # An open session moves back to the main stream only once the link carrying the
    # tunnel has allowed main this long (down to sub is at once): with the links
    # service's own failback delay, a 4G link that flaps does not flip the picture.
    upgrade_after_s: float = Field(default=10.0, ge=0, le=3600)
    # The feeds pushed to the centre's WHIP server ([uplink.push]); none: no push.
    push: PushConfig | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        # Port 0 is "any free port": tests and benches listen that way.
        return check_host_port(v, allow_zero_port=True)

    @field_validator("tls_key", mode="before")
    @classmethod
    def _key_path(cls, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        if "\n" in v or "-----BEGIN" in v:
            raise ValueError('a private key never sits in the config itself: give '
                             '{ file = "key.pem" } or { credential = "name" }')
        return {"file": v}

