"""Joint transforms on a raw sample (docs/METHOD.md §4): images, labels, flow and masks move together.

Geometric transforms keep the pair's correspondence intact: a crop takes the same window from both
frames (flow vectors are relative, so they are unchanged), a resize scales flow vectors by the
size ratio and samples labels and masks by nearest neighbour, a horizontal flip mirrors every
array and negates the x component of both flows. Photometric jitter touches the images only.
All transforms take and return a raw sample (``sample.py``); :class:`ToTensor` ends a pipeline.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch
import torchvision.transforms as tv_transforms
import torchvision.transforms.v2.functional as tv_functional

from efc_core.contract import IGNORE_LABEL
from efc_core.data.datasets.sample import (
    FLOW_KEYS, IMAGE_KEYS, LABEL_KEYS, MASK_KEYS, RawSample, raw_to_tensors, sample_size,
)
from efc_core.data.datasets.self_warp import SelfWarp
from efc_core.data.datasets.teacher_flow import TeacherFlow
from efc_core.flow_ops import resize_flow

Transform = Callable[[RawSample], RawSample]


class Compose:
    """Apply transforms in order (the last one is usually :class:`ToTensor`)."""

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample):
        for transform in self.transforms:
            sample = transform(sample)
        return sample


def _resize_sparse_flow(flow: np.ndarray, valid: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize a sparse (KITTI-style) flow by moving each valid vector to its nearest new pixel.

    Bilinear interpolation would blend valid vectors with the zeros of invalid pixels, so valid
    samples are scattered instead (half-pixel centres, like cv2.resize); vectors scale by the ratio.
    """
    in_h, in_w = valid.shape
    out_h, out_w = size
    scale_x, scale_y = out_w / in_w, out_h / in_h
    ys, xs = np.nonzero(valid)
    new_x = np.round((xs + 0.5) * scale_x - 0.5).astype(np.int64)
    new_y = np.round((ys + 0.5) * scale_y - 0.5).astype(np.int64)
    inside = (new_x >= 0) & (new_x < out_w) & (new_y >= 0) & (new_y < out_h)
    out_flow = np.zeros((out_h, out_w, 2), np.float32)
    out_valid = np.zeros((out_h, out_w), bool)
    out_flow[new_y[inside], new_x[inside]] = flow[ys[inside], xs[inside]] * np.array([scale_x, scale_y], np.float32)
    out_valid[new_y[inside], new_x[inside]] = True
    return out_flow, out_valid


def resize_sample(sample: RawSample, size: tuple[int, int]) -> RawSample:
    """Resize every array of a raw sample to ``size = (H, W)``.

    Images: bilinear (area when shrinking, against aliasing). Labels and masks: nearest. Dense
    flows: bilinear with vectors scaled by W/w and H/h; a sparse flow (some pixels of its validity
    mask invalid) is scattered (:func:`_resize_sparse_flow`).
    """
    height, width = int(size[0]), int(size[1])
    if height <= 0 or width <= 0:
        raise ValueError(f"resize size must be positive (H, W), got {size}")
    in_h, in_w = sample_size(sample)
    if (height, width) == (in_h, in_w):
        return sample
    out = dict(sample)
    shrinking = height * width < in_h * in_w
    for key in IMAGE_KEYS:
        out[key] = cv2.resize(sample[key], (width, height),
                              interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    for key in LABEL_KEYS:
        out[key] = cv2.resize(sample[key], (width, height), interpolation=cv2.INTER_NEAREST)
    for key in ("occ_fw", "occ_bw"):
        out[key] = cv2.resize(sample[key].astype(np.uint8), (width, height),
                              interpolation=cv2.INTER_NEAREST).astype(bool)
    for flow_key, valid_key in (("flow_fw", "flow_valid"), ("flow_bw", "flow_valid_bw")):
        valid = sample[valid_key]
        if sample["has_flow"] and valid.any() and not valid.all():
            out[flow_key], out[valid_key] = _resize_sparse_flow(sample[flow_key], valid, (height, width))
        else:
            out[flow_key] = resize_flow(sample[flow_key], (height, width))
            out[valid_key] = np.full((height, width), bool(valid.all()) and sample["has_flow"], bool)
    return out


class Resize:
    """Resize to a fixed ``(H, W)``."""

    def __init__(self, size: Sequence[int]) -> None:
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"Resize size must be (H, W) with positive sides, got {size}")
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, sample: RawSample) -> RawSample:
        return resize_sample(sample, self.size)


class RandomScale:
    """Resize by a factor drawn uniformly from ``[min_scale, max_scale]`` (both sides alike)."""

    def __init__(self, min_scale: float, max_scale: float) -> None:
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)

    def __call__(self, sample: RawSample) -> RawSample:
        scale = random.uniform(self.min_scale, self.max_scale)
        height, width = sample_size(sample)
        return resize_sample(sample, (max(1, round(height * scale)), max(1, round(width * scale))))


def crop_sample(sample: RawSample, top: int, left: int, size: tuple[int, int]) -> RawSample:
    """Cut the window ``[top, top+H) x [left, left+W)`` out of every array (same for both frames)."""
    height, width = size
    in_h, in_w = sample_size(sample)
    if top < 0 or left < 0 or top + height > in_h or left + width > in_w:
        raise ValueError(f"crop window top={top} left={left} size={size} outside the {in_h}x{in_w} sample")
    out = dict(sample)
    for key in IMAGE_KEYS + LABEL_KEYS + FLOW_KEYS + MASK_KEYS:
        out[key] = sample[key][top:top + height, left:left + width]
    return out


def pad_sample(sample: RawSample, size: tuple[int, int]) -> RawSample:
    """Pad bottom/right up to at least ``size``: images 0, labels 255, flow 0 and invalid, not occluded."""
    in_h, in_w = sample_size(sample)
    pad_h, pad_w = max(0, size[0] - in_h), max(0, size[1] - in_w)
    if pad_h == 0 and pad_w == 0:
        return sample
    out = dict(sample)
    fill = dict.fromkeys(IMAGE_KEYS + FLOW_KEYS + MASK_KEYS, 0) | dict.fromkeys(LABEL_KEYS, IGNORE_LABEL)
    for key, value in fill.items():
        array = sample[key]
        widths = ((0, pad_h), (0, pad_w)) + ((0, 0),) * (array.ndim - 2)
        out[key] = np.pad(array, widths, constant_values=value)
    return out


class RandomCrop:
    """Crop a random ``(H, W)`` window; smaller samples are padded first (labels with 255)."""

    def __init__(self, size: Sequence[int]) -> None:
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"RandomCrop size must be (H, W) with positive sides, got {size}")
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, sample: RawSample) -> RawSample:
        sample = pad_sample(sample, self.size)
        in_h, in_w = sample_size(sample)
        top = random.randint(0, in_h - self.size[0])
        left = random.randint(0, in_w - self.size[1])
        return crop_sample(sample, top, left, self.size)


def flip_sample_horizontally(sample: RawSample) -> RawSample:
    """Mirror left-right; both flows get their x component negated (a motion to the right becomes
    one to the left), which keeps ``image1(p) = image2(p + flow_fw(p))`` true in the mirror.
    """
    out = dict(sample)
    for key in IMAGE_KEYS + LABEL_KEYS + MASK_KEYS:
        out[key] = np.ascontiguousarray(sample[key][:, ::-1])
    for key in FLOW_KEYS:
        flow = np.ascontiguousarray(sample[key][:, ::-1])
        flow[..., 0] *= -1.0
        out[key] = flow
    return out


class RandomHorizontalFlip:
    """Flip with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"flip probability must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, sample: RawSample) -> RawSample:
        return flip_sample_horizontally(sample) if random.random() < self.p else sample


class PhotometricJitter:
    """Brightness / contrast / saturation / hue jitter (torchvision ``ColorJitter`` ranges and draw,
    applied with ``torchvision.transforms.v2.functional``, whose hue shift is about twice as fast).

    The same draw is applied to both frames, except with probability ``asymmetric_p`` where each
    frame gets its own. Asymmetric jitter breaks brightness constancy, which the photometric loss
    relies on, so it defaults to 0 (census is robust to it, plain L1 is not).
    """

    def __init__(self, brightness: float = 0.3, contrast: float = 0.3, saturation: float = 0.3,
                 hue: float = 0.05, asymmetric_p: float = 0.0, p: float = 1.0) -> None:
        if not 0.0 <= asymmetric_p <= 1.0 or not 0.0 <= p <= 1.0:
            raise ValueError(f"probabilities must be in [0, 1], got p={p}, asymmetric_p={asymmetric_p}")
        # ColorJitter validates the ranges and turns scalars into (min, max) intervals.
        self.jitter = tv_transforms.ColorJitter(brightness, contrast, saturation, hue)
        self.asymmetric_p, self.p = asymmetric_p, p

    def _draw(self) -> tuple:
        jitter = self.jitter
        return tv_transforms.ColorJitter.get_params(jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue)

    @staticmethod
    def _apply(image: np.ndarray, params: tuple) -> np.ndarray:
        order, brightness, contrast, saturation, hue = params
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        adjust = {0: (tv_functional.adjust_brightness, brightness), 1: (tv_functional.adjust_contrast, contrast),
                  2: (tv_functional.adjust_saturation, saturation), 3: (tv_functional.adjust_hue, hue)}
        for index in order.tolist():
            function, factor = adjust[index]
            if factor is not None:
                tensor = function(tensor, factor)
        return tensor.permute(1, 2, 0).contiguous().numpy()

    def __call__(self, sample: RawSample) -> RawSample:
        if random.random() >= self.p:
            return sample
        out = dict(sample)
        params = self._draw()
        out["image1"] = self._apply(sample["image1"], params)
        if random.random() < self.asymmetric_p:
            params = self._draw()
        out["image2"] = self._apply(sample["image2"], params)
        return out


class ToTensor:
    """Raw sample -> tensor dict of ARCHITECTURE.md (see ``sample.raw_to_tensors``)."""

    def __call__(self, sample: RawSample) -> dict[str, torch.Tensor]:
        return raw_to_tensors(sample)


def build_transforms(*, train: bool, crop_size: Sequence[int] | None = None, resize: Sequence[int] | None = None,
                     scale_range: Sequence[float] | None = None, hflip_p: float = 0.5,
                     jitter: dict | None = None, self_warp: dict | None = None,
                     teacher_flow: dict | None = None) -> Compose:
    """The standard pipeline: [Resize] -> (train: [RandomScale] -> [RandomCrop] -> [SelfWarp] -> [TeacherFlow]
    -> flip -> [jitter]) -> ToTensor.

    Args:
        train: apply the random augmentations (evaluation only resizes).
        crop_size: (H, W) training crop, or None for the whole (resized) frame.
        resize: (H, W) applied first, in training and evaluation.
        scale_range: (min, max) random scale factor in training.
        hflip_p: flip probability in training.
        jitter: keyword arguments of :class:`PhotometricJitter`, or None for no jitter.
        self_warp: keyword arguments of :class:`~efc_core.data.datasets.self_warp.SelfWarp` (frame 2
            becomes a warped copy of frame 1 with exact flow), or None to keep the real pair.
        teacher_flow: keyword arguments of :class:`~efc_core.data.datasets.teacher_flow.TeacherFlow`
            (DIS flow as the target of pairs without known flow, computed before flip and jitter so
            the teacher sees the clean frames), or None.
    """
    steps: list[Callable] = []
    if resize is not None:
        steps.append(Resize(resize))
    if train:
        if scale_range is not None:
            steps.append(RandomScale(*scale_range))
        if crop_size is not None:
            steps.append(RandomCrop(crop_size))
        if self_warp is not None:
            steps.append(SelfWarp(**self_warp))
        if teacher_flow is not None:
            steps.append(TeacherFlow(**teacher_flow))
        if hflip_p > 0:
            steps.append(RandomHorizontalFlip(hflip_p))
        if jitter is not None:
            steps.append(PhotometricJitter(**jitter))
    steps.append(ToTensor())
    return Compose(steps)
