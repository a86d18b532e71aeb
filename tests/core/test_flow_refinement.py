"""Variational flow refinement: analytic translations, grids and units, working size, bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from efc_core.flow_ops import resize_flow, warp_image
from efc_core.flow_refinement import VariationalFlowRefiner, working_size


def _texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 grey texture: random 6-pixel blocks, blurred (edges in every direction)."""
    rng = np.random.default_rng(seed)
    blocks = np.kron(rng.integers(0, 2, (height // 6 + 1, width // 6 + 1)), np.ones((6, 6)))[:height, :width]
    grey = cv2.GaussianBlur((blocks * 255).astype(np.float32), (0, 0), 1.5).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def _constant(height: int, width: int, dx: float, dy: float) -> np.ndarray:
    flow = np.empty((height, width, 2), np.float32)
    flow[..., 0], flow[..., 1] = dx, dy
    return flow


def _translated_pair(dx: float, dy: float, size: tuple[int, int] = (120, 160)) -> tuple[np.ndarray, np.ndarray]:
    """frame1 and frame2 = frame1 moved by (dx, dy): frame2(x + d) = frame1(x), so the flow 1 -> 2 is d."""
    frame1 = _texture(*size)
    # warp_image samples image(x + flow): frame1 = warp(frame2, d) <=> frame2 = warp(frame1, -d).
    frame2 = np.clip(warp_image(frame1.astype(np.float32), _constant(*size, -dx, -dy)), 0, 255).astype(np.uint8)
    return frame1, frame2


def _epe(flow: np.ndarray, dx: float, dy: float, margin: int = 12) -> float:
    inner = flow[margin:-margin, margin:-margin]
    return float(np.mean(np.hypot(inner[..., 0] - dx, inner[..., 1] - dy)))


def test_working_size_keeps_the_aspect_and_never_upscales() -> None:
    assert working_size((320, 384), 32768) == (165, 198)
    assert working_size((100, 200), 32768) == (100, 200)
    height, width = working_size((376, 1241), 32768)
    assert height * width <= 32768 and abs(width / height - 1241 / 376) < 0.05
    with pytest.raises(ValueError, match="max_pixels"):
        working_size((10, 10), 0)


def test_a_flow_half_a_pixel_off_moves_towards_the_true_translation() -> None:
    dx, dy = 2.6, -1.4
    frame1, frame2 = _translated_pair(dx, dy)
    refiner = VariationalFlowRefiner(iterations=10, max_pixels=1 << 20)   # full resolution
    coarse = _constant(*frame1.shape[:2], dx - 0.5, dy + 0.3)
    refined = refiner.refine(refiner.prepare(frame1), refiner.prepare(frame2), coarse)
    assert refined.shape == coarse.shape and refined.dtype == np.float32
    # Measured: 0.58 -> 0.42 px. A uniform error is the slow case of the SOR solver; real
    # network errors sit at edges and fine structure, where it gains more (training/README.md).
    assert _epe(refined, dx, dy) < 0.8 * _epe(coarse, dx, dy)
    np.testing.assert_array_equal(coarse, _constant(*frame1.shape[:2], dx - 0.5, dy + 0.3))  # input untouched


def test_flow_on_a_smaller_grid_is_refined_in_that_grid_s_units() -> None:
    # flow_scale 0.5: the node's flow is on a half-size grid, vectors in half-size pixels.
    dx, dy = 3.0, 1.0
    frame1, frame2 = _translated_pair(dx, dy, size=(128, 192))
    refiner = VariationalFlowRefiner(iterations=10, max_pixels=1 << 20)
    coarse = _constant(64, 96, (dx - 0.5) / 2, (dy + 0.3) / 2)
    refined = refiner.refine(refiner.prepare(frame1), refiner.prepare(frame2), coarse)
    assert refined.shape == (64, 96, 2)
    assert _epe(refined, dx / 2, dy / 2, margin=6) < 0.8 * _epe(coarse, dx / 2, dy / 2, margin=6)  # 0.29 -> 0.20


def test_the_default_working_size_still_improves_a_coarse_flow() -> None:
    dx, dy = 1.8, 0.9
    frame1, frame2 = _translated_pair(dx, dy, size=(240, 320))   # 76 800 pixels: refined at 16 384
    refiner = VariationalFlowRefiner()
    assert [grey.shape for grey in refiner.prepare(frame1)] == [(110, 147)]   # one level of at most 16 384 pixels
    coarse = _constant(240, 320, dx + 0.4, dy - 0.3)
    refined = refiner.refine(refiner.prepare(frame1), refiner.prepare(frame2), coarse)
    assert _epe(refined, dx, dy, margin=20) < 0.75 * _epe(coarse, dx, dy, margin=20)   # 0.50 -> 0.31


def test_the_coarse_level_corrects_more_of_an_error_than_the_fine_level_alone() -> None:
    # A uniform error of 1.9 px is the slow case of the fine level's solver: each sweep spreads
    # the correction a pixel further. The coarse level reaches twice as far per sweep.
    dx, dy = 4.0, -3.0
    frame1, frame2 = _translated_pair(dx, dy, size=(240, 320))
    coarse = _constant(240, 320, dx + 1.5, dy - 1.2)

    def refined_epe(levels: int) -> float:
        refiner = VariationalFlowRefiner(iterations=10, max_pixels=16384, levels=levels)
        return _epe(refiner.refine(refiner.prepare(frame1), refiner.prepare(frame2), coarse), dx, dy, margin=20)

    one_level, two_levels = refined_epe(1), refined_epe(2)   # 1.92 -> 1.51 / 1.03
    assert two_levels < 0.75 * one_level < 0.75 * _epe(coarse, dx, dy, margin=20), (one_level, two_levels)


def test_levels_are_coarsest_first_and_never_as_large_as_the_next() -> None:
    frame = _texture(60, 80)
    assert [grey.shape for grey in VariationalFlowRefiner(max_pixels=1200, levels=3).prepare(frame)] == \
        [(7, 10), (15, 20), (30, 40)]
    # 4 800 pixels: every level of 1<<20, 1<<18 and 1<<16 pixels would be the frame itself.
    assert [grey.shape for grey in VariationalFlowRefiner(max_pixels=1 << 20, levels=3).prepare(frame)] == [(60, 80)]


def test_a_blurred_motion_boundary_gets_sharper() -> None:
    # What a stride-4 network gives: the true flow of a square moving over a static background,
    # seen at 1/8 resolution and upsampled, so the motion bleeds across the square's edges.
    height, width = 120, 160
    background, foreground = _texture(height, width, seed=1), _texture(height, width, seed=2)
    inside = np.zeros((height, width), bool)
    inside[40:80, 50:100] = True
    frame1 = np.where(inside[..., None], foreground, background)
    moved = np.roll(inside, 3, axis=1)
    frame2 = np.where(moved[..., None], np.roll(foreground, 3, axis=1), background)
    truth = np.zeros((height, width, 2), np.float32)
    truth[inside] = (3.0, 0.0)
    coarse = resize_flow(resize_flow(truth, (height // 8, width // 8)), (height, width))
    refiner = VariationalFlowRefiner(iterations=10, max_pixels=1 << 20)
    refined = refiner.refine(refiner.prepare(frame1), refiner.prepare(frame2), coarse)

    def error(flow: np.ndarray) -> float:
        return float(np.hypot(*(flow - truth).transpose(2, 0, 1)).mean())

    assert error(refined) < 0.85 * error(coarse), (error(refined), error(coarse))   # 0.070 -> 0.052


def test_bad_input_names_the_bad_value() -> None:
    with pytest.raises(ValueError, match="iterations"):
        VariationalFlowRefiner(iterations=0)
    with pytest.raises(ValueError, match="max_pixels"):
        VariationalFlowRefiner(max_pixels=10)
    with pytest.raises(ValueError, match="levels must be an int >= 1, got 0"):
        VariationalFlowRefiner(levels=0)
    refiner = VariationalFlowRefiner()
    with pytest.raises(ValueError, match="RGB"):
        refiner.prepare(np.zeros((10, 10), np.uint8))
    grey = (np.zeros((10, 12), np.uint8),)
    with pytest.raises(ValueError, match="equal"):
        refiner.refine(grey, (np.zeros((10, 13), np.uint8),), _constant(10, 12, 0, 0))
    with pytest.raises(ValueError, match="equal"):
        refiner.refine(grey, (np.zeros((5, 6), np.uint8),) + grey, _constant(10, 12, 0, 0))
    with pytest.raises(ValueError, match="flow must be"):
        refiner.refine(grey, grey, np.zeros((10, 12, 3), np.float32))
