"""The centre page's config (`[page]` of the centre's config): where it listens, its token,
and how long a silent vehicle is still believed to be in contact. How the page reaches
each vehicle's uplink (roll-call, thumbnails) is on that vehicle's `[[vehicles]]` entry:
:func:`check_uplink_url` checks it. Where the centre's media server plays the feeds the
vehicles push is `media_whep_url`: :func:`check_media_whep_url` checks it."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, field_validator

from edge.config.addresses import check_host_port, check_url_template
from edge.config.model import Model
from edge.config.secrets import SecretRef


def check_uplink_url(value: str) -> str:
    """An http:// or https:// base URL with a host and no user, password, query or path
    beyond "/": where the centre reaches a vehicle's uplink (its tunnel address)."""
    if "{" in value or "}" in value:
        raise ValueError(f'"{value[:80]}": an uplink URL has no placeholders')
    check_url_template(value, example="http://10.77.0.2:8800", token_key="uplink_token")
    parts = urlsplit(value)
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(f'"{value[:80]}": give the uplink\'s base URL only (the page adds '
                         "/whep/… and /api/…)")
    return value.rstrip("/")


def check_media_whep_url(value: str) -> str:
    """The media server's WHEP URL template ("" is none: no media server)."""
    if not value:
        return value
    return check_url_template(value, example="http://media.centre:8889/{vehicle}-{camera}/whep",
                              token_key="media_token")


class CentrePageConfig(Model):
    """`[page]`: the centre page (`/`): every vehicle live, one timeline, roll-call."""

    enabled: bool = True
    # Port 0 is "any free port": tests listen that way.
    listen: str = "127.0.0.1:8900"
    # The bearer token the page's users type (at least 16 characters).
    token: SecretRef | None = None
    # Out of contact when nothing newer than this came from a vehicle. Its sync service's
    # own health goes every `[sync] health_every_s` (5 s) whatever else happens: two of
    # them missed, and 2 s for a satellite hop and the centre's sourcing, is 12 s.
    contact_timeout_s: float = Field(default=12.0, ge=1, le=3600)
    # The timeline at start: alerts, marks and commands of this many past hours...
    timeline_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    # ... at most this many, newest kept (the browser holds them all).
    timeline_max: int = Field(default=500, ge=10, le=10_000)
    # The centre's media server's WHEP URL for a pushed camera, {vehicle} and {camera}
    # filled in (e.g. MediaMTX: "http://media.centre:8889/{vehicle}-{camera}/whep"). Set,
    # roll-call of a camera whose push is live plays from there: the satellite carries
    # the feed once however many operators watch. "": always through the tunnel.
    media_whep_url: str = ""
    # The bearer token the media server expects of viewers (none: no Authorization).
    media_token: SecretRef | None = None

    @field_validator("media_whep_url")
    @classmethod
    def _media(cls, v: str) -> str:
        return check_media_whep_url(v)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        return check_host_port(v, allow_zero_port=True)
