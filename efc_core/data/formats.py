"""Flow and occlusion file formats (numpy + OpenCV, no torch).

* Middlebury ``.flo`` (Sintel, FlyingChairs, Middlebury): little-endian float32 magic 202021.25,
  int32 width, int32 height, then ``height * width`` interleaved float32 ``(u, v)`` pairs, row
  major. Middlebury marks unknown flow with values >= 1e9.
* KITTI flow PNG: 16-bit, 3 channels in RGB order ``(u, v, valid)`` with
  ``u = (value - 2^15) / 64``; OpenCV reads and writes BGR, so the channels are reversed here.
* Occlusion PNG (FlyingChairsOcc, Sintel): 8-bit, 255 = occluded.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from efc_core.errors import InputError

#: File suffixes read as images from a folder (calibration, verification, own video).
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")

FLO_MAGIC = np.float32(202021.25)
_FLO_HEADER_BYTES = 12
_KITTI_OFFSET = 2.0**15
_KITTI_SCALE = 64.0
#: Largest |flow| a KITTI PNG can hold: (2^16 - 1 - 2^15) / 64 px.
KITTI_MAX_FLOW = (65535 - _KITTI_OFFSET) / _KITTI_SCALE


def read_flo(path: str | Path) -> np.ndarray:
    """Read a Middlebury ``.flo`` file.

    Returns:
        (H, W, 2) float32 flow in pixels, ``[..., 0] = u`` (x), ``[..., 1] = v`` (y).

    Raises:
        ValueError: naming the file, on a wrong magic number, a bad size or truncated data.
    """
    raw = Path(path).read_bytes()
    if len(raw) < _FLO_HEADER_BYTES:
        raise ValueError(f"{path}: {len(raw)} bytes, too short for a .flo header")
    magic = np.frombuffer(raw, dtype="<f4", count=1)[0]
    if magic != FLO_MAGIC:
        raise ValueError(f"{path}: bad .flo magic {magic!r}, expected {FLO_MAGIC} (not a .flo file?)")
    width, height = (int(v) for v in np.frombuffer(raw, dtype="<i4", count=2, offset=4))
    if width <= 0 or height <= 0:
        raise ValueError(f"{path}: bad .flo size {width}x{height}")
    expected = _FLO_HEADER_BYTES + 8 * width * height
    if len(raw) != expected:
        kind = "truncated" if len(raw) < expected else "has trailing data"
        raise ValueError(f"{path}: .flo file {kind}: {len(raw)} bytes, expected {expected} for {width}x{height}")
    flow = np.frombuffer(raw, dtype="<f4", offset=_FLO_HEADER_BYTES).reshape(height, width, 2)
    return flow.astype(np.float32)  # native byte order, writable copy


def write_flo(path: str | Path, flow: np.ndarray) -> None:
    """Write (H, W, 2) flow in pixels as a Middlebury ``.flo`` file."""
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must have shape (H, W, 2), got {flow.shape}")
    height, width = flow.shape[:2]
    header = np.array([FLO_MAGIC], dtype="<f4").tobytes() + np.array([width, height], dtype="<i4").tobytes()
    Path(path).write_bytes(header + np.ascontiguousarray(flow, dtype="<f4").tobytes())


def _read_png(path: str | Path) -> np.ndarray:
    if not Path(path).is_file():
        raise FileNotFoundError(f"no such file: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"{path}: OpenCV cannot decode this image")
    return image


def read_kitti_flow(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a KITTI 16-bit flow PNG.

    Returns:
        ``(flow, valid)``: (H, W, 2) float32 pixels (0 where invalid) and (H, W) bool.

    Raises:
        ValueError: naming the file when it is not a 3-channel 16-bit PNG.
    """
    image = _read_png(path)
    if image.dtype != np.uint16 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{path}: expected a 3-channel 16-bit KITTI flow PNG, got {image.dtype} {image.shape}")
    valid = image[..., 0] > 0  # BGR: blue = KITTI's third channel
    flow = (image[..., 2:0:-1].astype(np.float32) - _KITTI_OFFSET) / _KITTI_SCALE  # (R, G) = (u, v)
    flow[~valid] = 0.0
    return flow, valid


def write_kitti_flow(path: str | Path, flow: np.ndarray, valid: np.ndarray | None = None) -> None:
    """Write flow as a KITTI 16-bit PNG (quantised to 1/64 px; invalid pixels written as 0).

    Args:
        flow: (H, W, 2) pixels; valid components must lie within +-``KITTI_MAX_FLOW`` (~512 px).
        valid: (H, W) bool; default all valid.
    """
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must have shape (H, W, 2), got {flow.shape}")
    valid = np.ones(flow.shape[:2], bool) if valid is None else valid.astype(bool)
    if valid.shape != flow.shape[:2]:
        raise ValueError(f"valid shape {valid.shape} != flow size {flow.shape[:2]}")
    valid_values = flow[valid]
    if valid_values.size:
        finite = np.isfinite(valid_values)
        worst = valid_values[~finite][0] if not finite.all() else np.abs(valid_values).max()
        if not finite.all() or worst > KITTI_MAX_FLOW:
            raise ValueError(f"flow value {worst} cannot be stored in a KITTI PNG (|flow| <= {KITTI_MAX_FLOW:.2f} px)")
    encoded = np.zeros(flow.shape[:2] + (3,), dtype=np.uint16)
    scaled = np.rint(flow.astype(np.float64) * _KITTI_SCALE + _KITTI_OFFSET)
    encoded[..., 2] = np.where(valid, scaled[..., 0], 0)  # R = u
    encoded[..., 1] = np.where(valid, scaled[..., 1], 0)  # G = v
    encoded[..., 0] = valid                                # B = valid
    if not cv2.imwrite(str(path), encoded):
        raise ValueError(f"{path}: OpenCV could not write a PNG there")


def read_occlusion_png(path: str | Path) -> np.ndarray:
    """Read an occlusion mask PNG (255 = occluded; any value above half range counts).

    Returns:
        (H, W) bool, True = occluded.
    """
    image = _read_png(path)
    if image.ndim == 3:
        image = image[..., 0]
    if not np.issubdtype(image.dtype, np.integer):
        raise ValueError(f"{path}: expected an integer PNG, got {image.dtype}")
    return image > np.iinfo(image.dtype).max // 2


def natural_sort_key(path: Path) -> list:
    """Sort key putting ``frame_2`` before ``frame_10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def list_images(folder: str | Path) -> list[Path]:
    """Image files (``IMAGE_SUFFIXES``) directly in ``folder``, in natural order (video frames)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} not found")
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=natural_sort_key)


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; ``InputError`` naming the file if unreadable."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"cannot read image {str(path)!r}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
