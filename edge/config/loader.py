"""TOML in, a checked :class:`VehicleConfig` out, or one line per problem.

Errors name the file, the line, the key path and what was expected
(`vehicle.toml:13: cameras[2].main: expected rtsp:// URL, got "htp://x"`).
The bytes are read as they are (non-UTF-8 is one line with its position) and
nesting deeper than :data:`MAX_NESTING` is refused before anything recurses.
"""

from __future__ import annotations

import re
import reprlib
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from edge.config.errors import ConfigError
from edge.config.model import ID_PATTERN, Model, is_variant_tag
from edge.config.toml_lines import KeyPath, key_lines
from edge.config.vehicle import VehicleConfig

M = TypeVar("M", bound=Model)

# Deeper than any vehicle config; tomllib itself has no limit and recurses.
MAX_NESTING = 100
MAX_PROBLEM_CHARS = 300
_TOO_DEEP = f"arrays or tables nested more than {MAX_NESTING} levels deep"

# How pydantic names union branches in locations; they mean nothing to an operator.
_BRANCHES = frozenset({"int", "str", "float", "bool", "none"})


def _keys(loc: tuple[int | str, ...]) -> KeyPath:
    """An error location as the operator's keys: pydantic's branch and variant names left out."""
    return tuple(part for part in loc if isinstance(part, int) or not (
        part in _BRANCHES or part.startswith(("function-", "literal[")) or is_variant_tag(part)))


def _loc(keys: KeyPath) -> str:
    out = ""
    for part in keys:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


_SHOW = reprlib.Repr()
# A value is shown short and shallow: a deeply nested one must not recurse.
_SHOW.maxlevel, _SHOW.maxstring, _SHOW.maxother = 2, 80, 80
_SHOW.maxlist = _SHOW.maxtuple = _SHOW.maxdict = 4
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _one_line(text: str) -> str:
    """`text` with its control characters escaped, cut short: one line an operator can read."""
    text = _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256
                            else f"\\u{ord(m.group()):04x}", text)
    return text if len(text) <= MAX_PROBLEM_CHARS else text[:MAX_PROBLEM_CHARS - 1] + "…"


def _describe(err: dict[str, Any]) -> str:
    kind = err["type"]
    msg: str = err["msg"]
    got = err.get("input")
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return "unknown key (check its spelling)"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        if err["ctx"]["pattern"] == ID_PATTERN:
            return f'expected an id (a-z, 0-9, - and _, at most 32), got "{got}"'
        return f'expected text matching {err["ctx"]["pattern"]}, got "{got}"'
    if kind == "literal_error":
        return f"expected {err['ctx']['expected']}, got {_SHOW.repr(got)}"
    return f"{msg[:1].lower()}{msg[1:]}, got {_SHOW.repr(got)}"


def _line_of(keys: KeyPath, lines: dict[KeyPath, int]) -> int | None:
    for n in range(len(keys), 0, -1):
        if keys[:n] in lines:
            return lines[keys[:n]]
    return None


def _depth(value: Any) -> int:
    """How deeply arrays and tables nest in `value`, counted without recursing."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_NESTING:
            break
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def parse_config(data: dict[str, Any], source: str = "<config>", text: str = "") -> VehicleConfig:
    return parse_as(VehicleConfig, data, source, text)


def parse_as(model: type[M], data: dict[str, Any], source: str = "<config>",
             text: str = "") -> M:
    """`data` checked as `model` (the vehicle's config, or the centre's)."""
    if _depth(data) > MAX_NESTING:
        raise ConfigError(source, [_TOO_DEEP])
    try:
        return model.model_validate(data)
    except RecursionError:
        raise ConfigError(source, [_TOO_DEEP]) from None
    except ValidationError as e:
        problems = []
        seen = set()
        lines = key_lines(text) if text else {}
        for err in e.errors():
            keys = _keys(err["loc"])
            what = _describe(dict(err))
            line = _one_line(what if not err["loc"] else f"{_loc(keys)}: {what}")
            number = _line_of(keys, lines)
            if number is not None:
                # Editors and terminals jump to "FILE:LINE: ..." (see ConfigError).
                line = f"{number}: {line}"
            if line not in seen:
                seen.add(line)
                problems.append(line)
        raise ConfigError(source, problems) from None


def load_config(path: str | Path) -> VehicleConfig:
    return load_as(VehicleConfig, path)


def load_as(model: type[M], path: str | Path) -> M:
    """The TOML file at `path` checked as `model`, or one line per problem."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(str(p), [f"cannot read: {e.strerror}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise ConfigError(str(p), [f"{line}: not UTF-8 text: byte 0x{raw[e.start]:02x} at line "
                                   f"{line}, column {column} (save the file as UTF-8)"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(p), [_one_line(f"not valid TOML: {e}")]) from None
    except RecursionError:  # tomllib recurses once per level of nesting, without a limit
        raise ConfigError(str(p), [_TOO_DEEP]) from None
    return parse_as(model, data, str(p), text)

