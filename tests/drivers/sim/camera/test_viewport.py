"""The PTZ viewport: pan, tilt and zoom move the ruler's mark the way a camera's would."""

from __future__ import annotations

import numpy as np

from drivers.sim.camera.viewport import (
    HOME,
    View,
    ViewportScene,
    draw_ruler,
    marker_span,
    marker_x,
    render_view,
    ruler_rows,
)

W, H = 320, 180


def world() -> np.ndarray:
    picture = np.full((2 * H, 2 * W, 3), 100, np.uint8)
    draw_ruler(picture, W, H)
    return picture


def ruler_top(picture: np.ndarray) -> int:
    """The first row of the grey ruler band (60) in a picture."""
    rows = np.nonzero((np.abs(picture[:, :, 0].astype(int) - 60) < 5).mean(axis=1) > 0.5)[0]
    return int(rows[0])


def test_home_shows_the_mark_in_the_middle() -> None:
    x = marker_x(render_view(world(), HOME, W, H))
    assert x is not None and abs(x - W / 2) <= 1
    assert ruler_top(render_view(world(), HOME, W, H)) == ruler_rows(H)[0] - H // 2


def test_pan_right_moves_the_mark_left_and_stops_at_the_worlds_edge() -> None:
    x = marker_x(render_view(world(), View(pan=0.25), W, H))
    assert x is not None and abs(x - (W / 2 - W / 4)) <= 1
    # At 1x the window reaches the world's edge at pan 0.5: further shows the same.
    edge = render_view(world(), View(pan=0.5), W, H)
    assert np.array_equal(edge, render_view(world(), View(pan=1.0), W, H))


def test_tilt_up_moves_the_ruler_down() -> None:
    home = ruler_top(render_view(world(), HOME, W, H))
    assert ruler_top(render_view(world(), View(tilt=0.1), W, H)) == home + H // 10


def test_zoom_widens_the_mark_around_the_centre() -> None:
    home = marker_span(render_view(world(), HOME, W, H))
    zoomed = marker_span(render_view(world(), View(zoom=1.5), W, H))
    assert home is not None and zoomed is not None
    assert abs(zoomed[1] - 1.5 * home[1]) <= 2 and abs(zoomed[0] - home[0]) <= 1


def test_the_scene_follows_its_view_every_frame() -> None:
    view = [HOME]
    scene = ViewportScene("cam", W, H, 15, lambda: view[0])
    home = marker_x(scene.render(0, 0))
    view[0] = View(pan=-0.25)
    panned = marker_x(scene.render(1, 0))
    assert home is not None and panned is not None and panned > home + W / 5
