"""The raw (numpy) training sample and its conversion to the tensor dict of ARCHITECTURE.md.

Readers build a *raw sample*: the same keys as the tensor sample, in numpy, image-major layout, so
that the joint transforms (``transforms.py``) can use OpenCV on them:

=============== =================== ==========================================================
key             shape / dtype       meaning
=============== =================== ==========================================================
image1, image2  (H, W, 3) uint8     RGB frames
label1, label2  (H, W) uint8        train ids, 255 = ignore (or the whole frame is unlabelled)
flow_fw         (H, W, 2) float32   pixels, frame 1 -> 2 on frame 1's grid (zeros if unknown)
flow_bw         (H, W, 2) float32   pixels, frame 2 -> 1 on frame 2's grid (zeros if unknown)
flow_valid      (H, W) bool         where ``flow_fw`` is known (all False if unknown)
flow_valid_bw   (H, W) bool         where ``flow_bw`` is known (all False if unknown: the
                                    forward-only sets, KITTI / Sintel / FlyingChairs)
occ_fw, occ_bw  (H, W) bool         occluded in frame 1 (resp. 2)
has_*           bool                which targets are real rather than placeholders
frame_gap       int                 signed gap t (negative: image2 precedes image1)
=============== =================== ==========================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from efc_core.data.formats import read_rgb  # noqa: F401  (re-exported for the dataset readers)

from efc_core.contract import IGNORE_LABEL
from efc_core.errors import InputError

RawSample = dict[str, Any]

IMAGE_KEYS: tuple[str, ...] = ("image1", "image2")
LABEL_KEYS: tuple[str, ...] = ("label1", "label2")
FLOW_KEYS: tuple[str, ...] = ("flow_fw", "flow_bw")
MASK_KEYS: tuple[str, ...] = ("flow_valid", "flow_valid_bw", "occ_fw", "occ_bw")
FLAG_KEYS: tuple[str, ...] = ("has_flow", "has_occlusion", "has_label1", "has_label2")


def read_label_png(path: str | Path) -> np.ndarray:
    """Read a single-channel 8-bit label PNG as (H, W) uint8 (no colour conversion)."""
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise InputError(f"cannot read label image {str(path)!r}")
    if label.ndim != 2 or label.dtype != np.uint8:
        raise InputError(f"label image {str(path)!r} must be 8-bit single channel, got {label.dtype} {label.shape}")
    return label


def make_raw_sample(
    image1: np.ndarray,
    image2: np.ndarray,
    *,
    label1: np.ndarray | None = None,
    label2: np.ndarray | None = None,
    flow_fw: np.ndarray | None = None,
    flow_bw: np.ndarray | None = None,
    flow_valid: np.ndarray | None = None,
    flow_valid_bw: np.ndarray | None = None,
    occ_fw: np.ndarray | None = None,
    occ_bw: np.ndarray | None = None,
    frame_gap: int = 1,
) -> RawSample:
    """Assemble a raw sample, filling every missing target with its placeholder and flag.

    Args:
        image1, image2: (H, W, 3) uint8 RGB of the same size.
        label1, label2: (H, W) uint8 train ids (255 ignore) or None for an unlabelled frame.
        flow_fw: (H, W, 2) float32 pixels 1 -> 2, or None; ``flow_bw`` likewise 2 -> 1.
        flow_valid: (H, W) bool validity of ``flow_fw``; all True when a flow is given without it.
        flow_valid_bw: (H, W) bool validity of ``flow_bw`` on frame 2's grid; all True when
            ``flow_bw`` is given without it, all False when it is not given (so a forward-only
            ground truth never trains the backward flow towards its zero placeholder).
        occ_fw, occ_bw: (H, W) bool occlusion masks or None (both or neither).
        frame_gap: signed gap t between the frames.
    """
    if image1.shape != image2.shape or image1.ndim != 3 or image1.shape[2] != 3 or image1.dtype != np.uint8:
        raise ValueError(f"images must be two (H, W, 3) uint8 arrays of one size, got {image1.shape} {image1.dtype} "
                         f"and {image2.shape} {image2.dtype}")
    size = image1.shape[:2]

    def label_or_ignore(label: np.ndarray | None) -> np.ndarray:
        if label is None:
            return np.full(size, IGNORE_LABEL, np.uint8)
        if label.shape != size:
            raise ValueError(f"label shape {label.shape} does not match image size {size}")
        return label.astype(np.uint8, copy=False)

    def flow_or_zeros(flow: np.ndarray | None) -> np.ndarray:
        if flow is None:
            return np.zeros((*size, 2), np.float32)
        if flow.shape != (*size, 2):
            raise ValueError(f"flow shape {flow.shape} does not match image size {size}")
        return flow.astype(np.float32, copy=False)

    def mask_or(mask: np.ndarray | None, default: bool) -> np.ndarray:
        if mask is None:
            return np.full(size, default, bool)
        if mask.shape != size:
            raise ValueError(f"mask shape {mask.shape} does not match image size {size}")
        return mask.astype(bool, copy=False)

    has_flow = flow_fw is not None
    return {
        "image1": image1, "image2": image2,
        "label1": label_or_ignore(label1), "label2": label_or_ignore(label2),
        "flow_fw": flow_or_zeros(flow_fw), "flow_bw": flow_or_zeros(flow_bw),
        "flow_valid": mask_or(flow_valid, has_flow),
        "flow_valid_bw": mask_or(flow_valid_bw, flow_bw is not None),
        "occ_fw": mask_or(occ_fw, False), "occ_bw": mask_or(occ_bw, False),
        "has_flow": has_flow, "has_occlusion": occ_fw is not None,
        "has_label1": label1 is not None, "has_label2": label2 is not None,
        "frame_gap": int(frame_gap),
    }


def sample_size(sample: RawSample) -> tuple[int, int]:
    """(H, W) of a raw sample."""
    return tuple(sample["image1"].shape[:2])  # type: ignore[return-value]


def raw_to_tensors(sample: RawSample) -> dict[str, torch.Tensor]:
    """Convert a raw sample to the tensor dict of ARCHITECTURE.md ("Training samples").

    Images become (3, H, W) float32 in [0, 1], labels (H, W) int64, flows (2, H, W) float32,
    masks (H, W) bool, flags 0-d bool tensors and ``frame_gap`` a 0-d int64 tensor.
    """
    out: dict[str, torch.Tensor] = {}
    for key in IMAGE_KEYS:
        image = np.ascontiguousarray(sample[key].transpose(2, 0, 1))
        out[key] = torch.from_numpy(image).to(torch.float32).div_(255.0)
    for key in LABEL_KEYS:
        out[key] = torch.from_numpy(np.ascontiguousarray(sample[key])).to(torch.int64)
    for key in FLOW_KEYS:
        out[key] = torch.from_numpy(np.ascontiguousarray(sample[key].transpose(2, 0, 1), dtype=np.float32))
    for key in MASK_KEYS:
        out[key] = torch.from_numpy(np.ascontiguousarray(sample[key], dtype=bool))
    for key in FLAG_KEYS:
        out[key] = torch.tensor(bool(sample[key]))
    out["frame_gap"] = torch.tensor(int(sample["frame_gap"]), dtype=torch.int64)
    return out
