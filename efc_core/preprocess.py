"""Image -> network input: resize (letterbox or stretch), pad, normalise, HWC -> NCHW.

The one preprocessing definition: the runtime (``Perceptor``), INT8 calibration
(``efc_core.export.calibration``) and ``efc verify`` / ``efc bench`` all call ``preprocess``; the
constants it uses (``contract.RESIZE_MODES``, ``PAD_MODES``, ``padded_size``, the ImageNet mean
and std) are the ones training and ``EFCNet`` use. The geometry of the resize is kept in a
``ResizeGeometry`` so that ``postprocess`` can bring every output back to the input resolution.

Copies (640x480 rgb8 -> 1x3x512x640): one ``cv2.resize`` (none when only padding is needed), then
one pass per channel that reads the uint8 plane through a strided view and writes
``pixel * scale - offset`` straight into its slot of the NCHW tensor (``out=`` reuses a
preallocated one); padding is written only on the strips around the content.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from efc_core.contract import PAD_MODES, RESIZE_MODES, padded_size
from efc_core.errors import InputError
from efc_core.manifest import Manifest

LOG = logging.getLogger(__name__)

__all__ = ["RESIZE_MODES", "ResizeGeometry", "aspect_fit_size", "check_image", "compute_geometry", "content_geometry",
           "new_input_tensor", "normalisation_constants", "plan_geometry", "preprocess", "resize_to_content"]


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

    @property
    def input_share(self) -> float:
        """Fraction of the model input covered by the image (1 = no padding)."""
        return (self.content_height * self.content_width) / (self.model_height * self.model_width)


def _check_size(size: Sequence[int], name: str) -> tuple[int, int]:
    if len(size) != 2 or not all(isinstance(v, (int, np.integer)) and v > 0 for v in size):
        raise ValueError(f"{name} must be a (height, width) pair of positive ints, got {size!r}")
    return int(size[0]), int(size[1])


def compute_geometry(input_size: tuple[int, int], model_size: tuple[int, int],
                     mode: str = "letterbox") -> ResizeGeometry:
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


def aspect_fit_size(input_size: tuple[int, int], pixel_budget: int, multiple: int) -> tuple[int, int]:
    """The model input (h, w), multiples of ``multiple`` with ``h * w <= pixel_budget``, that holds
    the largest letterboxed copy of an ``input_size`` (H, W) frame; the smallest such size on ties.

    For a 1242x375 frame and the 320x256 budget this is 448x128: the content is the same 424x128
    as in 640x128 (94.6 % of the input used, against 38 % when letterboxed into 320x256).
    """
    height, width = _check_size(input_size, "input_size")
    if pixel_budget < multiple * multiple:
        raise ValueError(f"pixel budget {pixel_budget} is below one {multiple}x{multiple} block")
    best: tuple[float, int, tuple[int, int]] | None = None
    for model_height in range(multiple, pixel_budget // multiple + 1, multiple):
        max_width = (pixel_budget // model_height) // multiple * multiple
        # The narrowest width that does not crop the letterboxed content is the best for this height.
        needed = padded_size(model_height, width * model_height / height, multiple)[1]
        model_width = min(max_width, max(multiple, needed))
        scale = min(model_height / height, model_width / width)
        key = (-(scale * scale * height * width), model_height * model_width, (model_height, model_width))
        if best is None or key < best:
            best = key
    assert best is not None
    return best[2]


def plan_geometry(
    manifest: Manifest,
    input_size: tuple[int, int],
    requested_size: tuple[int, int] | None = None,
    mode: str = "letterbox",
    pixel_budget: int = 0,
) -> ResizeGeometry:
    """Choose the model input size and the geometry for an image of ``input_size`` (H, W).

    * fixed-size model: the manifest's size (``requested_size`` must be None or equal to it);
    * dynamic model with ``requested_size``: that size (multiples of ``manifest.pad_multiple``),
      resized with ``mode``;
    * dynamic model with ``pixel_budget`` > 0 and a padded frame above it: the size of that many
      pixels that fits the frame's aspect best (``aspect_fit_size``), letterboxed;
    * dynamic model otherwise: the input rounded up to ``pad_multiple`` with padding only
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
        if requested_size != padded_size(*requested_size, multiple):
            raise ValueError(f"input_size {requested_size} must be multiples of pad_multiple={multiple}")
        return compute_geometry(input_size, requested_size, mode)
    padded = padded_size(*_check_size(input_size, "input_size"), multiple)
    if pixel_budget > 0 and padded[0] * padded[1] > pixel_budget:
        return compute_geometry(input_size, aspect_fit_size(input_size, pixel_budget, multiple), mode)
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


def new_input_tensor(geometry: ResizeGeometry, dtype: str | np.dtype = np.float32) -> np.ndarray:
    """A zeroed (1, 3, model_height, model_width) tensor for ``preprocess(..., out=)``."""
    return np.zeros((1, 3, *geometry.model_size), dtype=dtype)


def _fill_padding(tensor: np.ndarray, geometry: ResizeGeometry, pad_mode: str) -> None:
    """Write the padding strips around the content: zeros, or the content's edge repeated.

    ``replicate`` fills the columns beside the content first, then whole rows, so corners take the
    corner pixel, as ``torch.nn.functional.pad(mode="replicate")`` does in ``EFCNet``.
    """
    planes = tensor[0]
    rows, cols = geometry.content_slices
    top, bottom, left, right = rows.start, rows.stop, cols.start, cols.stop
    if pad_mode == "zeros":
        planes[:, :top] = 0
        planes[:, bottom:] = 0
        planes[:, top:bottom, :left] = 0
        planes[:, top:bottom, right:] = 0
        return
    planes[:, top:bottom, :left] = planes[:, top:bottom, left:left + 1]
    planes[:, top:bottom, right:] = planes[:, top:bottom, right - 1:right]
    planes[:, :top] = planes[:, top:top + 1]
    planes[:, bottom:] = planes[:, bottom - 1:bottom]


def resize_to_content(image: np.ndarray, geometry: ResizeGeometry) -> np.ndarray:
    """The (content_height, content_width, 3) uint8 image ``preprocess`` normalises: ``image``
    itself when no resize is needed (a view, not a copy), else one ``cv2.resize``.

    INT8 calibration keeps these instead of whole camera frames; ``content_geometry`` places them.
    """
    if geometry.is_identity:
        return image  # read through its strides: a flipped or cropped view needs no copy
    if not image.flags.c_contiguous:
        # cv2.resize does not accept arbitrary strides (crops, channel flips).
        image = np.ascontiguousarray(image)
    # INTER_AREA averages when shrinking a lot (no aliasing); bilinear otherwise.
    shrink = geometry.content_width < geometry.input_width / 2 or geometry.content_height < geometry.input_height / 2
    return cv2.resize(image, (geometry.content_width, geometry.content_height),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def content_geometry(geometry: ResizeGeometry) -> ResizeGeometry:
    """The geometry that places an already resized content (``resize_to_content``) like ``geometry``.

    ``preprocess(resize_to_content(image, g), content_geometry(g), ...) == preprocess(image, g, ...)``.
    """
    return dataclasses.replace(geometry, input_height=geometry.content_height, input_width=geometry.content_width)


def preprocess(
    image: np.ndarray,
    geometry: ResizeGeometry,
    mean: Sequence[float],
    std: Sequence[float],
    dtype: str | np.dtype = np.float32,
    *,
    pad_mode: str = "zeros",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Resize, pad and normalise an RGB image into the network input tensor.

    Args:
        image: (H, W, 3) uint8 RGB with (H, W) == ``geometry.input_size``.
        geometry: from ``compute_geometry`` / ``plan_geometry``.
        mean, std: per-channel RGB statistics on [0, 1].
        dtype: element type of the result (float32, or float16 for half-precision graphs).
        pad_mode: ``"zeros"`` (0 = the mean colour) or ``"replicate"`` (the content's edge pixels);
            a model's is ``manifest.pad_mode``.
        out: a (1, 3, model_height, model_width) array of ``dtype`` to write into (no allocation);
            None allocates one.

    Returns:
        ``out`` (or a new array): ``(pixel / 255 - mean) / std`` on the content, padding per
        ``pad_mode``.
    """
    check_image(image)
    if image.shape[:2] != geometry.input_size:
        raise InputError(f"image size {image.shape[:2]} does not match the geometry's {geometry.input_size}")
    if pad_mode not in PAD_MODES:
        raise ValueError(f"unknown pad_mode {pad_mode!r}; expected one of {PAD_MODES}")
    shape = (1, 3, *geometry.model_size)
    if out is None:
        out = np.empty(shape, dtype=dtype)
    elif out.shape != shape or out.dtype != np.dtype(dtype):
        raise ValueError(f"out must be a {shape} {np.dtype(dtype)} array, got {out.shape} {out.dtype}")
    content = resize_to_content(image, geometry)
    scale, offset = normalisation_constants(mean, std)
    rows, cols = geometry.content_slices
    for channel in range(3):
        target = out[0, channel, rows, cols]
        np.multiply(content[:, :, channel], scale[channel], out=target, casting="same_kind")
        np.subtract(target, offset[channel], out=target, casting="same_kind")
    if (geometry.content_height, geometry.content_width) != geometry.model_size:
        _fill_padding(out, geometry, pad_mode)
    return out
