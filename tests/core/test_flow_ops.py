"""Numpy flow operations: backward warping, flow resizing, forward-backward occlusion."""

from __future__ import annotations

import numpy as np
import pytest

from efc_core.flow_ops import (
    flow_magnitude,
    forward_backward_occlusion,
    inside_image,
    resize_flow,
    warp_image,
)


def _constant_flow(height: int, width: int, dx: float, dy: float) -> np.ndarray:
    flow = np.empty((height, width, 2), np.float32)
    flow[..., 0], flow[..., 1] = dx, dy
    return flow


@pytest.mark.parametrize("interpolation", ["linear", "nearest"])
def test_integer_translation_is_a_shifted_copy(interpolation):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    warped = warp_image(image, _constant_flow(20, 30, 3, -2), interpolation)  # out(y, x) = image(y-2, x+3)
    np.testing.assert_array_equal(warped[2:, :-3], image[:-2, 3:])
    assert np.all(warped[:2] == 0) and np.all(warped[:, -3:] == 0)  # sampled outside: border value


def test_half_pixel_shift_averages_neighbours_and_shapes_are_kept():
    image = np.arange(12, dtype=np.float32).reshape(3, 4) * 10
    warped = warp_image(image, _constant_flow(3, 4, 0.5, 0.0), border_value=-1)
    np.testing.assert_allclose(warped[:, :3], (image[:, :3] + image[:, 1:]) / 2, atol=1e-3)
    one_channel = warp_image(image[..., None], _constant_flow(3, 4, 0, 0))
    assert one_channel.shape == (3, 4, 1)
    wide = np.repeat(image[..., None], 7, axis=2) + np.arange(7, dtype=np.float32)
    np.testing.assert_allclose(warp_image(wide, _constant_flow(3, 4, 1, 0))[:, :3], wide[:, 1:], atol=1e-4)
    mask = image > 50
    assert warp_image(mask, _constant_flow(3, 4, 1, 0), "nearest").dtype == np.bool_


def test_warp_rejects_mismatched_sizes():
    with pytest.raises(ValueError, match=r"\(5, 5\)"):
        warp_image(np.zeros((5, 5)), np.zeros((4, 4, 2), np.float32))
    with pytest.raises(ValueError, match="cubic"):
        warp_image(np.zeros((4, 4)), np.zeros((4, 4, 2), np.float32), "cubic")


def test_resize_flow_scales_vectors_per_axis():
    flow = _constant_flow(10, 20, 1.5, -2.0)
    resized = resize_flow(flow, (30, 40))
    assert resized.shape == (30, 40, 2)
    np.testing.assert_allclose(resized[..., 0], 3.0, rtol=1e-6)   # 40 / 20
    np.testing.assert_allclose(resized[..., 1], -6.0, rtol=1e-6)  # 30 / 10
    # A linear flow field u = x (pixel coordinates) stays u = x on the new grid in its interior.
    ramp = np.zeros((8, 8, 2), np.float32)
    ramp[..., 0] = np.arange(8, dtype=np.float32)[None, :] + 0.5
    up = resize_flow(ramp, (16, 16))
    expected = np.arange(16, dtype=np.float32) + 0.5  # half-pixel centres: x' + 0.5 = 2 (x + 0.5)
    np.testing.assert_allclose(up[4, 2:-2, 0], expected[2:-2], atol=1e-4)
    with pytest.raises(ValueError, match="size"):
        resize_flow(flow, (0, 5))


def test_flow_magnitude():
    flow = np.array([[[3.0, 4.0], [0.0, -2.0]]], np.float32)
    np.testing.assert_allclose(flow_magnitude(flow), [[5.0, 2.0]], rtol=1e-6)


def test_forward_backward_check_on_perfect_flows_marks_only_out_of_image():
    height, width = 24, 32
    forward = _constant_flow(height, width, 4.0, 1.0)
    backward = _constant_flow(height, width, -4.0, -1.0)
    occluded = forward_backward_occlusion(forward, backward)
    leaves_image = ~inside_image(forward)
    np.testing.assert_array_equal(occluded, leaves_image)
    assert leaves_image[:, -4:].all() and leaves_image[-1:].all() and not leaves_image[:-1, :-4].any()


def test_forward_backward_check_flags_inconsistent_region():
    height, width = 24, 32
    forward = _constant_flow(height, width, 2.0, 0.0)
    backward = _constant_flow(height, width, -2.0, 0.0)
    backward[8:16, 10:20] = (5.0, 5.0)  # disagrees where the forward flow lands
    occluded = forward_backward_occlusion(forward, backward)
    # Pixels p with p + (2, 0) inside the bad block, well inside it (bilinear blur at its edge).
    assert occluded[9:15, 9:16].all()
    assert not occluded[:6, :-2].any() and not occluded[18:, :-2].any()
    # Tolerances: a small error passes with the default alpha2 = 0.5 px^2, fails with alpha2 = 0.
    # Backward flow -1.5 instead of -2: |error|^2 = 0.25 < 0.01 (4 + 2.25) + 0.5.
    assert not forward_backward_occlusion(forward, _constant_flow(height, width, -1.5, 0.0))[:, :-2].any()
    assert forward_backward_occlusion(forward, _constant_flow(height, width, -1.5, 0.0), alpha2=0.0)[:, :-2].all()
