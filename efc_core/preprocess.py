"""Image -> network input: resize (letterbox or stretch), pad, normalise, HWC -> NCHW.

The geometry of the resize is kept in a ``ResizeGeometry`` so that ``postprocess`` can bring every
output back to the input resolution (ROS_NODE.md must-have 7).

Cost (640x480 RGB -> 1x3x512x640, one core): about 0.7 ms. The uint8 image is resized with
cv2.resize, split into planes by cv2.split, and each plane is normalised straight into its slot of
the output tensor (one multiply writing float32, one in-place subtract); the usual
``astype(float32)`` + broadcast + transpose + copy took 7 ms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from efc_core.errors import InputError
from efc_core.manifest import Manifest

RESIZE_MODES: tuple[str, ...] = ("letterbox", "stretch")


@dataclass(frozen=True)
class ResizeGeometry:
    """Where the input image lies inside the model tensor.

    The content (the resized image) occupies rows ``offset_y : offset_y + content_height`` and
    columns ``offset_x : offset_x + content_width`` of the (model_height, model_width) tensor;
    the rest is padding. ``scale_x = content_width / input_width`` (model pixels per input pixel),
    likewise ``scale_y``.
    """

    input_height: int
    input_width: int
    model_height: int
    model_width: int
    content_height: int
    content_width: int
    offset_y: int
    offset_x: int

    @property
    def scale_x(self) -> float:
        return self.content_width / self.input_width

    @property
    def scale_y(self) -> float:
        return self.content_height / self.input_height

    @property
    def input_size(self) -> tuple[int, int]:
        return self.input_height, self.input_width

    @property
    def model_size(self) -> tuple[int, int]:
        return self.model_height, self.model_width

    @property
    def content_slices(self) -> tuple[slice, slice]:
        """(rows, cols) slices of the content inside a model-resolution array."""
        return (slice(self.offset_y, self.offset_y + self.content_height),
                slice(self.offset_x, self.offset_x + self.content_width))

    @property
    def is_identity(self) -> bool:
        """True when the content is the input at its own size (only padding, or nothing)."""
        return (self.content_height, self.content_width) == (self.input_height, self.input_width)


def _check_size(size: Sequence[int], name: str) -> tuple[int, int]:
    if len(size) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in size):
        raise ValueError(f"{name} must be a (height, width) pair of positive ints, got {size!r}")
    return int(size[0]), int(size[1])


def compute_geometry(input_size: tuple[int, int], model_size: tuple[int, int], mode: str = "letterbox") -> ResizeGeometry:
    """Geometry of fitting an image of ``input_size`` (H, W) into ``model_size`` (h, w).

    Modes: ``"letterbox"`` keeps the aspect ratio (scale ``min(h/H, w/W)``) and centres the
    content with padding; ``"stretch"`` scales each axis on its own (no padding); ``"pad"`` does
    not resize and puts the image at the top-left (``model_size`` must be at least the input).
    """
    height, width = _check_size(input_size, "input_size")
    model_height, model_width = _check_size(model_size, "model_size")
    if mode == "stretch":
        return ResizeGeometry(height, width, model_height, model_width, model_height, model_width, 0, 0)
    if mode == "pad":
        if height > model_height or width > model_width:
            raise ValueError(f"pad mode needs model_size {model_size} >= input_size {input_size}")
        return ResizeGeometry(height, width, model_height, model_width, height, width, 0, 0)
    if mode != "letterbox":
        raise ValueError(f"unknown resize mode {mode!r}; expected one of {RESIZE_MODES}")
    scale = min(model_height / height, model_width / width)
    # Round, then clamp: the side that sets the scale must fill the tensor exactly.
    content_height = min(model_height, max(1, round(height * scale)))
    content_width = min(model_width, max(1, round(width * scale)))
    offset_y = (model_height - content_height) // 2
    offset_x = (model_width - content_width) // 2
    return ResizeGeometry(height, width, model_height, model_width, content_height, content_width, offset_y, offset_x)


def round_up(value: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= ``value``."""
    return int(math.ceil(value / multiple) * multiple)


def plan_geometry(
    manifest: Manifest,
    input_size: tuple[int, int],
    requested_size: tuple[int, int] | None = None,
    mode: str = "letterbox",
) -> ResizeGeometry:
    """Choose the model input size and the geometry for an image of ``input_size`` (H, W).

    * fixed-size model: the manifest's size (``requested_size`` must be None or equal to it);
    * dynamic model with ``requested_size``: that size (multiples of ``manifest.pad_multiple``),
      resized with ``mode``;
    * dynamic model without it: the input rounded up to ``pad_multiple`` with padding only
      (no resampling, so nothing is lost).
    """
    if requested_size is not None:
        requested_size = _check_size(requested_size, "input_size")
    if not manifest.is_dynamic:
        fixed = (int(manifest.input_height), int(manifest.input_width))  # type: ignore[arg-type]
        if requested_size is not None and requested_size != fixed:
            raise ValueError(f"input_size {requested_size} differs from the fixed model size {fixed} "
                             f"of {manifest.model_name!r}; leave input_size unset or re-export")
        return compute_geometry(input_size, fixed, mode)
    multiple = manifest.pad_multiple
    if requested_size is not None:
        if requested_size[0] % multiple or requested_size[1] % multiple:
            raise ValueError(f"input_size {requested_size} must be multiples of pad_multiple={multiple}")
        return compute_geometry(input_size, requested_size, mode)
    padded = (round_up(input_size[0], multiple), round_up(input_size[1], multiple))
    return compute_geometry(input_size, padded, "pad")


def check_image(image: object) -> np.ndarray:
    """Return ``image`` if it is an (H, W, 3) uint8 array, else raise ``InputError`` naming it."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"image must have shape (H, W, 3), got {image.shape}")
    if image.dtype != np.uint8:
        raise InputError(f"image must be uint8 RGB, got dtype {image.dtype}")
    return image


def normalisation_constants(mean: Sequence[float], std: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(scale, offset)`` float32 with ``normalised = uint8 * scale - offset``."""
    mean_arr = np.asarray(mean, dtype=np.float64)
    std_arr = np.asarray(std, dtype=np.float64)
    return (1.0 / (255.0 * std_arr)).astype(np.float32), (mean_arr / std_arr).astype(np.float32)


def preprocess(
    image: np.ndarray,
    geometry: ResizeGeometry,
    mean: Sequence[float],
    std: Sequence[float],
    dtype: str | np.dtype = np.float32,
) -> np.ndarray:
    """Resize, pad and normalise an RGB image into a fresh network input tensor.

    Args:
        image: (H, W, 3) uint8 RGB with (H, W) == ``geometry.input_size``.
        geometry: from ``compute_geometry`` / ``plan_geometry``.
        mean, std: per-channel RGB statistics on [0, 1].
        dtype: element type of the result (float32, or float16 for half-precision graphs).

    Returns:
        (1, 3, model_height, model_width) array: ``(pixel / 255 - mean) / std`` on the content,
        0 (the mean colour) on the padding.
    """
    check_image(image)
    if image.shape[:2] != geometry.input_size:
        raise InputError(f"image size {image.shape[:2]} does not match the geometry's {geometry.input_size}")
    if not image.flags.c_contiguous:
        # Views with arbitrary strides (crops, channel flips) are not accepted by every cv2 call.
        image = np.ascontiguousarray(image)
    if geometry.is_identity:
        content = image
    else:
        # INTER_AREA averages when shrinking a lot (no aliasing); bilinear otherwise.
        shrink = geometry.content_width < geometry.input_width / 2 or geometry.content_height < geometry.input_height / 2
        content = cv2.resize(image, (geometry.content_width, geometry.content_height),
                             interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    padded = (geometry.content_height, geometry.content_width) != geometry.model_size
    tensor = (np.zeros if padded else np.empty)((1, 3, *geometry.model_size), dtype=np.float32)
    scale, offset = normalisation_constants(mean, std)
    rows, cols = geometry.content_slices
    for channel, plane in enumerate(cv2.split(content)):
        target = tensor[0, channel, rows, cols]
        np.multiply(plane, scale[channel], out=target)
        target -= offset[channel]
    if np.dtype(dtype) != np.float32:
        return tensor.astype(dtype)
    return tensor
