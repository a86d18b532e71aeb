"""Arrays -> ``sensor_msgs/Image`` field values, and back: outputs, and camera frames for tools and tests.

* ``pack_output`` / ``unpack_output``: the output encodings the node and the bag tools write
  (``mono8``, ``rgb8``, ``bgr8``, ``32FC1``, ``32FC2``), tight ``step``, little-endian.
* ``encode_camera``: (H, W, 3) RGB as a camera driver would send it in any encoding of
  ``image_decode.RAW_ENCODINGS`` (synthetic bags, benchmarks, the table-driven decoder tests).

The message classes (rclpy or rosbags) are filled by their callers; nothing here imports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from efc_core.edge.image_decode import RAW_ENCODINGS
from efc_core.errors import InputError

#: Output encoding -> (dtype, channels).
OUTPUT_ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "mono8": (np.dtype(np.uint8), 1),
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "32FC1": (np.dtype("<f4"), 1),
    "32FC2": (np.dtype("<f4"), 2),
}


@dataclass(frozen=True)
class PackedImage:
    """``sensor_msgs/Image`` field values: ``data`` is a flat uint8 array of ``height * step`` bytes."""

    height: int
    width: int
    encoding: str
    step: int
    data: np.ndarray
    is_bigendian: int = 0


def pack_output(values: np.ndarray, encoding: str) -> PackedImage:
    """Lay an output array out as a tight little-endian ``Image``.

    Args:
        values: (H, W) or (H, W, C): ``mono8`` (H, W) uint8, ``rgb8``/``bgr8`` (H, W, 3) uint8,
            ``32FC1`` (H, W) float, ``32FC2`` (H, W, 2) float (converted to float32).
        encoding: a key of ``OUTPUT_ENCODINGS``.

    Raises:
        ValueError: unknown encoding, or a shape / dtype that does not match it.
    """
    layout = OUTPUT_ENCODINGS.get(encoding)
    if layout is None:
        raise ValueError(f"unsupported output encoding {encoding!r}; expected one of {sorted(OUTPUT_ENCODINGS)}")
    dtype, channels = layout
    shaped = values[:, :, None] if values.ndim == 2 else values
    if shaped.ndim != 3 or shaped.shape[2] != channels:
        expected = "(H, W)" if channels == 1 else f"(H, W, {channels})"
        raise ValueError(f"{encoding} needs shape {expected}, got {values.shape}")
    if dtype.kind == "u" and values.dtype != np.uint8:
        raise ValueError(f"{encoding} needs uint8 values, got {values.dtype}")
    height, width = shaped.shape[:2]
    data = np.ascontiguousarray(shaped, dtype=dtype).reshape(-1).view(np.uint8)
    return PackedImage(height, width, encoding, width * channels * dtype.itemsize, data)


def unpack_output(message: Any) -> np.ndarray:
    """Read an output ``Image`` (any object with its fields) back: (H, W) or (H, W, C) array.

    Raises:
        InputError: not an output encoding, or data shorter than ``height * step``.
    """
    layout = OUTPUT_ENCODINGS.get(message.encoding)
    if layout is None:
        raise InputError(f"unsupported output encoding {message.encoding!r}", kind="encoding")
    dtype, channels = layout
    if message.is_bigendian:
        dtype = dtype.newbyteorder(">")
    height, width, step = int(message.height), int(message.width), int(message.step)
    buffer = np.frombuffer(message.data, dtype=np.uint8)
    if buffer.size < height * step or step < width * channels * dtype.itemsize:
        raise InputError(f"{message.encoding} image {width}x{height}: step {step} and {buffer.size} bytes "
                         f"are too small", kind="size")
    rows = buffer[: height * step].reshape(height, step)
    pixels = np.ascontiguousarray(rows[:, : width * channels * dtype.itemsize]).view(dtype)
    pixels = pixels.reshape(height, width, channels)
    return pixels[:, :, 0] if channels == 1 else pixels


_RGB_TO_YCBCR_601 = np.array([[0.257, 0.504, 0.098], [-0.148, -0.291, 0.439], [0.439, -0.368, -0.071]], np.float32)
#: Bayer name -> colour channel (0 R, 1 G, 2 B) at (row % 2, column % 2) of the top-left 2x2 block.
_BAYER_ORDER = {"rggb": (0, 1, 1, 2), "bggr": (2, 1, 1, 0), "gbrg": (1, 2, 0, 1), "grbg": (1, 0, 2, 1)}


def _rgb_to_yuv422(rgb: np.ndarray, *, uyvy: bool) -> np.ndarray:
    """(H, W, 3) RGB -> (H, W, 2) packed 4:2:2, chroma averaged over each horizontal pixel pair."""
    if rgb.shape[1] % 2:
        raise ValueError(f"yuv422 needs an even width, got {rgb.shape[1]}")
    # BT.601 video range (Y in 16..235), the convention of cameras and of OpenCV's 4:2:2 decoders.
    yuv = rgb.astype(np.float32) @ _RGB_TO_YCBCR_601.T + np.array([16.0, 128.0, 128.0], np.float32)
    luma = yuv[:, :, 0]
    chroma = (yuv[:, 0::2, 1:] + yuv[:, 1::2, 1:]) / 2.0  # (H, W/2, 2): U, V per pair
    u, v, y0, y1 = chroma[..., 0], chroma[..., 1], luma[:, 0::2], luma[:, 1::2]
    packed = np.stack((u, y0, v, y1) if uyvy else (y0, u, y1, v), axis=-1)  # (H, W/2, 4)
    return np.clip(np.rint(packed), 0, 255).astype(np.uint8).reshape(rgb.shape[0], rgb.shape[1], 2)


def _bayer_mosaic(rgb: np.ndarray, order: str) -> np.ndarray:
    """(H, W, 3) RGB -> (H, W, 1): each pixel keeps the one colour the Bayer pattern gives it."""
    mosaic = np.empty(rgb.shape[:2], rgb.dtype)
    for index, channel in enumerate(_BAYER_ORDER[order]):
        row, column = divmod(index, 2)
        mosaic[row::2, column::2] = rgb[row::2, column::2, channel]
    return mosaic[:, :, None]


def _camera_pixels(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """(H, W, C) uint8 values of ``encoding`` before any 16-bit widening."""
    base = encoding[:-2] + "8" if encoding.endswith("16") else encoding
    if base in ("rgb8", "rgba8", "bgr8", "bgra8", "8UC3", "8UC4"):
        code = {"rgb8": None, "rgba8": cv2.COLOR_RGB2RGBA, "bgr8": cv2.COLOR_RGB2BGR, "8UC3": cv2.COLOR_RGB2BGR,
                "bgra8": cv2.COLOR_RGB2BGRA, "8UC4": cv2.COLOR_RGB2BGRA}[base]
        return rgb if code is None else cv2.cvtColor(rgb, code)
    if base == "mono8":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[:, :, None]
    if base.startswith("bayer_"):
        return _bayer_mosaic(rgb, base[len("bayer_"):-1])
    return _rgb_to_yuv422(rgb, uyvy=encoding in ("yuv422", "uyvy"))


def encode_camera(rgb: np.ndarray, encoding: str, *, step: int | None = None,
                  is_bigendian: bool = False) -> PackedImage:
    """Encode (H, W, 3) uint8 RGB as a camera would send it in ``encoding``.

    16-bit encodings carry ``257 * v`` (so the decoder's rule gives ``v`` back); ``step`` larger
    than the tight row size pads each row with zeros.

    Raises:
        ValueError: ``rgb`` not (H, W, 3) uint8, unknown encoding, odd 4:2:2 width, step too small.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    if encoding not in RAW_ENCODINGS:
        raise ValueError(f"cannot encode camera images as {encoding!r}; expected one of {sorted(RAW_ENCODINGS)}")
    pixels = _camera_pixels(rgb, encoding)
    if RAW_ENCODINGS[encoding].depth == 2:
        wide = pixels.astype(np.uint16) * np.uint16(257)
        pixels = wide.astype(">u2" if is_bigendian else "<u2").view(np.uint8)
    height, width = rgb.shape[:2]
    row_bytes = pixels.shape[1] * pixels.shape[2]
    step = row_bytes if step is None else step
    if step < row_bytes:
        raise ValueError(f"step {step} < row size {row_bytes}")
    padded = np.zeros((height, step), np.uint8)
    padded[:, :row_bytes] = pixels.reshape(height, row_bytes)
    return PackedImage(height, width, encoding, step, padded.reshape(-1), int(bool(is_bigendian)))
