"""Web assets shared by the vehicle's viewer page (edge/uplink) and the centre page
(edge/centre/page): each server serves :data:`PAGE_KIT` as ``/page_kit.js``."""

from __future__ import annotations

from pathlib import Path

PAGE_KIT_NAME = "page_kit.js"
PAGE_KIT = Path(__file__).resolve().parent / PAGE_KIT_NAME


def web_file(name: str, own_dir: Path, own: dict[str, str]) -> tuple[Path, str] | None:
    """What a page's server answers `/<name>` with, and its content type: one of its own
    files (`own`: name → type, in `own_dir`) or the shared kit; None for anything else
    (nothing outside these lists is ever served)."""
    if name == PAGE_KIT_NAME:
        return PAGE_KIT, "text/javascript"
    path = own_dir / name
    if name in own and path.is_file():
        return path, own[name]
    return None
