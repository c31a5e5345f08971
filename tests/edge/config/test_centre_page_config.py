"""`[page]`, the centre page's config, and the `[[vehicles]]` fields it reads (each vehicle's
uplink): what they accept, what they refuse in one sentence, and the page they build
(tokens read from their files, never from the config itself)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from edge.centre.page import CentrePage
from edge.config import ConfigError, SecretRef
from edge.config.centre_page import CentrePageConfig
from edge.config.centre_site import CentreSiteConfig

SITE = {"listen": "127.0.0.1", "nats": {}}


def problem(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as e:
        CentreSiteConfig.model_validate({**SITE, **data})
    (err,) = e.value.errors()
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else err["msg"]


def test_defaults_and_a_full_section() -> None:
    cfg = CentrePageConfig()
    assert (cfg.listen, cfg.contact_timeout_s, cfg.token) == ("127.0.0.1:8900", 12.0, None)
    site = CentreSiteConfig.model_validate({**SITE,
        "page": {"listen": "0.0.0.0:8900", "token": {"file": "page.token"}},
        "vehicles": [{"id": "north", "uplink_url": "https://10.77.0.2:8800/",
                      "uplink_token": {"credential": "north-uplink"}},
                     {"id": "south"}]})
    assert site.page is not None and site.page.listen == "0.0.0.0:8900"
    assert site.vehicles[0].uplink_url == "https://10.77.0.2:8800"  # a base, no slash
    assert site.vehicles[1].uplink_url == ""


@pytest.mark.parametrize(("data", "says"), [
    ({"page": {"listen": "nowhere"}}, "expected HOST:PORT"),
    ({"page": {"token": "plain-text-token"}}, "a secret is never written in the config"),
    ({"page": {"contact_timeout_s": 0}}, "greater than or equal to 1"),
    ({"vehicles": [{"id": "n", "uplink_url": "ftp://x:1", "uplink_token": {"file": "t"}}]},
     "expected an http:// or https:// URL"),
    ({"vehicles": [{"id": "n", "uplink_url": "http://u:pw@10.0.0.2:8800",
                    "uplink_token": {"file": "t"}}]}, "no user or password in the URL"),
    ({"vehicles": [{"id": "n", "uplink_url": "http://10.0.0.2:8800/whep/gate",
                    "uplink_token": {"file": "t"}}]}, "base URL only"),
    ({"vehicles": [{"id": "n", "uplink_url": "http://bad_host:8800",
                    "uplink_token": {"file": "t"}}]}, "not a valid host name"),
    ({"vehicles": [{"id": "n", "uplink_url": "http://10.0.0.2:8800"}]},
     "uplink_url is given without uplink_token"),
    ({"nats": None, "page": {}}, "[page] shows what the vehicles' streams bring"),
    ({"page": {"media_whep_url": "rtsp://media:8554/{vehicle}"}},
     "expected an http:// or https:// URL"),
    ({"page": {"media_whep_url": "http://media:8889/{vehicle}-{cam}/whep"}},
     '"{cam}" is not a placeholder: only {vehicle} and {camera} are'),
    ({"page": {"media_whep_url": "http://media:8889/{vehicle/whep"}}, "unmatched { or }"),
    ({"page": {"media_whep_url": "http://media:8889/{}/whep"}}, '"{}" is not a placeholder'),
    ({"page": {"media_whep_url": "http://media:8889/{vehicle!r}/whep"}},
     "is not a placeholder"),
    ({"page": {"media_whep_url": "http://u:pw@media:8889/{vehicle}/whep"}},
     "no user or password in the URL"),
    ({"page": {"media_whep_url": "http://bad_host:8889/{vehicle}/whep"}},
     "not a valid host name"),
    ({"page": {"media_whep_url": "http://media:0/{vehicle}/whep"}}, "port 0 is not a port"),
    ({"page": {"media_whep_url": "http://media:99999/{vehicle}/whep"}}, "out of range"),
    ({"page": {"media_whep_url": "http://media:8889/{camera} x/whep"}},
     "a space or control character"),
    ({"page": {"media_whep_url": "http:///{vehicle}/whep"}}, "no host in"),
    ({"page": {"media_token": "plain-text-token"}}, "a secret is never written in the config"),
])
def test_bad_values_are_one_sentence(data: dict[str, Any], says: str) -> None:
    text = problem(data)
    assert says in text and "\n" not in text, text
    assert "pw" not in text


@pytest.mark.parametrize("url", [
    "http://media.centre:8889/{vehicle}-{camera}/whep",  # MediaMTX: a path per feed
    "https://10.0.0.5/whep/{vehicle}",  # a push per vehicle
    "http://{vehicle}.media.centre/whep/{camera}",  # placeholders in the host fill it
    "http://[fd00::5]:8889/live/whep?feed={vehicle}_{camera}",
])
def test_media_whep_url_templates(url: str) -> None:
    site = CentreSiteConfig.model_validate({**SITE, "page": {"media_whep_url": url}})
    assert site.page is not None and site.page.media_whep_url == url


def test_the_page_from_its_config_reads_the_tokens(tmp_path: Path) -> None:
    (tmp_path / "page.token").write_text("centre-page-token-0123456789\n")
    (tmp_path / "north.token").write_text("north-uplink-token\n")
    site = CentreSiteConfig.model_validate({**SITE,
        "page": {"listen": "127.0.0.1:0", "token": {"file": "page.token"},
                 "contact_timeout_s": 30},
        "vehicles": [{"id": "north", "uplink_url": "http://10.77.0.2:8800",
                      "uplink_token": {"file": "north.token"}}, {"id": "south"}]})
    assert site.page is not None
    page = CentrePage.from_config(site.page, site.vehicles, "nats://127.0.0.1:4222", tmp_path)
    assert page.state.contact_timeout_s == 30
    assert page.uplinks.vehicles["north"].token == "north-uplink-token"
    assert [v.uplink for v in page.state.vehicles.values()] == [True, False]
    assert page.media is None  # no media_whep_url: roll-call always through the tunnel

    (tmp_path / "media.token").write_text("media-server-token\n")
    media = site.page.model_copy(update={
        "media_whep_url": "http://media.centre:8889/{vehicle}-{camera}/whep",
        "media_token": SecretRef(file="media.token")})
    page = CentrePage.from_config(media, site.vehicles, "nats://127.0.0.1:4222", tmp_path)
    assert page.media is not None and page.media.token == "media-server-token"
    assert page.media.url("north", "gate/1") == "http://media.centre:8889/north-gate%2F1/whep"

    with pytest.raises(ConfigError, match=r"page\.token: required"):
        CentrePage.from_config(CentrePageConfig(), site.vehicles, "nats://127.0.0.1:4222",
                               tmp_path)
    missing = site.page.model_copy(update={"token": SecretRef(file="gone.token")})
    with pytest.raises(ConfigError, match="cannot read secret"):
        CentrePage.from_config(missing, site.vehicles, "nats://127.0.0.1:4222", tmp_path)
