"""The import rules of docs/architecture.md ("Where code lives"), checked on the source.

Every `import` and `from … import` of a project package (edge, drivers, ui) in
each file is read with `ast`, including those under `if TYPE_CHECKING:` and
inside functions (a lazy import is still a dependency). A rule names the
project packages a folder may import besides itself; stdlib and third-party
imports are free.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support import REPO

PROJECT = ("edge", "drivers", "ui")

# folder → what it may import from the project besides itself; most specific folder wins.
# An entry ending in "=" allows exactly that module, not its submodules.
RULES: dict[str, tuple[str, ...]] = {
    "drivers": (),
    "drivers/sim": ("drivers",),
    "ui": ("edge.bus", "edge.config"),
    "edge/config": (),
    "edge/bus": ("edge.config",),
    "edge/media": ("edge.bus",),
    # The service table (edge/services/__init__.py, lazy imports) tells the supervisor
    # what to run; the services themselves are never imported by the runtime.
    "edge/runtime": ("edge.bus", "edge.config", "edge.services="),
    "edge/web": (),
    "edge/uplink": ("edge.bus", "edge.media", "edge.config", "edge.web"),
    "edge/recorder": ("edge.bus", "edge.media", "edge.config"),
    "edge/export": ("edge.bus", "edge.media", "edge.config", "edge.recorder"),
    "edge/replay": ("edge.bus", "edge.media", "edge.config", "edge.recorder"),
    "edge/links": ("edge.bus", "edge.config"),
    "edge/centre": ("edge.bus", "edge.config", "edge.links", "edge.sync", "edge.web"),
    "edge/sync": ("edge.bus", "edge.config"),
    "edge/services": ("edge", "drivers"),
    "edge/cli": ("edge", "drivers", "ui"),
    "edge/bench": ("edge", "drivers", "ui"),
}


def _rule(path: Path) -> tuple[str, tuple[str, ...]] | None:
    rel = path.relative_to(REPO).as_posix()
    best = max((folder for folder in RULES if rel.startswith(folder + "/")), key=len,
               default=None)
    return None if best is None else (best, RULES[best])


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
            # `from edge import config` imports edge.config
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names
                      if node.module in PROJECT]
    return [(line, name) for line, name in found if name.split(".")[0] in PROJECT]


def _allowed(module: str, own: str, allowed: tuple[str, ...]) -> bool:
    own_pkg = own.replace("/", ".")
    if module in PROJECT and module != own_pkg.split(".")[0]:
        return False  # a bare `import edge` pulls in nothing useful; name what you need
    for entry in (own_pkg, *allowed):
        if entry.endswith("="):
            if module == entry[:-1]:
                return True
        elif module == entry or module.startswith(entry + "."):
            return True
    return module in PROJECT  # `from edge import x` is judged by its edge.x entry


def _sources() -> list[Path]:
    return sorted(p for top in PROJECT for p in (REPO / top).rglob("*.py"))


def test_every_folder_with_code_has_a_rule() -> None:
    missing = {p.parent.relative_to(REPO).as_posix() for p in _sources()
               if _rule(p) is None and p.parent != REPO / "edge"}
    assert not missing, f"no import rule for {sorted(missing)}: add one to RULES and the docs"


def test_rules_are_the_documented_ones() -> None:
    doc = (REPO / "docs" / "architecture.md").read_text()
    for folder in RULES:
        assert f"`{folder}/`" in doc, f"docs/architecture.md has no row for {folder}/"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_imports_follow_the_rules(path: Path) -> None:
    rule = _rule(path)
    if rule is None:
        return
    folder, allowed = rule
    wrong = [f"{path.relative_to(REPO)}:{line}: imports {module}"
             for line, module in _imports(path) if not _allowed(module, folder, allowed)]
    assert not wrong, (f"{folder}/ may import only {', '.join(allowed) or 'nothing of ours'}:\n"
                       + "\n".join(wrong))
