"""Numpy/OpenCV flow operations: backward warping, flow resizing, forward-backward occlusion.

Conventions (docs/METHOD.md §3 and §6): ``flow[y, x] = (dx, dy)`` in pixels of the flow's own grid,
and warping is *backward*: ``warp_image(image, flow)(p) = image(p + flow(p))``. A sample point is
inside the image when it lies in ``[0, W - 1] x [0, H - 1]``, the same rule as
``efc_core.model.warp.inside_mask`` so that the numpy and torch tiers agree.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

_INTERPOLATIONS = {"linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}
_REMAP_DTYPES = tuple(np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.float32, np.float64))


def _check_flow(flow: np.ndarray, name: str = "flow") -> None:
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"{name} must have shape (H, W, 2), got {flow.shape}")


@functools.lru_cache(maxsize=8)
def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Read-only (H, W) float32 x and y pixel coordinates, cached because every frame reuses them."""
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    grid_x.flags.writeable = False
    grid_y.flags.writeable = False
    return grid_x, grid_y


def sample_points(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Absolute sample coordinates ``p + flow(p)``.

    Args:
        flow: (H, W, 2) displacement in pixels.

    Returns:
        ``(map_x, map_y)``, each (H, W) float32 in pixels (column, row).
    """
    _check_flow(flow)
    grid_x, grid_y = _pixel_grid(flow.shape[0], flow.shape[1])
    map_x = grid_x + flow[..., 0].astype(np.float32, copy=False)
    map_y = grid_y + flow[..., 1].astype(np.float32, copy=False)
    return map_x, map_y


def inside_image(flow: np.ndarray) -> np.ndarray:
    """(H, W) bool: True where ``p + flow(p)`` lies in ``[0, W-1] x [0, H-1]``.

    Args:
        flow: (H, W, 2) displacement in pixels.
    """
    map_x, map_y = sample_points(flow)
    height, width = flow.shape[:2]
    return (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)


def warp_image(
    image: np.ndarray,
    flow: np.ndarray,
    interpolation: str = "linear",
    border_value: float = 0,
) -> np.ndarray:
    """Backward-warp ``image`` with ``flow``: ``out(p) = image(p + flow(p))`` (cv2.remap).

    Args:
        image: (H, W) or (H, W, C) array; uint8, uint16, int16, float32 and float64 go straight
            to cv2.remap, bool is warped as uint8, other dtypes (int32, int64 labels) through
            float64 (exact for integers below 2^53; rounded back after linear interpolation).
        flow: (H, W, 2) displacement in pixels on the output grid.
        interpolation: ``"linear"`` (bilinear) or ``"nearest"`` (labels, masks).
        border_value: value of samples that fall outside the image.

    Returns:
        Array of the same shape and dtype as ``image``.
    """
    _check_flow(flow)
    if image.shape[:2] != flow.shape[:2]:
        raise ValueError(f"image size {image.shape[:2]} != flow size {flow.shape[:2]}")
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATIONS)}, got {interpolation!r}")
    if image.dtype == np.bool_:
        return warp_image(image.view(np.uint8), flow, interpolation, border_value).astype(np.bool_)
    if image.dtype not in _REMAP_DTYPES:
        warped = warp_image(image.astype(np.float64), flow, interpolation, border_value)
        return np.rint(warped).astype(image.dtype) if interpolation == "linear" else warped.astype(image.dtype)
    map_x, map_y = sample_points(flow)
    channels = image.shape[2] if image.ndim == 3 else 0
    border = (float(border_value),) * max(channels, 1)
    if channels > 4:
        # cv2.remap's border value has at most 4 entries; warp wide arrays in chunks of 4 channels.
        parts = [
            warp_image(image[..., start : start + 4], flow, interpolation, border_value)
            for start in range(0, channels, 4)
        ]
        warped = np.concatenate(parts, axis=2)
    else:
        warped = cv2.remap(
            image, map_x, map_y, _INTERPOLATIONS[interpolation],
            borderMode=cv2.BORDER_CONSTANT, borderValue=border,
        )
        if channels == 1:  # OpenCV drops a trailing channel axis of size 1
            warped = warped[..., None]
    return warped


def resize_flow(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinearly resize a flow field to ``size = (H, W)`` and rescale its vectors.

    Uses half-pixel centres (cv2.resize), like ``efc_core.model.warp.resize_flow``
    (``align_corners=False``).

    Args:
        flow: (h, w, 2) in pixels of the (h, w) grid.
        size: target ``(H, W)``.

    Returns:
        (H, W, 2) float32 in pixels of the (H, W) grid: u scaled by W / w, v by H / h.
    """
    _check_flow(flow)
    height, width = int(size[0]), int(size[1])
    if height <= 0 or width <= 0:
        raise ValueError(f"size must be positive (H, W), got {size}")
    in_h, in_w = flow.shape[:2]
    resized = cv2.resize(flow.astype(np.float32, copy=False), (width, height), interpolation=cv2.INTER_LINEAR)
    resized[..., 0] *= width / in_w
    resized[..., 1] *= height / in_h
    return resized


def flow_magnitude(flow: np.ndarray) -> np.ndarray:
    """(H, W) float32 Euclidean length of each flow vector, in pixels.

    Args:
        flow: (H, W, 2) displacement in pixels.
    """
    _check_flow(flow)
    flow32 = flow.astype(np.float32, copy=False)
    return cv2.magnitude(np.ascontiguousarray(flow32[..., 0]), np.ascontiguousarray(flow32[..., 1]))


def forward_backward_occlusion(
    flow_fw: np.ndarray,
    flow_bw: np.ndarray,
    alpha1: float = 0.01,
    alpha2: float = 0.5,
) -> np.ndarray:
    """Forward-backward consistency check (docs/METHOD.md §3, UnFlow/UFlow form).

    A pixel p of frame 1 is occluded when
    ``|F12(p) + F21(p + F12(p))|^2 > alpha1 (|F12(p)|^2 + |F21(p + F12(p))|^2) + alpha2``,
    or when ``p + F12(p)`` leaves the image (there is no correspondence to check).

    Args:
        flow_fw: (H, W, 2) flow frame 1 -> 2 on frame 1's grid, pixels.
        flow_bw: (H, W, 2) flow frame 2 -> 1 on frame 2's grid, pixels.
        alpha1: relative tolerance (fraction of the squared magnitudes).
        alpha2: absolute tolerance in squared pixels.

    Returns:
        (H, W) bool, True = occluded in frame 1.
    """
    _check_flow(flow_fw, "flow_fw")
    _check_flow(flow_bw, "flow_bw")
    if flow_fw.shape != flow_bw.shape:
        raise ValueError(f"flow_fw shape {flow_fw.shape} != flow_bw shape {flow_bw.shape}")
    forward = flow_fw.astype(np.float32, copy=False)
    backward_at_target = warp_image(flow_bw.astype(np.float32, copy=False), forward, "linear", 0.0)
    round_trip = forward + backward_at_target
    mismatch = np.sum(round_trip * round_trip, axis=2)
    magnitudes = np.sum(forward * forward, axis=2) + np.sum(backward_at_target * backward_at_target, axis=2)
    occluded = mismatch > alpha1 * magnitudes + alpha2
    return occluded | ~inside_image(forward)
