"""Synthetic moving scene for the simulated dome camera.

Rendering must stay cheap (a live 720p30 stream shares one core with its
encoder), so the background is a pre-rendered gradient twice the frame width
that is only sliced per frame; the moving parts are a few OpenCV primitives.
"""

from __future__ import annotations

import math
import threading
import time
import weakref

import cv2
import numpy as np
import numpy.typing as npt

from drivers.sim.camera.timestamp_blocks import block_origin, draw_timestamp_blocks

Frame = npt.NDArray[np.uint8]

_BOX_COLOURS = ((40, 40, 230), (40, 200, 40), (230, 160, 30))


class Scene:
    """Renders frame `index` of a camera called `name` as a BGR array."""

    def __init__(self, name: str, width: int, height: int, fps: float) -> None:
        self.name = name
        self.width = width
        self.height = height
        self.fps = fps
        self._background = shared_background(height, 2 * width)
        self._scale = height / 720
        # Cleared once so the timestamp code always sits on a quiet band.
        self._band = block_origin(width, height)

    def render(self, index: int, wall_ns: int | None = None) -> Frame:
        """Draw frame `index`; `wall_ns` is the clock shown and burnt into the blocks."""
        wall_ns = time.time_ns() if wall_ns is None else wall_ns
        t = index / self.fps
        offset = int(t * self.width / 4) % self.width
        # A copy: the background is shared, and read-only.
        frame = self._background[:, offset : offset + self.width].copy()
        w, h = self.width, self.height
        for k, colour in enumerate(_BOX_COLOURS):
            size = int((60 + 30 * k) * self._scale)
            cx = int((0.5 + 0.38 * math.sin(t * (0.7 + 0.3 * k) + k)) * (w - size))
            cy = int((0.5 + 0.35 * math.cos(t * (0.5 + 0.2 * k) + 2 * k)) * (h - size))
            cv2.rectangle(frame, (cx, cy), (cx + size, cy + size), colour, -1)
        self._text(frame, self.name, (int(20 * self._scale), int(60 * self._scale)), 1.6)
        clock = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(wall_ns / 1e9))
        clock += f".{(wall_ns // 1_000_000) % 1000:03d}"
        self._text(frame, clock, (int(20 * self._scale), int(110 * self._scale)), 1.0)
        self._text(frame, f"frame {index}", (int(20 * self._scale), int(150 * self._scale)), 1.0)
        x0, y0 = self._band
        frame[y0 - 8 : y0 + 40, x0 - 8 : x0 + 408] = 96
        draw_timestamp_blocks(frame, wall_ns // 1_000_000)
        return frame

    def _text(self, frame: Frame, text: str, org: tuple[int, int], size: float) -> None:
        scale = size * self._scale
        thick = max(1, round(3 * self._scale))
        cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 3)
        cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick)


_backgrounds: weakref.WeakValueDictionary[tuple[int, int], Frame] = \
    weakref.WeakValueDictionary()
_backgrounds_lock = threading.Lock()


def shared_background(height: int, width: int) -> Frame:
    """The gradient every scene of this size draws on, one array (read-only) for all the
    scenes alive at once: the cameras of one `edge sim cameras` encoding their loops
    together, a PTZ camera's live views. It goes with the last scene using it."""
    with _backgrounds_lock:
        image = _backgrounds.get((height, width))
        if image is None:
            image = _gradient(height, width)
            image.setflags(write=False)
            _backgrounds[height, width] = image
        return image


def _gradient(height: int, width: int) -> Frame:
    # Two periods across twice the frame width: a slice at offset w is identical
    # to one at 0, so the scroll wraps without a seam.
    x = np.linspace(0, 4 * math.pi, width, endpoint=False, dtype=np.float32)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    b = 110 + 70 * np.sin(x)[None, :] + 40 * y
    g = 110 + 70 * np.sin(x + 2.1)[None, :] - 30 * y
    r = 110 + 70 * np.sin(x + 4.2)[None, :] + 20 * y
    image: Frame = np.clip(np.stack([b, g, r], axis=2), 0, 255).astype(np.uint8)
    return image
