"""A frame paired with a warped copy of itself: exact flow, occlusion and labels from one image.

Labelled frames that are far apart in time (CamVid's train split: 1 s) cannot teach flow, and a
photometric loss on them teaches nonsense. Warping a frame by a known camera motion (translation,
rotation, zoom about the centre) gives a second frame whose flow is known at every pixel: the
flow of a real photograph (real texture, real blur and noise) with the displacements a moving
camera produces, and its label moves with it, so both frames of the pair stay labelled.

The warp is applied to the raw sample after cropping (``build_transforms``), so its occlusion is
relative to the frame the network sees: ``occ_fw`` marks pixels of ``image1`` that leave the frame,
``occ_bw`` pixels of ``image2`` whose source lies outside ``image1`` (filled by reflection, as a
real camera would show new content there; their label is 255).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import cv2
import numpy as np

from efc_core.contract import IGNORE_LABEL
from efc_core.data.datasets.sample import RawSample, sample_size


@dataclass(frozen=True)
class SelfWarp:
    """Replace ``image2`` by ``image1`` moved by a random similarity transform.

    Args:
        max_translation: largest shift per axis, pixels of the (cropped) sample.
        max_rotation_deg: largest rotation about the centre, degrees.
        max_scale_change: largest relative zoom (0.1 = 10 % in or out).
        p: probability of replacing the pair; otherwise the sample is returned unchanged.
    """

    max_translation: float = 20.0
    max_rotation_deg: float = 3.0
    max_scale_change: float = 0.08
    p: float = 1.0

    def __post_init__(self) -> None:
        for name in ("max_translation", "max_rotation_deg", "max_scale_change"):
            if getattr(self, name) < 0:
                raise ValueError(f"SelfWarp.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"SelfWarp.p must be in [0, 1], got {self.p}")

    def __call__(self, sample: RawSample) -> RawSample:
        if random.random() >= self.p:
            return sample
        height, width = sample_size(sample)
        matrix = similarity_matrix(
            (height, width),
            translation=(random.uniform(-1, 1) * self.max_translation, random.uniform(-1, 1) * self.max_translation),
            rotation_deg=random.uniform(-1, 1) * self.max_rotation_deg,
            scale=1.0 + random.uniform(-1, 1) * self.max_scale_change,
        )
        return warp_pair(sample, matrix)


def similarity_matrix(size: tuple[int, int], translation: tuple[float, float], rotation_deg: float,
                      scale: float) -> np.ndarray:
    """(2, 3) float64 affine map x1 -> x2 (pixel centres): zoom and rotate about the centre, then shift."""
    height, width = size
    centre_x, centre_y = (width - 1) / 2.0, (height - 1) / 2.0
    angle = math.radians(rotation_deg)
    linear = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    offset = np.array([centre_x, centre_y]) - linear @ np.array([centre_x, centre_y]) + np.asarray(translation)
    return np.concatenate([linear, offset[:, None]], axis=1)


def warp_pair(sample: RawSample, matrix: np.ndarray) -> RawSample:
    """``sample`` with ``image2``/``label2`` = ``image1``/``label1`` mapped by ``matrix`` (x1 -> x2).

    Sets exact ``flow_fw`` / ``flow_bw`` (pixels, each on its own frame's grid), ``occ_fw`` /
    ``occ_bw`` (leaving / entering the frame), ``flow_valid`` and ``flow_valid_bw`` everywhere
    and the ``has_*`` flags.
    """
    height, width = sample_size(sample)
    inverse = cv2.invertAffineTransform(matrix)
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))

    def displacement(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        target_x = affine[0, 0] * grid_x + affine[0, 1] * grid_y + affine[0, 2]
        target_y = affine[1, 0] * grid_x + affine[1, 1] * grid_y + affine[1, 2]
        flow = np.stack([target_x - grid_x, target_y - grid_y], axis=-1).astype(np.float32)
        outside = (target_x < 0) | (target_x > width - 1) | (target_y < 0) | (target_y > height - 1)
        return flow, outside

    flow_fw, occ_fw = displacement(matrix)
    flow_bw, occ_bw = displacement(inverse)
    out = dict(sample)
    out["image2"] = cv2.warpAffine(sample["image1"], matrix, (width, height), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REFLECT_101)
    label2 = cv2.warpAffine(sample["label1"], matrix, (width, height), flags=cv2.INTER_NEAREST,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=IGNORE_LABEL)
    label2[occ_bw] = IGNORE_LABEL
    out["label2"] = label2
    out.update(flow_fw=flow_fw, flow_bw=flow_bw, flow_valid=np.ones((height, width), bool),
               flow_valid_bw=np.ones((height, width), bool),
               occ_fw=occ_fw, occ_bw=occ_bw, has_flow=True, has_occlusion=True,
               has_label2=bool(sample["has_label1"]), frame_gap=1)
    return out
