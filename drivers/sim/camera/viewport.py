"""A PTZ camera's picture: a window onto a world twice the frame's width and height.

The world is the camera simulator's moving `Scene` rendered at twice the frame size,
with a fixed ruler across its lower part (grey ticks and one white block at the
world's centre), so that a pan shows as the block moving sideways and a zoom as it
growing. Pan and tilt move the window, zoom shrinks it (and the crop is scaled back
to the frame size); the window is always kept inside the world.

Rendering a view costs about four times a plain frame (the world has four times the
pixels) plus one resize when zoomed. Both simulated PTZ devices use it: the
GB/T 28181 device (quantised steps, one short loop per position) and the ONVIF
camera (continuous positions, encoded live away from home; see `source`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

# OpenCV, numpy and the scene are imported where a picture is drawn or read: a process
# that only steers (a PTZ state's `View`) or serves cached loops never needs them.
if TYPE_CHECKING:
    from drivers.sim.camera.scene import Frame

# Bump when what is drawn here or by `scene` changes: every cached loop (`loop_cache`,
# the cameras' and the GB/T 28181 device's) is keyed by it, so the next start redraws.
SCENE_VERSION = 1


@dataclass(frozen=True, slots=True)
class View:
    """Where the window is: the home view is the centre of the world at 1x.

    `pan` and `tilt` move the window's centre from the world's centre, in frame widths
    (right) and frame heights (up); `zoom` is the magnification (1 = the frame's own
    size, 2 = a window half as wide). The window is clamped inside the world, so at
    1x a pan beyond +-0.5 shows nothing new.
    """

    pan: float = 0.0
    tilt: float = 0.0
    zoom: float = 1.0


HOME = View()


def draw_ruler(world: Frame, width: int, height: int) -> None:
    """The fixed marks a test finds again after a pan: rows `ruler_rows` of the world."""
    y0, y1 = ruler_rows(height)
    world[y0:y1, :] = 60
    for x in range(0, 2 * width, max(1, width // 4)):
        world[y0:y1, x : x + 2] = 140
    half = max(1, width // 32)
    world[y0:y1, width - half : width + half] = 255


def ruler_rows(height: int) -> tuple[int, int]:
    """Rows of the world holding the ruler; in the home view they are these minus height/2."""
    return int(1.22 * height), int(1.38 * height)


def render_view(world: Frame, view: View, width: int, height: int) -> Frame:
    """Crop the world (2*width x 2*height) to `view` and scale it to width x height."""
    import cv2
    import numpy as np

    factor = max(view.zoom, 0.5)  # below 0.5 the window would be larger than the world
    win_w = min(2 * width, round(width / factor))
    win_h = min(2 * height, round(height / factor))
    cx = width + view.pan * width
    cy = height - view.tilt * height
    x0 = int(max(0, min(2 * width - win_w, round(cx - win_w / 2))))
    y0 = int(max(0, min(2 * height - win_h, round(cy - win_h / 2))))
    crop = world[y0 : y0 + win_h, x0 : x0 + win_w]
    if crop.shape[1] == width and crop.shape[0] == height:
        return np.ascontiguousarray(crop)
    resized: Frame = np.asarray(cv2.resize(crop, (width, height),
                                           interpolation=cv2.INTER_AREA), dtype=np.uint8)
    return resized


class ViewportScene:
    """Renders frame `index` of camera `name` as seen through `view()` (asked every frame).

    `view` may be called from an encoder thread: it must be cheap and thread-safe.
    """

    def __init__(self, name: str, width: int, height: int, fps: float,
                 view: Callable[[], View] = lambda: HOME) -> None:
        from drivers.sim.camera.scene import Scene

        self.width = width
        self.height = height
        self.view = view
        self._world = Scene(name, 2 * width, 2 * height, fps)

    def render(self, index: int, wall_ns: int | None = None) -> Frame:
        world = self._world.render(index, time.time_ns() if wall_ns is None else wall_ns)
        draw_ruler(world, self.width, self.height)
        return render_view(world, self.view(), self.width, self.height)


def marker_x(picture: Frame) -> float | None:
    """The x of the ruler's white block in a decoded picture (BGR or grey) of a view with
    no tilt or zoom: how a test sees that a pan moved the picture. None if not in view."""
    import numpy as np

    height = picture.shape[0]
    y0, y1 = ruler_rows(height)
    # A few rows in from the band's edges: the encoder blurs them into the scene.
    band = picture[y0 - height // 2 + 3 : y1 - height // 2 - 3].astype(np.float32)
    columns = band.mean(axis=(0, 2)) if band.ndim == 3 else band.mean(axis=0)
    bright = np.nonzero(columns > 200)[0]
    return float(bright.mean()) if len(bright) else None


def marker_span(picture: Frame) -> tuple[float, float] | None:
    """(centre x, width) of the ruler's white block in a decoded BGR picture of any view
    that shows it: a zoom shows as a wider block. None if it is not in view.

    Looks for columns of the lower half with a run of near-white pixels in every
    channel (the scene's gradient and boxes never are; its white text is in the upper
    part of the picture).
    """
    import numpy as np

    height = picture.shape[0]
    lower = picture[height // 2 :]
    white = (lower.min(axis=2) if lower.ndim == 3 else lower) > 200
    columns = np.nonzero(white.sum(axis=0) >= max(3, height // 40))[0]
    if not len(columns):
        return None
    # The largest run of adjacent columns: stray bright pixels elsewhere are ignored.
    breaks = np.nonzero(np.diff(columns) > 2)[0]
    runs = np.split(columns, breaks + 1)
    run = max(runs, key=len)
    return float(run.mean()), float(run[-1] - run[0] + 1)
