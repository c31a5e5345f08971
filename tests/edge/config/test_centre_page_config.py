"""`[page]`, the centre page's config: what it accepts, what it refuses in one sentence, and
the page it builds (tokens read from their files, never from the config itself)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from edge.centre.page import CentrePage
from edge.config import ConfigError, SecretRef
from edge.config.centre_page import CentrePageConfig


def problem(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as e:
        CentrePageConfig.model_validate(data)
    (err,) = e.value.errors()
    return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"


def test_defaults_and_a_full_section() -> None:
    cfg = CentrePageConfig()
    assert (cfg.listen, cfg.contact_timeout_s, cfg.token, cfg.vehicles) == (
        "127.0.0.1:8900", 12.0, None, [])
    cfg = CentrePageConfig.model_validate({
        "listen": "0.0.0.0:8900", "token": {"file": "page.token"},
        "vehicles": [{"id": "north", "uplink_url": "https://10.77.0.2:8800/",
                      "uplink_token": {"credential": "north-uplink"}},
                     {"id": "south"}]})
    assert cfg.vehicles[0].uplink_url == "https://10.77.0.2:8800"  # a base, no slash
    assert cfg.vehicles[1].uplink_url == ""


@pytest.mark.parametrize(("data", "says"), [
    ({"listen": "nowhere"}, 'expected HOST:PORT'),
    ({"token": "plain-text-token"}, "a secret is never written in the config itself"),
    ({"contact_timeout_s": 0}, "greater than or equal to 1"),
    ({"vehicles": [{"id": "North"}]}, "should match pattern"),
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
    ({"vehicles": [{"id": "n"}, {"id": "n"}]}, 'vehicles[1].id: "n" is already the id'),
])
def test_bad_values_are_one_sentence(data: dict[str, Any], says: str) -> None:
    text = problem(data)
    assert says in text and "\n" not in text, text
    assert "pw" not in text


def test_the_page_from_its_config_reads_the_tokens(tmp_path: Path) -> None:
    (tmp_path / "page.token").write_text("centre-page-token-0123456789\n")
    (tmp_path / "north.token").write_text("north-uplink-token\n")
    cfg = CentrePageConfig.model_validate({
        "listen": "127.0.0.1:0", "token": {"file": "page.token"}, "contact_timeout_s": 30,
        "vehicles": [{"id": "north", "uplink_url": "http://10.77.0.2:8800",
                      "uplink_token": {"file": "north.token"}}, {"id": "south"}]})
    page = CentrePage.from_config(cfg, "nats://127.0.0.1:4222", tmp_path)
    assert page.state.contact_timeout_s == 30
    assert page.uplinks.vehicles["north"].token == "north-uplink-token"
    assert [v.uplink for v in page.state.vehicles.values()] == [True, False]

    with pytest.raises(ConfigError, match=r"page\.token: required"):
        CentrePage.from_config(CentrePageConfig(), "nats://127.0.0.1:4222", tmp_path)
    missing = cfg.model_copy(update={"token": SecretRef(file="gone.token")})
    with pytest.raises(ConfigError, match="cannot read secret"):
        CentrePage.from_config(missing, "nats://127.0.0.1:4222", tmp_path)
