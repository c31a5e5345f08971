"""The `onvif` source kind in `[[cameras]]`: how it is written and how a mistake is told."""

from __future__ import annotations

from typing import Any

import pytest

from edge.config import ConfigError, parse_config
from edge.config.cameras import OnvifSourceConfig
from edge.services.camera_sources import source_kinds


def camera(**fields: Any) -> dict[str, Any]:
    return {"cameras": [{"id": "gate", "name": "Gate", **fields}]}


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as e:
        parse_config(data, "v.toml")
    return e.value.problems


def test_main_and_sub_from_one_device() -> None:
    cfg = parse_config(camera(
        main={"onvif": "http://192.0.2.10", "profile": "main"},
        sub={"onvif": "http://192.0.2.10:8080/onvif/device_service", "profile": "Profile_2"},
        credentials={"file": "gate.cred"}))
    streams = cfg.cameras[0].streams
    assert streams == {
        "main": OnvifSourceConfig(onvif="http://192.0.2.10", profile="main"),
        "sub": OnvifSourceConfig(onvif="http://192.0.2.10:8080/onvif/device_service",
                                 profile="Profile_2")}
    assert "onvif" in source_kinds()  # the camera service can build it


@pytest.mark.parametrize(("source", "expected"), [
    ({"onvif": "192.0.2.10", "profile": "main"},
     'cameras[0].main.onvif: expected http://HOST[:PORT] of an ONVIF device, got "192.0.2.10"'),
    ({"onvif": "http://admin:secret@192.0.2.10", "profile": "main"},
     "cameras[0].main.onvif: no user or password in the ONVIF address: give the camera's "
     "`credentials` instead"),
    ({"onvif": "http://192.0.2.10:0", "profile": "main"},
     "cameras[0].main.onvif: port 0 is not in 1-65535 (in http://192.0.2.10:0)"),
    ({"onvif": "http://cam era", "profile": "main"},
     'cameras[0].main.onvif: "http://cam era" has a space or control character in it'),
    ({"onvif": "http://192.0.2.10", "profile": "two words"},
     'cameras[0].main.profile: expected "main", "sub" or a profile token (1-64 characters, '
     'no spaces), got "two words"'),
])
def test_a_bad_onvif_source_is_named_by_its_key(source: dict[str, str], expected: str) -> None:
    assert problems(camera(main=source)) == [expected]


def test_the_profile_must_be_said() -> None:
    # `sub = { onvif = … }` quietly meaning the main profile would be a trap.
    [problem] = problems(camera(main={"onvif": "http://192.0.2.10"}))
    assert problem.startswith("cameras[0].main.profile: "), problem


def test_a_password_in_the_address_is_not_repeated() -> None:
    [problem] = problems(camera(main={"onvif": "http://admin:secret@192.0.2.10",
                                      "profile": "main"}))
    assert "secret" not in problem
