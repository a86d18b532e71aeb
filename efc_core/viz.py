"""Per-frame visualisation: flow colour wheel, label palette, occlusion map, overlays.

Everything runs through precomputed lookup tables so that the ROS node can colour a 640x480
frame in a few milliseconds (no per-pixel Python).

Flow colours follow the Middlebury convention (Baker et al., IJCV 2011, ``flowToColor``): hue
from the direction on a 55-colour wheel, saturation from the magnitude normalised by the largest
magnitude (or a given one); zero flow is white, magnitudes beyond the normaliser are darkened to
75 %, unknown flow (non-finite or >= 1e9) is black.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Segment lengths of the Middlebury wheel: red-yellow, yellow-green, green-cyan, cyan-blue,
#: blue-magenta, magenta-red.
_WHEEL_SEGMENTS = (("RY", 15), ("YG", 6), ("GC", 4), ("CB", 11), ("BM", 13), ("MR", 6))
_ANGLE_BINS = 512    # hue resolution of the LUT: 0.7 deg, <= 7 grey levels between bins
_RADIUS_BINS = 128   # saturation steps for magnitudes in [0, 1] of the normaliser
_UNKNOWN_FLOW = 1e9  # Middlebury marks unknown flow with values >= 1e9


def middlebury_color_wheel() -> np.ndarray:
    """(55, 3) float64 RGB in [0, 255]: the Middlebury colour wheel, colour 0 = red."""
    rows = []
    for name, count in _WHEEL_SEGMENTS:
        ramp = np.floor(255.0 * np.arange(count) / count)
        up, down, full, zero = ramp, 255.0 - ramp, np.full(count, 255.0), np.zeros(count)
        channels = {  # (R, G, B) along each segment
            "RY": (full, up, zero), "YG": (down, full, zero), "GC": (zero, full, up),
            "CB": (zero, down, full), "BM": (up, zero, full), "MR": (full, zero, down),
        }[name]
        rows.append(np.stack(channels, axis=1))
    return np.concatenate(rows, axis=0)


def _flow_color_table() -> np.ndarray:
    """(ANGLE_BINS * (RADIUS_BINS + 1), 3) uint8: colour by (angle bin, radius bin); last radius
    bin = beyond the normaliser.
    """
    wheel = middlebury_color_wheel()
    count = len(wheel)
    # Middlebury: fk = (atan2(-v, -u) / pi + 1) / 2 * (ncols - 1), i.e. theta / (2 pi) * (ncols - 1)
    # with theta = atan2(v, u) in [0, 2 pi); colours k0 and k0 + 1 (wrapping) blend linearly.
    position = (np.arange(_ANGLE_BINS) + 0.5) / _ANGLE_BINS * (count - 1)
    k0 = np.floor(position).astype(int)
    k1 = (k0 + 1) % count
    fraction = (position - k0)[:, None]
    hue = ((1 - fraction) * wheel[k0] + fraction * wheel[k1]) / 255.0          # (A, 3) in [0, 1]
    radius = (np.arange(_RADIUS_BINS) / (_RADIUS_BINS - 1))[None, :, None]    # (1, R, 1)
    saturated = 1.0 - radius * (1.0 - hue[:, None, :])                         # (A, R, 3)
    beyond = 0.75 * hue[:, None, :]                                           # (A, 1, 3)
    table = np.concatenate([saturated, beyond], axis=1)
    return np.rint(255.0 * table).astype(np.uint8).reshape(-1, 3)


def _pack_rgb(table: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 -> (N,) uint32 with one RGB(A) colour per entry, for single-gather lookups."""
    rgba = np.zeros((len(table), 4), dtype=np.uint8)
    rgba[:, :3] = table
    return rgba.view(np.uint32).ravel()


def _lookup_rgb(packed_table: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 colours ``table[index]``; a uint32 gather + RGBA->RGB is ~3x faster than
    fancy-indexing an (N, 3) table.
    """
    rgba = packed_table.take(index).view(np.uint8).reshape(index.shape + (4,))
    return cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB)


_FLOW_TABLE = _pack_rgb(_flow_color_table())


def flow_to_color(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Colour a flow field with the Middlebury wheel.

    Args:
        flow: (H, W, 2) displacement in pixels.
        max_magnitude: magnitude (pixels) drawn fully saturated; ``None`` = the largest known
            magnitude in ``flow`` (so every frame uses its whole colour range).

    Returns:
        (H, W, 3) uint8 RGB.
    """
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must have shape (H, W, 2), got {flow.shape}")
    if max_magnitude is not None and not max_magnitude > 0:
        raise ValueError(f"max_magnitude must be positive, got {max_magnitude}")
    flow32 = flow.astype(np.float32, copy=False)
    # Fast path: one reduction says whether any value is unknown (NaN fails the comparison too).
    all_known = bool(np.abs(flow32).max(initial=0.0) < _UNKNOWN_FLOW)
    known = None
    if not all_known:
        known = np.all(np.isfinite(flow32) & (np.abs(flow32) < _UNKNOWN_FLOW), axis=2)
        flow32 = np.where(known[..., None], flow32, 0.0).astype(np.float32)
    magnitude, angle = cv2.cartToPolar(np.ascontiguousarray(flow32[..., 0]), np.ascontiguousarray(flow32[..., 1]))
    if max_magnitude is None:
        # Zero flow everywhere: any positive normaliser draws it white.
        max_magnitude = max(float(magnitude.max(initial=0.0)), 1e-6)
    angle_bin = (angle * (_ANGLE_BINS / (2 * np.pi))).astype(np.int32)  # angle in [0, 2 pi)
    np.minimum(angle_bin, _ANGLE_BINS - 1, out=angle_bin)
    # Rounded radius bin; bin RADIUS_BINS (the extra one) = beyond the normaliser (> ~1.004).
    radius_bin = (magnitude * ((_RADIUS_BINS - 1) / max_magnitude) + 0.5).astype(np.int32)
    np.minimum(radius_bin, _RADIUS_BINS, out=radius_bin)
    color = _lookup_rgb(_FLOW_TABLE, angle_bin * (_RADIUS_BINS + 1) + radius_bin)
    if known is not None:
        color[~known] = 0
    return color


def _label_table(palette: np.ndarray) -> np.ndarray:
    if palette.ndim != 2 or palette.shape[1] != 3 or not 1 <= len(palette) <= 255:
        raise ValueError(f"palette must have shape (K, 3) with 1 <= K <= 255, got {palette.shape}")
    table = np.zeros((256, 3), dtype=np.uint8)  # ids >= K and 255 (ignore) stay black
    table[: len(palette)] = palette
    return table


def colorize_labels(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Colour class ids with a palette.

    Args:
        labels: (H, W) integer class ids (uint8 preferred); 255 (ignore), ids >= K and ids outside
            0..255 are drawn black.
        palette: (K, 3) uint8 RGB, row k = colour of class k.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    if labels.ndim != 2:
        raise ValueError(f"labels must have shape (H, W), got {labels.shape}")
    table = _label_table(np.asarray(palette))
    if labels.dtype != np.uint8:
        labels = np.where((labels < 0) | (labels > 255), 255, labels).astype(np.uint8)
    return _lookup_rgb(_pack_rgb(table), labels)


# Dark grey (visible, probability 0) to magenta (occluded, probability 1).
_OCCLUSION_TABLE = _pack_rgb(np.rint(
    np.linspace(0.0, 1.0, 256)[:, None] * (np.array([255.0, 0.0, 255.0]) - 25.0) + 25.0
).astype(np.uint8))


def occlusion_to_color(probability: np.ndarray) -> np.ndarray:
    """Colour an occlusion probability map: dark grey at 0 to magenta at 1.

    Args:
        probability: (H, W) float in [0, 1] (values outside are clipped), or a bool mask.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    if probability.ndim != 2:
        raise ValueError(f"probability must have shape (H, W), got {probability.shape}")
    levels = np.clip(np.asarray(probability, dtype=np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return _lookup_rgb(_OCCLUSION_TABLE, levels)


def overlay(image: np.ndarray, color: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend ``color`` over ``image``: ``(1 - alpha) image + alpha color`` (cv2.addWeighted).

    Args:
        image: (H, W, 3) uint8.
        color: (H, W, 3) uint8, e.g. from ``colorize_labels``.
        alpha: weight of ``color`` in [0, 1].

    Returns:
        (H, W, 3) uint8.
    """
    if image.shape != color.shape or image.ndim != 3:
        raise ValueError(f"image {image.shape} and color {color.shape} must both be (H, W, 3) of one size")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return cv2.addWeighted(image, 1.0 - alpha, color, alpha, 0.0)
