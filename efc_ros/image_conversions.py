"""sensor_msgs Image / CompressedImage <-> numpy, without cv_bridge.

Decoding builds a numpy view on the message buffer (zero-copy where the layout allows: ``rgb8``
without row padding is returned as a read-only view) and leaves colour conversion to
``cv2.cvtColor``. Encoding writes the standard ``sensor_msgs/image_encodings`` strings with a
tight ``step`` and ``is_bigendian = 0``.

Everything here is plain numpy/OpenCV plus the message classes, so it runs and is tested on a
machine without cv_bridge; where cv_bridge is installed a test checks that both agree.

Input integrity: only camera intensity encodings are decoded (depth, float and generic label
encodings such as ``16UC1``/``32FC1``/``8UC1`` are refused); frames declaring more than
``max_pixels`` are refused before any pixel is allocated (for PNG/JPEG from the header, so a
decompression bomb costs nothing); corrupt JPEG/PNG data that the decoders only warn about is
detected (see ``compressed_image``). Every refusal is an ``InputError`` whose ``kind`` names it.
"""

from __future__ import annotations

import array
import re
import sys

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from efc_core.errors import InputError
from efc_ros.input_checks import (  # noqa: F401  (re-exported: the node and bag tools import them from here)
    DEFAULT_MAX_IMAGE_PIXELS, DecodedImage, check_pixel_count, compressed_image, compressed_image_size, error_kind,
)

#: encoding -> (channels, bytes per channel) of the raw layout in ``Image.data``.
_RAW_LAYOUTS: dict[str, tuple[int, int]] = {
    "rgb8": (3, 1),
    "bgr8": (3, 1),
    "rgba8": (4, 1),
    "bgra8": (4, 1),
    "mono8": (1, 1),
    "8UC3": (3, 1),
    "yuv422": (2, 1),  # UYVY: U Y0 V Y1, two bytes per pixel
    "uyvy": (2, 1),
    "yuv422_yuy2": (2, 1),  # YUYV: Y0 U Y1 V
    "yuyv": (2, 1),
    "mono16": (1, 2),
    "rgb16": (3, 2),
    "bgr16": (3, 2),
    "rgba16": (4, 2),
    "bgra16": (4, 2),
}

#: encoding -> OpenCV conversion to RGB (None: already RGB).
_TO_RGB: dict[str, int | None] = {
    "rgb8": None,
    "8UC3": None,  # cv_bridge treats 8UC3 as bgr8 for display, but its meaning is undefined: keep as is
    "rgb16": None,
    "bgr8": cv2.COLOR_BGR2RGB,
    "bgr16": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "rgba16": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
    "bgra16": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
    "mono16": cv2.COLOR_GRAY2RGB,
    "yuv422": cv2.COLOR_YUV2RGB_UYVY,
    "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2,
    "yuyv": cv2.COLOR_YUV2RGB_YUY2,
}

SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_RAW_LAYOUTS)

#: Generic OpenCV-style encodings (``16UC1``, ``32FC1``, ``8UC1`` ...): depth, disparity, label or
#: float images, not camera intensity. ``8UC3`` stays accepted (drivers use it for colour).
_GENERIC_ENCODING = re.compile(r"^(8|16|32|64)(U|S|F)C[0-9]+$")


def check_encoding(encoding: str) -> None:
    """``InputError`` (kind ``encoding``) unless ``encoding`` is a camera image encoding decoded here."""
    if encoding in _RAW_LAYOUTS:
        return
    if _GENERIC_ENCODING.match(encoding or ""):
        raise InputError(
            f"encoding {encoding!r} is not a camera intensity image (depth, disparity, label or float data); "
            f"expected one of {', '.join(SUPPORTED_ENCODINGS)}", kind="encoding")
    raise InputError(
        f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}", kind="encoding")


#: Output encodings this module writes: numpy dtype and channel count of each.
_OUTPUT_LAYOUTS: dict[str, tuple[np.dtype, int]] = {
    "mono8": (np.dtype(np.uint8), 1),
    "rgb8": (np.dtype(np.uint8), 3),
    "32FC1": (np.dtype("<f4"), 1),
    "32FC2": (np.dtype("<f4"), 2),
}

_HOST_IS_BIG_ENDIAN = sys.byteorder == "big"


def raw_to_rgb(
    data: "bytes | bytearray | memoryview | array.array | np.ndarray",
    *,
    height: int,
    width: int,
    step: int,
    encoding: str,
    is_bigendian: bool = False,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> np.ndarray:
    """Decode a raw image buffer laid out as in ``sensor_msgs/Image`` to RGB.

    Args:
        data: the row-major buffer, at least ``height * step`` bytes (extra bytes are ignored).
        height, width: image size in pixels.
        step: bytes per row, ``>= width * channels * bytes_per_channel`` (rows may be padded).
        encoding: one of ``SUPPORTED_ENCODINGS``.
        is_bigendian: byte order of 16-bit encodings (ignored for 8-bit ones).
        max_pixels: largest ``height * width`` accepted (0: no limit).

    Returns:
        (height, width, 3) uint8 RGB. 16-bit inputs are scaled by 255/65535. For ``rgb8`` without
        padding this is a read-only view on ``data``.

    Raises:
        InputError: unsupported or non-intensity encoding, zero size, more than ``max_pixels``,
        step too small or data shorter than ``height * step``.
    """
    check_encoding(encoding)
    channels, depth = _RAW_LAYOUTS[encoding]
    if height <= 0 or width <= 0:
        raise InputError(f"image has zero size: {width}x{height}", kind="size")
    check_pixel_count(height, width, max_pixels)
    row_bytes = width * channels * depth
    if step < row_bytes:
        raise InputError(f"step {step} is smaller than width*bytes_per_pixel = {row_bytes} for {encoding}", kind="size")
    if encoding in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv") and width % 2:
        raise InputError(f"{encoding} needs an even width (two pixels share chroma), got {width}", kind="size")
    buffer = np.frombuffer(data, dtype=np.uint8)
    if buffer.size < height * step:
        raise InputError(
            f"image data has {buffer.size} bytes, expected height*step = {height}*{step} = {height * step}",
            kind="size")

    # Rows of `step` bytes, of which the first `row_bytes` are pixels: a strided view, no copy.
    rows = buffer[: height * step].reshape(height, step)[:, :row_bytes]
    if depth == 1:
        pixels = rows.reshape(height, width, channels)
    else:
        dtype = np.dtype(">u2" if is_bigendian else "<u2")
        # The 16-bit view needs the row start aligned to the element size, which padding may break.
        if step % 2:
            rows = np.ascontiguousarray(rows)
        pixels = rows.view(dtype).reshape(height, width, channels)
        # 65535 -> 255 with rounding; cv_bridge scales 16 -> 8 bit the same way.
        pixels = ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)

    conversion = _TO_RGB[encoding]
    if conversion is None:
        return pixels
    source = pixels[:, :, 0] if channels == 1 else pixels
    return cv2.cvtColor(np.ascontiguousarray(source), conversion)


def image_msg_to_rgb(msg: Image, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` to (H, W, 3) uint8 RGB (see ``raw_to_rgb``); ``InputError`` on bad input."""
    return raw_to_rgb(
        msg.data,
        height=int(msg.height),
        width=int(msg.width),
        step=int(msg.step),
        encoding=msg.encoding,
        is_bigendian=bool(msg.is_bigendian),
        max_pixels=max_pixels,
    )


def compressed_msg_to_rgb(msg: CompressedImage, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                          allow_corrupt: bool = False) -> np.ndarray:
    """Decode a jpeg/png ``sensor_msgs/CompressedImage`` with ``cv2.imdecode`` to (H, W, 3) uint8 RGB.

    ``format`` (e.g. ``"jpeg"``, ``"png"`` or image_transport's ``"bgr8; jpeg compressed bgr8"``)
    is only checked for the compression kind: the bytes themselves say what they are. A stream the
    decoder reports as corrupt is an ``InputError`` (kind ``corrupt_image``) unless ``allow_corrupt``.
    """
    decoded = compressed_image(msg, max_pixels=max_pixels)
    if decoded.warnings and not allow_corrupt:
        raise InputError(f"corrupt {len(msg.data)}-byte image: {'; '.join(decoded.warnings)}", kind="corrupt_image")
    return decoded.rgb


def _byte_array(values: np.ndarray) -> array.array:
    """Copy a contiguous array's bytes into the ``array('B')`` the message field stores.

    Assigning an ``array('B')`` skips the per-element validation rclpy runs on other sequences.
    """
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(values).data.cast("B"))
    return out


def array_to_image_msg(values: np.ndarray, encoding: str, header: Header) -> Image:
    """Wrap an output array in a ``sensor_msgs/Image``.

    Args:
        values: (H, W) or (H, W, C) array; C must match ``encoding``: ``mono8`` (H, W) uint8,
            ``rgb8`` (H, W, 3) uint8, ``32FC1`` (H, W) float, ``32FC2`` (H, W, 2) float.
        encoding: one of ``mono8``, ``rgb8``, ``32FC1``, ``32FC2``.
        header: copied into the message (the input image's stamp and frame_id).

    Returns:
        the message with ``step = W * C * itemsize`` and ``is_bigendian = 0`` (data little-endian).
    """
    layout = _OUTPUT_LAYOUTS.get(encoding)
    if layout is None:
        raise ValueError(f"unsupported output encoding {encoding!r}; expected one of {sorted(_OUTPUT_LAYOUTS)}")
    dtype, channels = layout
    if values.ndim == 2:
        values = values[:, :, None]
    if values.ndim != 3 or values.shape[2] != channels:
        expected = "(H, W)" if channels == 1 else f"(H, W, {channels})"
        raise ValueError(f"{encoding} needs shape {expected}, got {values.shape}")
    if dtype.kind == "u" and values.dtype != np.uint8:
        raise ValueError(f"{encoding} needs uint8 values, got {values.dtype}")
    height, width = values.shape[:2]
    msg = Image()
    msg.header = header
    msg.height = height
    msg.width = width
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = width * channels * dtype.itemsize
    msg.data = _byte_array(values.astype(dtype, copy=False))
    return msg


def image_msg_to_array(msg: Image) -> np.ndarray:
    """Read back one of this module's output encodings: (H, W) or (H, W, C) array (tests, tools)."""
    layout = _OUTPUT_LAYOUTS.get(msg.encoding)
    if layout is None:
        raise InputError(f"unsupported output encoding {msg.encoding!r}")
    dtype, channels = layout
    if msg.is_bigendian:
        dtype = dtype.newbyteorder(">")
    rows = np.frombuffer(msg.data, dtype=np.uint8)[: msg.height * msg.step].reshape(msg.height, msg.step)
    pixels = np.ascontiguousarray(rows[:, : msg.width * channels * dtype.itemsize]).view(dtype)
    pixels = pixels.reshape(msg.height, msg.width, channels)
    return pixels[:, :, 0] if channels == 1 else pixels


def rgb_to_image_msg(rgb: np.ndarray, encoding: str, header: Header, *, step: int | None = None) -> Image:
    """Encode (H, W, 3) uint8 RGB as a camera would: rgb8, bgr8, rgba8, bgra8, mono8, yuv422, yuv422_yuy2.

    ``step`` larger than the tight row size pads each row with zeros. Used by tests, the benchmark
    and the synthetic bag tools to play a camera.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    if encoding in ("rgb8", "8UC3"):
        pixels = rgb
    elif encoding == "bgr8":
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif encoding == "rgba8":
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)
    elif encoding == "bgra8":
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
    elif encoding in ("mono8", "8UC1"):
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[:, :, None]
    elif encoding in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv"):
        pixels = _rgb_to_yuv422(rgb, uyvy=encoding in ("yuv422", "uyvy"))
    else:
        raise ValueError(f"cannot encode camera images as {encoding!r}")
    height, width = pixels.shape[:2]
    row_bytes = width * (pixels.shape[2] if pixels.ndim == 3 else 1)
    step = row_bytes if step is None else step
    if step < row_bytes:
        raise ValueError(f"step {step} < row size {row_bytes}")
    padded = np.zeros((height, step), np.uint8)
    padded[:, :row_bytes] = pixels.reshape(height, row_bytes)
    msg = Image()
    msg.header = header
    msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step = height, width, encoding, 0, step
    msg.data = _byte_array(padded)
    return msg


_RGB_TO_YCBCR_601 = np.array(
    [[0.257, 0.504, 0.098], [-0.148, -0.291, 0.439], [0.439, -0.368, -0.071]], np.float32
)


def _rgb_to_yuv422(rgb: np.ndarray, *, uyvy: bool) -> np.ndarray:
    """(H, W, 3) RGB -> (H, W, 2) packed 4:2:2, chroma averaged over each horizontal pixel pair."""
    if rgb.shape[1] % 2:
        raise ValueError(f"yuv422 needs an even width, got {rgb.shape[1]}")
    # BT.601 video range (Y in 16..235), the convention of cameras and of OpenCV's 4:2:2 decoders.
    yuv = rgb.astype(np.float32) @ _RGB_TO_YCBCR_601.T + np.array([16.0, 128.0, 128.0], np.float32)
    luma = yuv[:, :, 0]
    chroma = (yuv[:, 0::2, 1:] + yuv[:, 1::2, 1:]) / 2.0  # (H, W/2, 2): U, V per pair
    u, v, y0, y1 = chroma[..., 0], chroma[..., 1], luma[:, 0::2], luma[:, 1::2]
    packed = np.stack((u, y0, v, y1) if uyvy else (y0, u, y1, v), axis=-1)  # (H, W/2, 4) bytes per pixel pair
    return np.clip(np.rint(packed), 0, 255).astype(np.uint8).reshape(rgb.shape[0], rgb.shape[1], 2)


def rgb_to_compressed_msg(rgb: np.ndarray, fmt: str, header: Header, *, jpeg_quality: int = 95) -> CompressedImage:
    """Encode (H, W, 3) uint8 RGB as a ``CompressedImage`` (``fmt`` ``"png"`` or ``"jpeg"``) with ``cv2.imencode``."""
    extension = {"png": ".png", "jpeg": ".jpg", "jpg": ".jpg"}.get(fmt)
    if extension is None:
        raise ValueError(f"unsupported compression {fmt!r}; expected png or jpeg")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if extension == ".jpg" else []
    ok, encoded = cv2.imencode(extension, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"cv2.imencode failed for {fmt}")
    msg = CompressedImage()
    msg.header = header
    msg.format = "jpeg" if extension == ".jpg" else "png"
    msg.data = _byte_array(encoded)
    return msg
