"""Joint transforms keep images, labels, flow and masks consistent."""

from __future__ import annotations

import random

import cv2
import numpy as np
import pytest
import torch

from efc_core.data.datasets.sample import make_raw_sample, raw_to_tensors
from efc_core.data.datasets.transforms import (
    PhotometricJitter, RandomCrop, build_transforms, crop_sample, flip_sample_horizontally, resize_sample,
)


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward-warp bilinearly: out(p) = image(p + flow(p)), so image2 warped by flow_fw gives image1."""
    h, w = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def smooth_texture(size: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(size[0] // 8, size[1] // 8, 3)).astype(np.float32)
    return cv2.resize(coarse, (size[1], size[0]), interpolation=cv2.INTER_CUBIC).clip(0, 255)


def smooth_flow(size: tuple[int, int], seed: int, magnitude: float = 4.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-magnitude, magnitude, size=(3, 5, 2)).astype(np.float32)
    return cv2.resize(coarse, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def consistent_pair(size=(48, 80), seed=0):
    """image1 = warp(image2, flow_fw) exactly (float images), with a non-uniform flow."""
    image2 = smooth_texture(size, seed)
    flow = smooth_flow(size, seed + 1)
    image1 = warp(image2, flow)
    return image1, image2, flow


def float_sample(image1, image2, flow, **extra):
    """A raw sample whose images stay float32 (transforms are dtype-agnostic for geometry)."""
    sample = make_raw_sample(np.zeros(image1.shape, np.uint8), np.zeros(image1.shape, np.uint8), flow_fw=flow, **extra)
    sample["image1"], sample["image2"] = image1, image2
    return sample


def inside(flow: np.ndarray, margin: float = 1.0) -> np.ndarray:
    h, w = flow.shape[:2]
    xs, ys = np.meshgrid(np.arange(w), np.arange(h))
    x, y = xs + flow[..., 0], ys + flow[..., 1]
    return (x >= margin) & (x <= w - 1 - margin) & (y >= margin) & (y <= h - 1 - margin)


def test_flip_keeps_warping_consistent() -> None:
    image1, image2, flow = consistent_pair()
    mask = inside(flow)
    assert np.abs(warp(image2, flow) - image1)[mask].max() < 1e-3  # the original pair is consistent
    flipped = flip_sample_horizontally(float_sample(image1, image2, flow, occ_fw=~mask))
    f_flow = flipped["flow_fw"]
    reproduced = warp(flipped["image2"], f_flow)
    f_mask = ~flipped["occ_fw"]
    np.testing.assert_array_equal(f_mask, mask[:, ::-1])
    assert np.abs(reproduced - flipped["image1"])[f_mask].max() < 1e-2
    # a wrong sign would not reproduce it
    wrong = f_flow.copy()
    wrong[..., 0] *= -1
    assert np.abs(warp(flipped["image2"], wrong) - flipped["image1"])[f_mask].mean() > 1.0


def test_flip_negates_x_of_both_flows_and_flips_labels() -> None:
    image = np.zeros((4, 6, 3), np.uint8)
    label = np.arange(24, dtype=np.uint8).reshape(4, 6)
    flow = np.zeros((4, 6, 2), np.float32)
    flow[..., 0], flow[..., 1] = 3.0, 1.0
    sample = make_raw_sample(image, image, label1=label, flow_fw=flow, flow_bw=-flow)
    flipped = flip_sample_horizontally(sample)
    assert np.all(flipped["flow_fw"][..., 0] == -3.0) and np.all(flipped["flow_fw"][..., 1] == 1.0)
    assert np.all(flipped["flow_bw"][..., 0] == 3.0) and np.all(flipped["flow_bw"][..., 1] == -1.0)
    np.testing.assert_array_equal(flipped["label1"], label[:, ::-1])


def test_resize_scales_flow_and_keeps_warping_consistent() -> None:
    image1, image2, flow = consistent_pair(size=(64, 96), seed=4)
    resized = resize_sample(float_sample(image1, image2, flow), (32, 48))
    small_flow = resized["flow_fw"]
    np.testing.assert_allclose(small_flow.mean(axis=(0, 1)), flow.mean(axis=(0, 1)) / 2, atol=0.05)
    mask = inside(small_flow, margin=2)
    error = np.abs(warp(resized["image2"], small_flow) - resized["image1"])[mask].mean()
    unscaled_error = np.abs(warp(resized["image2"], small_flow * 2) - resized["image1"])[mask].mean()
    assert error < 1.5 and unscaled_error > 3 * error


def test_resize_labels_nearest_and_sparse_flow_scattered() -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    label = np.zeros((8, 8), np.uint8)
    label[:, 4:] = 7
    flow = np.zeros((8, 8, 2), np.float32)
    valid = np.zeros((8, 8), bool)
    valid[2, 2], flow[2, 2] = True, (2.0, -4.0)
    out = resize_sample(make_raw_sample(image, image, label1=label, flow_fw=flow, flow_valid=valid), (16, 4))
    assert set(np.unique(out["label1"])) == {0, 7}  # no blended class ids
    assert out["flow_valid"].sum() == 1
    y, x = np.argwhere(out["flow_valid"])[0]
    np.testing.assert_allclose(out["flow_fw"][y, x], (1.0, -8.0))  # u * 4/8, v * 16/8
    assert (y, x) == (round(2.5 * 2 - 0.5), round(2.5 * 0.5 - 0.5))
    # Forward-only ground truth: the backward flow stays unknown through the resize.
    assert not out["flow_valid_bw"].any()


def test_resize_keeps_the_backward_flow_validity_of_its_own_grid() -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    flow_bw = np.zeros((8, 8, 2), np.float32)
    valid_bw = np.zeros((8, 8), bool)
    valid_bw[5, 6], flow_bw[5, 6] = True, (-2.0, 4.0)
    dense_fw = np.ones((8, 8, 2), np.float32)
    out = resize_sample(make_raw_sample(image, image, flow_fw=dense_fw, flow_bw=flow_bw, flow_valid_bw=valid_bw),
                        (16, 4))
    assert out["flow_valid"].all()
    np.testing.assert_allclose(out["flow_fw"][3, 1], (0.5, 2.0))
    assert out["flow_valid_bw"].sum() == 1
    y, x = np.argwhere(out["flow_valid_bw"])[0]
    np.testing.assert_allclose(out["flow_bw"][y, x], (-1.0, 8.0))
    assert (y, x) == (round(5.5 * 2 - 0.5), round(6.5 * 0.5 - 0.5))


def test_crop_takes_the_same_window_everywhere() -> None:
    h, w = 20, 30
    ys, xs = np.mgrid[0:h, 0:w]
    image = np.stack([xs, ys, np.zeros_like(xs)], axis=-1).astype(np.uint8)
    label = ((xs * 7 + ys) % 250).astype(np.uint8)
    flow = np.stack([xs, ys], axis=-1).astype(np.float32)
    sample = make_raw_sample(image, image.copy(), label1=label, flow_fw=flow)
    random.seed(0)
    for _ in range(5):
        out = RandomCrop((8, 12))(sample)
        cx, cy = out["image1"][..., 0].astype(int), out["image1"][..., 1].astype(int)
        np.testing.assert_array_equal(out["label1"], (cx * 7 + cy) % 250)
        np.testing.assert_array_equal(out["flow_fw"][..., 0], cx)
        np.testing.assert_array_equal(out["image2"], out["image1"])
    with pytest.raises(ValueError, match="outside"):
        crop_sample(sample, 15, 0, (8, 12))


def test_crop_pads_small_samples_with_ignore() -> None:
    image = np.full((4, 5, 3), 9, np.uint8)
    sample = make_raw_sample(image, image, label1=np.zeros((4, 5), np.uint8), flow_fw=np.ones((4, 5, 2), np.float32))
    out = RandomCrop((6, 5))(sample)
    assert out["image1"].shape == (6, 5, 3)
    assert np.all(out["label1"][4:] == 255) and not out["flow_valid"][4:].any()
    assert np.all(out["flow_valid"][:4])


def test_jitter_changes_images_only_and_identically() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    label = rng.integers(0, 19, size=(16, 16), dtype=np.uint8)
    sample = make_raw_sample(image, image.copy(), label1=label, flow_fw=rng.normal(size=(16, 16, 2)).astype(np.float32))
    torch.manual_seed(0)
    out = PhotometricJitter(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.1)(sample)
    assert not np.array_equal(out["image1"], image)
    np.testing.assert_array_equal(out["image1"], out["image2"])  # same draw for both frames
    np.testing.assert_array_equal(out["label1"], label)
    np.testing.assert_array_equal(out["flow_fw"], sample["flow_fw"])
    torch.manual_seed(0)
    asym = PhotometricJitter(brightness=0.5, contrast=0.5, saturation=0.5, hue=0.1, asymmetric_p=1.0)(sample)
    assert not np.array_equal(asym["image1"], asym["image2"])


def test_to_tensor_matches_the_architecture_dict() -> None:
    image = np.full((4, 6, 3), 255, np.uint8)
    out = raw_to_tensors(make_raw_sample(image, image, frame_gap=-3))
    assert out["image1"].shape == (3, 4, 6) and out["image1"].dtype == torch.float32 and out["image1"].max() == 1.0
    assert out["label1"].dtype == torch.int64 and torch.all(out["label1"] == 255)
    assert out["flow_fw"].shape == (2, 4, 6) and out["flow_valid"].dtype == torch.bool
    assert not out["flow_valid"].any() and not out["has_flow"] and not out["has_label1"]
    assert out["frame_gap"].item() == -3 and out["frame_gap"].dtype == torch.int64


def test_build_transforms_train_pipeline_output_size() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(40, 60, 3), dtype=np.uint8)
    pipeline = build_transforms(train=True, resize=(30, 45), crop_size=(16, 24), scale_range=(0.8, 1.2),
                                jitter={"brightness": 0.2})
    out = pipeline(make_raw_sample(image, image, label1=np.zeros((40, 60), np.uint8)))
    assert out["image1"].shape == (3, 16, 24) and out["label1"].shape == (16, 24)
