"""Pseudo ground-truth flow for unlabelled real video from a classical teacher (OpenCV DIS).

Real video has no flow labels, and the photometric loss alone teaches a small network slowly on a
2-core CPU: after ~200 CPU-minutes the real-camera model's residual on KITTI odometry was 36 %
below zero flow's where DIS-medium reaches 72-76 %. DIS is a label-free method too (it minimises
a patch-matching cost on the same two frames), so its flow on an unlabelled pair is a target the
EFC objective may learn from without any annotation: the pair stays "unlabelled video".

The teacher runs on the final (cropped, self-warped, not yet flipped or jittered) pair, in both
directions, and keeps only pixels that pass the forward-backward check
(:func:`efc_core.flow_ops.forward_backward_occlusion`): DIS is wrong in occlusions and on
textureless regions, where the two directions disagree. Its flow enters the loss through the
supervised flow term (``loss.supervised_flow``) next to the photometric one; samples whose flow is
already known (synthetic scenes, self-warped frames) are left unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from efc_core.data.datasets.sample import RawSample
from efc_core.flow_ops import forward_backward_occlusion

#: OpenCV DIS presets by name (also the baselines of training/real_eval.py and training/evaluate.py).
DIS_PRESETS: dict[str, int] = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def grey(image: np.ndarray) -> np.ndarray:
    """(H, W) uint8 grey of an (H, W, 3) uint8 RGB (or already grey) image."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


def dis_flow(image1: np.ndarray, image2: np.ndarray, preset: str = "medium") -> np.ndarray:
    """OpenCV DIS flow 1 -> 2 of two (H, W, 3) uint8 RGB frames: (H, W, 2) float32 pixels."""
    if preset not in DIS_PRESETS:
        raise ValueError(f"unknown DIS preset {preset!r}; expected one of {sorted(DIS_PRESETS)}")
    flow = cv2.DISOpticalFlow_create(DIS_PRESETS[preset]).calc(grey(image1), grey(image2), None)
    return flow.astype(np.float32, copy=False)


@dataclass(frozen=True)
class TeacherFlow:
    """Give a pair without known flow DIS's forward and backward flow, valid where they agree.

    Args:
        preset: DIS preset (``ultrafast`` | ``fast`` | ``medium``).
        alpha1: relative tolerance of the forward-backward check (fraction of squared magnitudes).
        alpha2: absolute tolerance of the check, squared pixels.
        min_valid_fraction: below this share of consistent pixels the teacher is not trusted on
            the pair at all (flat or badly exposed frames) and the sample stays unlabelled.

    The sample gets ``flow_fw``, ``flow_bw``, ``flow_valid`` (the consistent pixels of frame 1),
    ``flow_valid_bw`` (those of frame 2) and ``has_flow``; occlusion stays unknown
    (``has_occlusion`` unchanged), so the occlusion head keeps learning from its own target.
    """

    preset: str = "medium"
    alpha1: float = 0.01
    alpha2: float = 0.5
    min_valid_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.preset not in DIS_PRESETS:
            raise ValueError(f"TeacherFlow.preset must be one of {sorted(DIS_PRESETS)}, got {self.preset!r}")
        if self.alpha1 < 0 or self.alpha2 < 0:
            raise ValueError(f"TeacherFlow tolerances must be >= 0, got alpha1={self.alpha1} alpha2={self.alpha2}")
        if not 0.0 <= self.min_valid_fraction <= 1.0:
            raise ValueError(f"TeacherFlow.min_valid_fraction must be in [0, 1], got {self.min_valid_fraction}")

    def __call__(self, sample: RawSample) -> RawSample:
        if sample["has_flow"]:
            return sample
        flow_fw = dis_flow(sample["image1"], sample["image2"], self.preset)
        flow_bw = dis_flow(sample["image2"], sample["image1"], self.preset)
        valid_fw = ~forward_backward_occlusion(flow_fw, flow_bw, self.alpha1, self.alpha2)
        if valid_fw.mean() < self.min_valid_fraction:
            return sample
        # The backward flow lives on frame 2's grid: its own check, not the forward mask.
        valid_bw = ~forward_backward_occlusion(flow_bw, flow_fw, self.alpha1, self.alpha2)
        out = dict(sample)
        out.update(flow_fw=flow_fw, flow_bw=flow_bw, flow_valid=valid_fw, flow_valid_bw=valid_bw, has_flow=True)
        return out
