"""Synthetic video: the ground truth must be exact, consistent in both directions and repeatable."""

from __future__ import annotations

import numpy as np
import pytest

from efc_core.data.synthetic import (
    SYNTHETIC_CLASS_NAMES,
    SYNTHETIC_PALETTE,
    SyntheticConfig,
    SyntheticLayer,
    generate_sequence,
    render_sequence,
)
from efc_core.data.synthetic_scene import smooth_texture
from efc_core.flow_ops import inside_image, warp_image

CONFIG = SyntheticConfig(height=128, width=256, num_frames=6)


@pytest.fixture(scope="module")
def sequence():
    return generate_sequence(CONFIG, seed=7)


def _same_layer_neighbourhood(sequence, i: int, j: int, flow: np.ndarray) -> np.ndarray:
    """(H, W) bool: all four bilinear neighbours of p + flow(p) in frame j are p's layer."""
    height, width = flow.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width]
    target_x, target_y = xs + flow[..., 0], ys + flow[..., 1]
    same = np.ones((height, width), dtype=bool)
    for round_x in (np.floor, np.ceil):
        for round_y in (np.floor, np.ceil):
            col = np.clip(round_x(target_x), 0, width - 1).astype(int)
            row = np.clip(round_y(target_y), 0, height - 1).astype(int)
            same &= sequence.layer_maps[j][row, col] == sequence.layer_maps[i]
    return same


@pytest.mark.parametrize("gap", [1, 3])
def test_warping_frame_j_with_gt_flow_reproduces_frame_i(sequence, gap):
    i, j = 1, 1 + gap
    flow, occluded = sequence.flow(i, j), sequence.occlusion(i, j)
    warped = warp_image(sequence.frames[j].astype(np.float32), flow)
    error = np.abs(warped - sequence.frames[i]).max(axis=2)  # worst channel, grey levels
    visible = ~occluded
    assert visible.mean() > 0.7
    # Tolerances in grey levels (worst channel); measured worst cases over 25 seeds and gaps 1-5 in
    # brackets. All visible pixels, including those whose bilinear sample straddles a layer edge
    # in frame j [mean 1.9, 95th percentile 2.0]:
    assert error[visible].mean() < 2.5
    assert np.percentile(error[visible], 95) < 3.0
    # Away from layer edges only interpolation and uint8 rounding remain [mean 0.94, max 4.2].
    interior = visible & _same_layer_neighbourhood(sequence, i, j, flow)
    assert interior.sum() > 0.9 * visible.sum()
    assert error[interior].mean() < 1.2
    assert error[interior].max() < 8.0
    # The check has teeth: the same warp with the flow off by one pixel is far worse.
    shifted = warp_image(sequence.frames[j].astype(np.float32), flow + np.float32([1.0, 0.0]))
    assert np.abs(shifted - sequence.frames[i]).max(axis=2)[interior].mean() > 3 * error[interior].mean()


@pytest.mark.parametrize("i, j", [(0, 1), (2, 5), (4, 1)])
def test_forward_backward_flows_cancel_on_visible_pixels(sequence, i, j):
    flow_fw, flow_bw, occ_fw = sequence.flow(i, j), sequence.flow(j, i), sequence.occlusion(i, j)
    round_trip = flow_fw + warp_image(flow_bw, flow_fw)  # F12(p) + F21(p + F12(p))
    distance = np.linalg.norm(round_trip, axis=2)
    interior = ~occ_fw & _same_layer_neighbourhood(sequence, i, j, flow_fw)
    # Inside a layer both flows are affine, so bilinear sampling of F21 is exact up to
    # cv2.remap's fixed-point interpolation weights (measured max 2.3e-3 px).
    assert distance[interior].max() < 1e-2
    assert np.median(distance[~occ_fw]) < 1e-3


def test_visible_pixels_land_on_their_own_layer_and_keep_their_label(sequence):
    i, j = 0, 2
    flow, occluded = sequence.flow(i, j), sequence.occlusion(i, j)
    layer_at_target = warp_image(sequence.layer_maps[j], flow, "nearest", border_value=255)
    label_at_target = warp_image(sequence.labels[j], flow, "nearest", border_value=255)
    visible = ~occluded
    np.testing.assert_array_equal(layer_at_target[visible], sequence.layer_maps[i][visible])
    np.testing.assert_array_equal(label_at_target[visible], sequence.labels[i][visible])
    # Occluded pixels that stay inside the image land on another layer (hidden, not mislabelled).
    inside = inside_image(flow)
    assert np.all(layer_at_target[occluded & inside] != sequence.layer_maps[i][occluded & inside])
    assert occluded.any()


def test_flow_of_a_frame_to_itself_is_zero_and_unoccluded(sequence):
    np.testing.assert_allclose(sequence.flow(3, 3), 0.0, atol=1e-9)
    assert not sequence.occlusion(3, 3).any()


def test_pair_matches_flow_and_occlusion(sequence):
    pair = sequence.pair(1, 2)
    np.testing.assert_array_equal(pair.flow_fw, sequence.flow(1, 2))
    np.testing.assert_array_equal(pair.flow_bw, sequence.flow(2, 1))
    np.testing.assert_array_equal(pair.occ_bw, sequence.occlusion(2, 1))
    np.testing.assert_array_equal(pair.image2, sequence.frames[2])
    np.testing.assert_array_equal(pair.label1, sequence.labels[1])


def test_same_seed_same_arrays_different_seed_different():
    small = SyntheticConfig(height=64, width=96, num_frames=3, noise_std=2.0, brightness_change=0.1)
    first, again, other = generate_sequence(small, 3), generate_sequence(small, 3), generate_sequence(small, 4)
    np.testing.assert_array_equal(first.frames, again.frames)
    np.testing.assert_array_equal(first.labels, again.labels)
    np.testing.assert_array_equal(first.flow(0, 2), again.flow(0, 2))
    assert not np.array_equal(first.frames, other.frames)
    assert not np.array_equal(first.flow(0, 2), other.flow(0, 2))


def _translated_square_scene(step: tuple[float, float], frames: int = 4):
    """Static background and one 20x20 square of class 2 moving by ``step`` px per frame."""
    rng = np.random.default_rng(0)
    identity = np.tile(np.eye(2, 3), (frames, 1, 1))
    background = SyntheticLayer(smooth_texture(rng, 48, 64, np.full(3, 100.0)), None, 0, identity)
    mask = np.zeros((24, 24), np.uint8)
    mask[2:22, 2:22] = 255
    square_affines = identity.copy()
    square_affines[:, 0, 2] = 20 + step[0] * np.arange(frames)
    square_affines[:, 1, 2] = 10 + step[1] * np.arange(frames)
    square = SyntheticLayer(smooth_texture(rng, 24, 24, np.full(3, 200.0)), mask, 2, square_affines)
    return render_sequence([background, square], 48, 64)


def test_pure_translation_gives_exactly_that_flow_and_analytic_occlusion():
    sequence = _translated_square_scene(step=(3.0, -2.0))
    inside = sequence.layer_maps[0] == 1
    # Square covers texture pixels 2..21 placed at (20, 10): image columns 22..41, rows 12..31.
    expected_inside = np.zeros((48, 64), bool)
    expected_inside[12:32, 22:42] = True
    np.testing.assert_array_equal(inside, expected_inside)
    flow = sequence.flow(0, 2)
    np.testing.assert_allclose(flow[inside], np.tile([6.0, -4.0], (inside.sum(), 1)), atol=1e-5)
    np.testing.assert_allclose(flow[~inside], 0.0, atol=1e-5)
    np.testing.assert_array_equal(sequence.labels[2][sequence.layer_maps[2] == 1], 2)
    # Frame-0 background pixels hidden in frame 2 are exactly those under the moved square.
    expected_occluded = np.zeros((48, 64), bool)
    expected_occluded[8:28, 28:48] = True
    expected_occluded &= ~inside
    np.testing.assert_array_equal(sequence.occlusion(0, 2), expected_occluded)


def test_label_every_hides_the_right_frames():
    config = SyntheticConfig(height=32, width=48, num_frames=7, label_every=3, max_objects=2)
    sequence = generate_sequence(config, 0)
    np.testing.assert_array_equal(sequence.labelled, [True, False, False, True, False, False, True])
    assert sequence.labels.shape == (7, 32, 48)  # labels stay complete for evaluation


def test_classes_and_palette():
    sequence = generate_sequence(SyntheticConfig(height=64, width=96, num_frames=2, num_classes=3), 1)
    assert set(np.unique(sequence.labels)) <= {0, 1, 2}
    assert sequence.class_names == SYNTHETIC_CLASS_NAMES[:3]
    assert SYNTHETIC_PALETTE.shape == (len(SYNTHETIC_CLASS_NAMES), 3)
    assert SYNTHETIC_PALETTE.dtype == np.uint8
    assert len({tuple(row) for row in SYNTHETIC_PALETTE}) == len(SYNTHETIC_PALETTE)


@pytest.mark.parametrize("override", [{"num_classes": 1}, {"num_classes": 99}, {"min_objects": 3, "max_objects": 2},
                                      {"label_every": 0}, {"noise_std": -1.0}])
def test_bad_config_names_the_value(override):
    with pytest.raises(ValueError, match=next(iter(override))):
        SyntheticConfig(**override)


def test_object_classes_are_recognisable_by_colour() -> None:
    """Semantics must be learnable from the pixels: an object's mean colour is nearest to its own
    class's palette colour far more often than chance (1 in 5 object classes). Measured: 59 of 67.
    """
    hits = total = 0
    for seed in range(20):
        sequence = generate_sequence(SyntheticConfig(height=96, width=128, num_frames=1, num_classes=6), seed)
        labels, frame = sequence.labels[0], sequence.frames[0].astype(np.float64)
        for class_id in np.unique(labels[labels > 0]):
            mean_colour = frame[labels == class_id].mean(axis=0)
            distances = np.linalg.norm(SYNTHETIC_PALETTE[:6].astype(np.float64) - mean_colour, axis=1)
            hits += int(np.argmin(distances) == class_id)
            total += 1
    assert total > 40
    assert hits / total > 0.75, (hits, total)
