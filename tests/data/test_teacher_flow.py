"""DIS as a label-free teacher of real-video pairs (teacher_flow.py): analytic shifts."""

from __future__ import annotations

import random

import cv2
import numpy as np
import pytest
import skimage.data

from efc_core.data.datasets.sample import make_raw_sample
from efc_core.data.datasets.teacher_flow import TeacherFlow, dis_flow
from efc_core.data.datasets.transforms import build_transforms

SHIFT = (6, 4)  # (dx, dy) pixels: image2(p + SHIFT) = image1(p)


def _shifted_pair(size=(128, 160)) -> tuple[np.ndarray, np.ndarray]:
    """A photograph and a copy moved by SHIFT (new content enters on the top/left)."""
    photo = cv2.resize(skimage.data.astronaut(), (size[1] + 40, size[0] + 40), interpolation=cv2.INTER_AREA)
    dx, dy = SHIFT
    image1 = np.ascontiguousarray(photo[20:20 + size[0], 20:20 + size[1]])
    image2 = np.ascontiguousarray(photo[20 - dy:20 - dy + size[0], 20 - dx:20 - dx + size[1]])
    return image1, image2


def test_teacher_gives_an_unlabelled_shifted_pair_its_motion_and_drops_the_leaving_strip() -> None:
    image1, image2 = _shifted_pair()
    sample = make_raw_sample(image1, image2)
    assert not sample["has_flow"] and not sample["flow_valid"].any() and not sample["flow_valid_bw"].any()

    taught = TeacherFlow()(sample)

    assert taught["has_flow"] and not taught["has_occlusion"]
    valid = taught["flow_valid"]
    dx, dy = SHIFT
    # Pixels of frame 1 whose target leaves frame 2 (right / bottom strips) have no correspondence.
    assert not valid[:, -dx:].any() and not valid[-dy:, :].any()
    assert valid.mean() > 0.6
    error_fw = np.linalg.norm(taught["flow_fw"] - np.array(SHIFT, np.float32), axis=2)
    assert np.median(error_fw[valid]) < 0.3
    interior = (slice(16, -16), slice(16, -16))
    error_bw = np.linalg.norm(taught["flow_bw"][interior] + np.array(SHIFT, np.float32), axis=2)
    assert np.median(error_bw) < 0.3
    # The backward flow has its own validity on frame 2's grid: there the strips that entered
    # (left / top) have no correspondence in frame 1, while the right / bottom ones do.
    valid_bw = taught["flow_valid_bw"]
    assert not valid_bw[:, :dx].any() and not valid_bw[:dy, :].any()
    assert valid_bw[dy + 8:-8, -dx:].mean() > 0.9 and valid_bw[-dy:, dx + 8:-8].mean() > 0.9
    assert np.median(error_bw[valid_bw[interior]]) < 0.3


def test_teacher_leaves_known_flow_and_incoherent_pairs_alone() -> None:
    image1, image2 = _shifted_pair()
    exact = np.broadcast_to(np.array(SHIFT, np.float32), (*image1.shape[:2], 2)).copy()
    known = make_raw_sample(image1, image2, flow_fw=exact, flow_bw=-exact)
    assert TeacherFlow()(known) is known

    rng = np.random.default_rng(0)
    noise1, noise2 = (rng.integers(0, 256, image1.shape, dtype=np.uint8) for _ in range(2))
    unrelated = make_raw_sample(noise1, noise2)
    assert TeacherFlow(min_valid_fraction=0.5)(unrelated) is unrelated


def test_teacher_in_the_pipeline_keeps_the_flow_consistent_with_crop_and_flip(monkeypatch) -> None:
    image1, image2 = _shifted_pair()
    pipeline = build_transforms(train=True, crop_size=(96, 128), hflip_p=1.0, teacher_flow={"preset": "medium"})
    monkeypatch.setattr(random, "random", lambda: 0.0)  # flip always
    tensors = pipeline(make_raw_sample(image1, image2))
    assert bool(tensors["has_flow"])
    flow = tensors["flow_fw"].numpy()  # (2, H, W)
    valid = tensors["flow_valid"].numpy()
    # Mirrored: the motion to the right becomes one to the left; the vertical part is unchanged.
    assert np.median(flow[0][valid]) == pytest.approx(-SHIFT[0], abs=0.3)
    assert np.median(flow[1][valid]) == pytest.approx(SHIFT[1], abs=0.3)


def test_dis_flow_and_teacher_refuse_unknown_presets_and_bad_tolerances() -> None:
    image1, image2 = _shifted_pair((32, 32))
    with pytest.raises(ValueError, match="unknown DIS preset 'slow'"):
        dis_flow(image1, image2, "slow")
    with pytest.raises(ValueError, match="preset must be one of"):
        TeacherFlow(preset="slow")
    with pytest.raises(ValueError, match="alpha1=-1"):
        TeacherFlow(alpha1=-1)
    with pytest.raises(ValueError, match="min_valid_fraction"):
        TeacherFlow(min_valid_fraction=1.5)
