"""A frame paired with a warped copy of itself: exact flow, occlusion and labels (self_warp.py)."""

from __future__ import annotations

import random

import cv2
import numpy as np
import pytest

from efc_core.contract import IGNORE_LABEL
from efc_core.data.datasets.sample import make_raw_sample
from efc_core.data.datasets.self_warp import SelfWarp, similarity_matrix, warp_pair
from efc_core.data.datasets.transforms import build_transforms
from efc_core.flow_ops import warp_image


def _textured_sample(size=(48, 64), seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    label = np.zeros(size, np.uint8)
    label[10:30, 20:40] = 3
    return make_raw_sample(image, image.copy(), label1=label, label2=None)


def test_integer_shift_moves_pixels_labels_and_marks_exactly_the_leaving_strip() -> None:
    sample = _textured_sample()
    shifted = warp_pair(sample, similarity_matrix((48, 64), translation=(5.0, 3.0), rotation_deg=0.0, scale=1.0))
    # image2(x + 5, y + 3) = image1(x, y) everywhere the target is inside.
    np.testing.assert_array_equal(shifted["image2"][3:, 5:], sample["image1"][:-3, :-5])
    np.testing.assert_array_equal(shifted["label2"][3:, 5:], sample["label1"][:-3, :-5])
    assert (shifted["label2"][:3] == IGNORE_LABEL).all() and (shifted["label2"][:, :5] == IGNORE_LABEL).all()
    np.testing.assert_allclose(shifted["flow_fw"], np.broadcast_to([5.0, 3.0], (48, 64, 2)), atol=1e-5)
    np.testing.assert_allclose(shifted["flow_bw"], np.broadcast_to([-5.0, -3.0], (48, 64, 2)), atol=1e-5)
    expected_fw = np.zeros((48, 64), bool)
    expected_fw[-3:] = True
    expected_fw[:, -5:] = True
    np.testing.assert_array_equal(shifted["occ_fw"], expected_fw)
    expected_bw = np.zeros((48, 64), bool)
    expected_bw[:3] = True
    expected_bw[:, :5] = True
    np.testing.assert_array_equal(shifted["occ_bw"], expected_bw)
    assert shifted["has_flow"] and shifted["has_occlusion"] and shifted["has_label2"] and shifted["flow_valid"].all()
    assert shifted["flow_valid_bw"].all()


def test_rotation_and_zoom_flows_are_inverse_and_explain_the_images() -> None:
    sample = _textured_sample(size=(96, 128), seed=1)
    # A smooth image, so that bilinear resampling is nearly exact.
    sample["image1"] = cv2.GaussianBlur(sample["image1"], (0, 0), 3.0)
    pair = warp_pair(sample, similarity_matrix((96, 128), translation=(-7.5, 4.0), rotation_deg=4.0, scale=1.06))
    visible = ~pair["occ_fw"]
    # Forward then backward returns to the start: flow_fw(p) + flow_bw(p + flow_fw(p)) = 0.
    round_trip = pair["flow_fw"] + warp_image(pair["flow_bw"], pair["flow_fw"])
    assert np.abs(round_trip[visible]).max() < 0.05
    # image1(p) = image2(p + flow_fw(p)) on visible pixels.
    reconstructed = warp_image(pair["image2"], pair["flow_fw"]).astype(np.float32)
    error = np.abs(reconstructed - sample["image1"].astype(np.float32))[visible].mean()
    assert error < 1.5, error
    assert 0.02 < pair["occ_fw"].mean() < 0.4


def test_self_warp_in_the_training_pipeline_keeps_flow_consistent_through_crop_and_flip(monkeypatch) -> None:
    random.seed(4)
    # Every uniform draw at its upper end: a (6, 6) px shift, no rotation, no zoom.
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    pipeline = build_transforms(train=True, crop_size=(40, 56), hflip_p=1.0,
                                self_warp={"max_translation": 6.0, "max_rotation_deg": 0.0, "max_scale_change": 0.0})
    sample = pipeline(_textured_sample())
    flow = sample["flow_fw"].numpy()
    # The flip mirrors the shift: (6, 6) becomes (-6, 6) on every pixel.
    np.testing.assert_allclose(flow[0], -6.0, atol=1e-4)
    np.testing.assert_allclose(flow[1], 6.0, atol=1e-4)
    image1 = sample["image1"].numpy().transpose(1, 2, 0)
    image2 = sample["image2"].numpy().transpose(1, 2, 0)
    ys, xs = np.nonzero(~sample["occ_fw"].numpy())
    assert len(ys) == (40 - 6) * (56 - 6)
    np.testing.assert_allclose(image2[ys + 6, xs - 6], image1[ys, xs], atol=1e-6)


def test_self_warp_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="max_translation"):
        SelfWarp(max_translation=-1.0)
    with pytest.raises(ValueError, match="p must be"):
        SelfWarp(p=1.5)
