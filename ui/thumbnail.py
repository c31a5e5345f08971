"""Camera thumbnails: JPEG in, terminal half-block cells out.

Decoding runs in a thread (the bridge calls :func:`decode` through
``asyncio.to_thread``), once per new thumbnail. Drawing uses the upper-half
block: each cell shows two pixels, the top one as foreground colour and the
bottom one as background, so a 20x5 cell area holds a 20x10 picture. Terminal
cells are about twice as tall as wide, which makes half-block pixels roughly
square, so the picture keeps its aspect ratio by fitting pixels 1:1.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import cv2
import numpy as np
from rich.color import Color
from rich.segment import Segment
from rich.style import Style

UPPER_HALF = "▀"
MAX_JPEG_BYTES = 1 << 20  # a "small" thumbnail; anything bigger is refused, not decoded
MAX_SIDE = 320  # decoded pictures are shrunk to this, so memory per camera stays small

Pixels = Any  # numpy uint8 array, height x width x 3, RGB


class ThumbnailError(ValueError):
    pass


def decode(jpeg: bytes) -> Pixels:
    """RGB pixels of a JPEG (or PNG), at most MAX_SIDE on the long side. Blocking."""
    if not jpeg:
        raise ThumbnailError("empty thumbnail")
    if len(jpeg) > MAX_JPEG_BYTES:
        raise ThumbnailError(f"thumbnail of {len(jpeg)} bytes is too big")
    buf = np.frombuffer(jpeg, dtype=np.uint8)
    # Large files are decoded at reduced size straight away (the JPEG decoder
    # skips the work), so a big picture cannot cost much time or memory.
    flags = cv2.IMREAD_REDUCED_COLOR_4 if len(jpeg) > 200_000 else cv2.IMREAD_COLOR
    img = cv2.imdecode(buf, flags)
    if img is None or img.ndim != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        raise ThumbnailError("thumbnail is not a picture")
    h, w = img.shape[:2]
    if max(h, w) > MAX_SIDE:
        scale = MAX_SIDE / max(h, w)
        img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))),
                         interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))


def fit(width_px: int, height_px: int, cols: int, rows: int) -> tuple[int, int]:
    """The largest (cols, pixel rows) inside cols x rows cells keeping the aspect ratio."""
    if width_px <= 0 or height_px <= 0 or cols <= 0 or rows <= 0:
        return 0, 0
    scale = min(cols / width_px, rows * 2 / height_px)
    return (max(1, min(cols, round(width_px * scale))),
            max(1, min(rows * 2, round(height_px * scale))))


@lru_cache(maxsize=4096)
def _style(top: tuple[int, int, int], bottom: tuple[int, int, int] | None) -> Style:
    return Style(color=Color.from_rgb(*top),
                 bgcolor=None if bottom is None else Color.from_rgb(*bottom))


def halfblocks(pixels: Pixels, cols: int, rows: int) -> list[list[Segment]]:
    """`pixels` fitted into cols x rows cells: one list of segments per row, each
    exactly `cols` cells wide (the picture centred, blank cells around it)."""
    if pixels is None or cols <= 0 or rows <= 0:
        return [[Segment(" " * max(cols, 0))] for _ in range(max(rows, 0))]
    h, w = pixels.shape[:2]
    tw, th = fit(w, h, cols, rows)
    if tw == 0:
        return [[Segment(" " * cols)] for _ in range(rows)]
    small = cv2.resize(pixels, (tw, th), interpolation=cv2.INTER_AREA) if (tw, th) != (w, h) \
        else pixels
    if small.ndim == 2:  # cv2 drops the channel axis of a 1-pixel-wide picture
        small = small.reshape(th, tw, -1)
    # Colours are quantised a little: fewer distinct styles, runs merge more often,
    # and nobody can see the difference in a 2-pixel-per-cell picture.
    small = (np.asarray(small, dtype=np.uint8) & 0xFC).tolist()
    cell_rows = (th + 1) // 2
    top_pad = (rows - cell_rows) // 2
    left = (cols - tw) // 2
    right = cols - tw - left
    blank = [Segment(" " * cols)]
    lines: list[list[Segment]] = [blank for _ in range(top_pad)]
    for y in range(0, th, 2):
        upper = small[y]
        lower = small[y + 1] if y + 1 < th else None
        line: list[Segment] = [Segment(" " * left)] if left else []
        run_style: Style | None = None
        run = 0
        for x in range(tw):
            r, g, b = upper[x][:3]
            top = (r, g, b)
            bottom = (lower[x][0], lower[x][1], lower[x][2]) if lower is not None else None
            style = _style(top, bottom)
            if style is run_style:
                run += 1
                continue
            if run_style is not None:
                line.append(Segment(UPPER_HALF * run, run_style))
            run_style, run = style, 1
        if run_style is not None:
            line.append(Segment(UPPER_HALF * run, run_style))
        if right:
            line.append(Segment(" " * right))
        lines.append(line)
    while len(lines) < rows:
        lines.append(blank)
    return lines[:rows]


def test_pattern(width: int = 160, height: int = 90, seed: int = 0) -> Pixels:
    """A deterministic colourful picture (for snapshots, the load generator and help)."""
    y, x = np.mgrid[0:height, 0:width]
    r = (x * 255 // max(1, width - 1) + seed * 40) % 256
    g = (y * 255 // max(1, height - 1) + seed * 70) % 256
    b = ((x + y) * 2 + seed * 90) % 256
    return np.dstack([r, g, b]).astype(np.uint8)


def encode_jpeg(pixels: Pixels, quality: int = 70) -> bytes:
    """RGB pixels as a JPEG (what a camera service would publish)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ThumbnailError("cannot encode")
    return bytes(buf)
