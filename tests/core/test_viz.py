"""Visualisation: Middlebury colours, label palette, occlusion map, overlay."""

from __future__ import annotations

import math

import numpy as np
import pytest

from efc_core.viz import (
    colorize_labels,
    flow_to_color,
    middlebury_color_wheel,
    occlusion_to_color,
    overlay,
)

PALETTE = np.array([[128, 64, 128], [0, 0, 142], [220, 20, 60]], dtype=np.uint8)


def _reference_color(u: float, v: float, max_magnitude: float) -> np.ndarray:
    """Per-pixel transcription of Middlebury's computeColor, for comparison with the LUT."""
    wheel = middlebury_color_wheel()
    count = len(wheel)
    u, v = u / max_magnitude, v / max_magnitude
    radius = math.hypot(u, v)
    fk = (math.atan2(-v, -u) / math.pi + 1) / 2 * (count - 1)
    k0 = int(math.floor(fk))
    k1 = (k0 + 1) % count
    fraction = fk - k0
    hue = ((1 - fraction) * wheel[k0 % count] + fraction * wheel[k1]) / 255
    color = 1 - radius * (1 - hue) if radius <= 1 else 0.75 * hue
    return 255 * color


def test_wheel_has_55_colours_starting_red_and_passing_the_primaries():
    wheel = middlebury_color_wheel()
    assert wheel.shape == (55, 3)
    np.testing.assert_array_equal(wheel[0], [255, 0, 0])    # red
    np.testing.assert_array_equal(wheel[15], [255, 255, 0])  # yellow after RY = 15
    np.testing.assert_array_equal(wheel[21], [0, 255, 0])    # green after YG = 6
    np.testing.assert_array_equal(wheel[25], [0, 255, 255])  # cyan after GC = 4
    np.testing.assert_array_equal(wheel[36], [0, 0, 255])    # blue after CB = 11
    np.testing.assert_array_equal(wheel[49], [255, 0, 255])  # magenta after BM = 13


def test_directions_map_to_known_wheel_colours_and_zero_is_white():
    flow = np.array([[[1, 0], [-1, 0], [0, 0], [0.5, 0], [0, 1], [0, -1]]], np.float32)
    color = flow_to_color(flow, max_magnitude=1.0).astype(int)
    assert np.abs(color[0, 4] - [255, 229, 0]).max() <= 8         # +y (down): between wheel[13], [14]
    assert np.abs(color[0, 5] - [88, 0, 255]).max() <= 8          # -y (up): between wheel[40], [41]
    assert np.abs(color[0, 0] - [255, 0, 0]).max() <= 3           # +x: red
    assert np.abs(color[0, 1] - [0, 209, 255]).max() <= 8         # -x: wheel[27], cyan-blue
    np.testing.assert_array_equal(color[0, 2], [255, 255, 255])    # zero flow: white
    assert np.abs(color[0, 3] - [255, 128, 128]).max() <= 3        # half magnitude: half saturated
    assert np.all(flow_to_color(np.zeros((4, 5, 2), np.float32)) == 255)


def test_lut_matches_the_per_pixel_formula():
    rng = np.random.default_rng(0)
    flow = rng.normal(0.0, 3.0, (16, 16, 2)).astype(np.float32)
    max_magnitude = 4.0  # some vectors exceed it: darkened to 75 %
    color = flow_to_color(flow, max_magnitude=max_magnitude).astype(float)
    reference = np.array([[_reference_color(u, v, max_magnitude) for u, v in row] for row in flow])
    assert np.abs(color - reference).max() <= 8
    assert np.abs(color - reference).mean() < 1.5


def test_default_normaliser_is_the_largest_magnitude_and_unknown_is_black():
    flow = np.array([[[10.0, 0.0], [0.0, 5.0], [np.nan, 0.0], [2e9, 0.0]]], np.float32)
    color = flow_to_color(flow).astype(int)
    assert np.abs(color[0, 0] - [255, 0, 0]).max() <= 3  # the longest vector is fully saturated
    np.testing.assert_array_equal(color[0, 2:], 0)
    with pytest.raises(ValueError, match="max_magnitude"):
        flow_to_color(flow, max_magnitude=0.0)


def test_label_colours_are_palette_rows_and_ignore_is_black():
    labels = np.array([[0, 1, 2], [255, 7, 1]], np.uint8)
    color = colorize_labels(labels, PALETTE)
    np.testing.assert_array_equal(color[0], PALETTE)
    np.testing.assert_array_equal(color[1, 0], [0, 0, 0])  # 255 = ignore
    np.testing.assert_array_equal(color[1, 1], [0, 0, 0])  # id beyond the palette
    np.testing.assert_array_equal(color[1, 2], PALETTE[1])
    wide = colorize_labels(np.array([[2, -1, 300]], np.int64), PALETTE)
    np.testing.assert_array_equal(wide[0], [PALETTE[2], [0, 0, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match=r"\(3, 4\)"):
        colorize_labels(labels, np.zeros((3, 4), np.uint8))


def test_occlusion_colours_run_from_dark_to_magenta():
    color = occlusion_to_color(np.array([[0.0, 1.0, 0.5, 2.0]], np.float32)).astype(int)
    np.testing.assert_array_equal(color[0, 0], [25, 25, 25])
    np.testing.assert_array_equal(color[0, 1], [255, 0, 255])
    assert color[0, 2, 0] == color[0, 2, 2] and 130 <= color[0, 2, 0] <= 150 and color[0, 2, 1] < 20
    np.testing.assert_array_equal(color[0, 3], [255, 0, 255])  # clipped
    np.testing.assert_array_equal(occlusion_to_color(np.array([[True]])), [[[255, 0, 255]]])


def test_overlay_blends_by_alpha():
    image = np.full((2, 2, 3), 200, np.uint8)
    color = np.zeros((2, 2, 3), np.uint8)
    np.testing.assert_array_equal(overlay(image, color, 0.0), image)
    np.testing.assert_array_equal(overlay(image, color, 1.0), color)
    np.testing.assert_array_equal(overlay(image, color, 0.25), np.full((2, 2, 3), 150))
    with pytest.raises(ValueError, match="alpha"):
        overlay(image, color, 1.5)
