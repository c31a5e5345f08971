"""The configs `edge demo` generates when it emulates the links: the vehicle's, and its centre's.

The vehicle's is the demo's own config with the emulated links filled in: each
emulated `[[links]]` entry gets the WAN's interface and the vehicle's address on it
(its `gateway` goes: the centre is on the emulated link), and `[centre]` points at the
emulated centre with a `[centre.tunnel]`. Everything else is kept as written. It is
written into the demo's runtime dir, so every relative path in it (secret files, the
recorder's path, TLS files) is made absolute against the original config's folder
first. The centre's config is `edge centre`'s, beside its keys.

TOML is written with every top-level key on one line and its tables inline: what
`tomllib` reads back is the same data.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _string(text: str) -> str:
    # A JSON string is a TOML basic string, except that TOML also wants DEL escaped;
    # non-ASCII stays as it is (JSON's \\ud83d-style surrogates are not valid TOML).
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _string(key)


def toml_value(value: Any) -> str:
    """`value` as an inline TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for a {type(value).__name__}")


def _is_tables(value: Any) -> bool:
    return (isinstance(value, Sequence) and not isinstance(value, str | bytes) and bool(value)
            and all(isinstance(v, Mapping) for v in value))


def toml_text(data: Mapping[str, Any]) -> str:
    """A TOML document holding `data`, one top-level key a line, and each top-level list
    of tables (`cameras`, ...) as `[[key]]` tables last: a service that appends one (a
    GB/T 28181 channel adopted as a camera) can, where an inline array would be closed."""
    plain = "".join(f"{_key(key)} = {toml_value(value)}\n" for key, value in data.items()
                    if not _is_tables(value))
    tables = "".join(f"\n[[{_key(key)}]]\n" + "".join(f"{_key(k)} = {toml_value(v)}\n"
                                                    for k, v in table.items())
                     for key, value in data.items() if _is_tables(value) for table in value)
    return plain + tables


# -- paths relative to the config's folder ---------------------------------------------------

#: keys whose string value is a path taken from the config file's folder (besides every
#: secret reference, `{ file = "…" }`, wherever it is)
_PATH_KEYS = (("recorder", "path"), ("uplink", "tls_cert"), ("uplink", "tls_key"))


def _absolute(path: str, base: Path) -> str:
    return str(base / path)  # an absolute `path` stays as it is


def _secret_files_absolute(value: Any, base: Path) -> Any:
    if isinstance(value, dict):
        if set(value) == {"file"} and isinstance(value["file"], str):
            return {"file": _absolute(value["file"], base)}
        return {k: _secret_files_absolute(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [_secret_files_absolute(v, base) for v in value]
    return value


def with_absolute_paths(data: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """A copy of a vehicle config's data whose relative paths are taken from `base`."""
    out: dict[str, Any] = _secret_files_absolute(dict(data), base)
    for section, key in _PATH_KEYS:
        table = out.get(section)
        if isinstance(table, dict) and isinstance(table.get(key), str):
            table[key] = _absolute(table[key], base)
    return out


# -- the generated configs --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmulatedLink:
    """One of the vehicle's links as the emulated world made it."""

    link: str  # the [[links]] id
    interface: str
    vehicle_address: str


@dataclass(frozen=True, slots=True)
class TunnelPlan:
    """Both ends of the demo's tunnel: interfaces, addresses inside it, key files."""

    vehicle_interface: str
    centre_interface: str
    vehicle_address: str  # with its prefix, "198.19.100.2/24"
    centre_address: str  # with its prefix
    port: int
    vehicle_private_key: Path
    vehicle_public_key: Path
    centre_private_key: Path
    centre_public_key: Path


def vehicle_data(data: Mapping[str, Any], config_dir: Path, links: Sequence[EmulatedLink],
                 centre_address: str, probe_port: int, tunnel: TunnelPlan | None
                 ) -> dict[str, Any]:
    """The demo's config data (as `tomllib` read it) with the emulated links and centre."""
    out = with_absolute_paths(data, config_dir)
    emulated = {link.link: link for link in links}
    for entry in out.get("links", []):
        link = emulated.get(entry.get("id", ""))
        if link is None:
            continue
        entry["interface"] = link.interface
        entry["source"] = link.vehicle_address
        entry.pop("gateway", None)  # the emulated centre is on every link itself
    centre: dict[str, Any] = {"address": centre_address, "probe_port": probe_port}
    if tunnel is not None:
        centre["tunnel"] = {
            "interface": tunnel.vehicle_interface, "address": tunnel.vehicle_address,
            "centre_address": tunnel.centre_address.split("/")[0], "port": tunnel.port,
            "private_key": {"file": str(tunnel.vehicle_private_key)},
            "centre_public_key": {"file": str(tunnel.centre_public_key)}}
    out["centre"] = centre
    return out


def centre_data(vehicle: str, listen: str, probe_port: int, tunnel: TunnelPlan | None
                ) -> dict[str, Any]:
    """`edge centre`'s config for the demo: the emulated centre, the demo's vehicle."""
    out: dict[str, Any] = {"centre": "demo-centre", "listen": listen, "probe_port": probe_port}
    if tunnel is not None:
        out["tunnel"] = {"interface": tunnel.centre_interface, "address": tunnel.centre_address,
                         "port": tunnel.port,
                         "private_key": {"file": str(tunnel.centre_private_key)}}
        out["vehicles"] = [{"id": vehicle,
                            "tunnel_address": tunnel.vehicle_address.split("/")[0],
                            "public_key": {"file": str(tunnel.vehicle_public_key)}}]
    return out
