"""The one decoder of camera images: ``sensor_msgs`` Image / CompressedImage fields -> (H, W, 3) uint8 RGB.

The node, the bag tools and the rosbag training dataset all decode here, so training and serving
see the same pixels. ``decode_image`` takes any object with the message's attributes (rclpy
messages, rosbags' deserialised messages); ``decode_raw`` takes the fields themselves.

Encoding table (``RAW_ENCODINGS``), one rule each:

* ``rgb8`` ``bgr8`` ``rgba8`` ``bgra8`` ``mono8``: as named; alpha is dropped, mono is repeated.
* ``8UC3`` / ``8UC4``: treated as ``bgr8`` / ``bgra8``, as cv_bridge does (OpenCV's channel order).
* 16 bits (``mono16``, ``rgb16``, ``bgr16``, ``rgba16``, ``bgra16``, ``bayer_*16``): byte order
  from ``is_bigendian``; brought to 8 bits by the fixed rounding ``v8 = round(v16 * 255 / 65535)``
  (65535 -> 255, ``257 * k`` -> ``k``). Fixed, not stretched per image, so brightness stays
  comparable between frames (the photometric loss and the flow need that).
* ``bayer_rggb8`` ``bayer_bggr8`` ``bayer_gbrg8`` ``bayer_grbg8`` (and ``*16``): the name gives
  the colours of the top-left 2x2 block; demosaiced by OpenCV (bilinear).
* ``yuv422`` = ``uyvy`` (U Y0 V Y1) and ``yuv422_yuy2`` = ``yuyv`` (Y0 U Y1 V): BT.601, even width.

Refused (``InputError`` kind ``encoding``): every other name, in particular the generic
``8UC1``/``16UC1``/``32FC1``... which carry depth, disparity, labels or floats, not intensity.
Frames declaring more than ``max_pixels`` are refused before any pixel is allocated; corrupt
JPEG/PNG data is refused (kind ``corrupt_image``) unless the caller accepts it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from efc_core.edge.compressed_decode import decode_compressed
from efc_core.edge.input_limits import DEFAULT_MAX_IMAGE_PIXELS, check_pixel_count
from efc_core.errors import InputError

#: ``image_format`` of frames decoded from a CompressedImage (pairing never mixes formats).
COMPRESSED_FORMAT = "compressed"


@dataclass(frozen=True)
class RawLayout:
    """How an encoding lays pixels out in ``Image.data`` and how they become RGB.

    channels: values per pixel in the buffer (2 for packed 4:2:2). depth: bytes per value.
    to_rgb: ``cv2.cvtColor`` code applied after the 8-bit step, None when already RGB.
    """

    channels: int
    depth: int
    to_rgb: int | None


def _bayer(code: int, depth: int) -> RawLayout:
    return RawLayout(1, depth, code)


#: The full encoding table (see the module docstring for the rule of each).
RAW_ENCODINGS: dict[str, RawLayout] = {
    "rgb8": RawLayout(3, 1, None),
    "bgr8": RawLayout(3, 1, cv2.COLOR_BGR2RGB),
    "rgba8": RawLayout(4, 1, cv2.COLOR_RGBA2RGB),
    "bgra8": RawLayout(4, 1, cv2.COLOR_BGRA2RGB),
    "8UC3": RawLayout(3, 1, cv2.COLOR_BGR2RGB),
    "8UC4": RawLayout(4, 1, cv2.COLOR_BGRA2RGB),
    "mono8": RawLayout(1, 1, cv2.COLOR_GRAY2RGB),
    "mono16": RawLayout(1, 2, cv2.COLOR_GRAY2RGB),
    "rgb16": RawLayout(3, 2, None),
    "bgr16": RawLayout(3, 2, cv2.COLOR_BGR2RGB),
    "rgba16": RawLayout(4, 2, cv2.COLOR_RGBA2RGB),
    "bgra16": RawLayout(4, 2, cv2.COLOR_BGRA2RGB),
    "bayer_rggb8": _bayer(cv2.COLOR_BayerRGGB2RGB, 1),
    "bayer_bggr8": _bayer(cv2.COLOR_BayerBGGR2RGB, 1),
    "bayer_gbrg8": _bayer(cv2.COLOR_BayerGBRG2RGB, 1),
    "bayer_grbg8": _bayer(cv2.COLOR_BayerGRBG2RGB, 1),
    "bayer_rggb16": _bayer(cv2.COLOR_BayerRGGB2RGB, 2),
    "bayer_bggr16": _bayer(cv2.COLOR_BayerBGGR2RGB, 2),
    "bayer_gbrg16": _bayer(cv2.COLOR_BayerGBRG2RGB, 2),
    "bayer_grbg16": _bayer(cv2.COLOR_BayerGRBG2RGB, 2),
    "yuv422": RawLayout(2, 1, cv2.COLOR_YUV2RGB_UYVY),  # ROS "yuv422" is UYVY byte order
    "uyvy": RawLayout(2, 1, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": RawLayout(2, 1, cv2.COLOR_YUV2RGB_YUY2),
    "yuyv": RawLayout(2, 1, cv2.COLOR_YUV2RGB_YUY2),
}

SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(RAW_ENCODINGS)
_PACKED_422 = frozenset({"yuv422", "uyvy", "yuv422_yuy2", "yuyv"})
#: Generic OpenCV-style encodings: depth, disparity, label or float images, not camera intensity.
_GENERIC_ENCODING = re.compile(r"^(8|16|32|64)(U|S|F)C([0-9]+)$")


def bytes_per_pixel(encoding: str) -> int | None:
    """Bytes one pixel of ``encoding`` takes in ``Image.data``, or None for an unknown encoding.

    Camera encodings from ``RAW_ENCODINGS`` (channels * depth; 2 for packed 4:2:2), generic
    OpenCV-style names (``32FC2`` = 4 bytes * 2 channels) from their name: the decoder refuses
    those as camera input, but outputs and ground truth are written in them, and the bag integrity
    check compares every image's ``step`` with ``width * bytes_per_pixel``.
    """
    layout = RAW_ENCODINGS.get(encoding)
    if layout is not None:
        return layout.channels * layout.depth
    generic = _GENERIC_ENCODING.match(encoding or "")
    if generic is None:
        return None
    return int(generic.group(1)) // 8 * int(generic.group(3))


def check_encoding(encoding: str) -> RawLayout:
    """The layout of ``encoding``; ``InputError`` (kind ``encoding``) unless it is in ``RAW_ENCODINGS``."""
    layout = RAW_ENCODINGS.get(encoding)
    if layout is not None:
        return layout
    if _GENERIC_ENCODING.match(encoding or ""):
        raise InputError(
            f"encoding {encoding!r} is not a camera intensity image (depth, disparity, label or float data); "
            f"expected one of {', '.join(SUPPORTED_ENCODINGS)}", kind="encoding")
    raise InputError(
        f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}", kind="encoding")


def sixteen_to_eight_bits(values: np.ndarray) -> np.ndarray:
    """The one 16 -> 8 bit rule: ``round(v * 255 / 65535)`` in integers (uint16 array -> uint8, same shape)."""
    return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def decode_raw(
    data: Any,
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
        data: the row-major buffer (bytes, memoryview, ``array('B')``, uint8 array), at least
            ``height * step`` bytes (extra bytes are ignored).
        height, width: image size in pixels.
        step: bytes per row, ``>= width * channels * bytes_per_channel`` (rows may be padded).
        encoding: a key of ``RAW_ENCODINGS``.
        is_bigendian: byte order of 16-bit encodings (ignored for 8-bit ones).
        max_pixels: largest ``height * width`` accepted (0: no limit).

    Returns:
        (height, width, 3) uint8 RGB. For ``rgb8`` this is a view on ``data`` (no copy; strided
        when rows are padded), read-only when ``data`` is.

    Raises:
        InputError: unsupported or non-intensity encoding (kind ``encoding``), more than
        ``max_pixels`` (``too_large``), zero size, odd 4:2:2 width, step too small or data
        shorter than ``height * step`` (``size``).
    """
    layout = check_encoding(encoding)
    if height <= 0 or width <= 0:
        raise InputError(f"image has zero size: {width}x{height}", kind="size")
    check_pixel_count(height, width, max_pixels)
    row_bytes = width * layout.channels * layout.depth
    if step < row_bytes:
        raise InputError(f"step {step} is smaller than width*bytes_per_pixel = {row_bytes} for {encoding} "
                         f"(rows too small)", kind="size")
    if encoding in _PACKED_422 and width % 2:
        raise InputError(f"{encoding} needs an even width (two pixels share chroma), got {width}", kind="size")
    buffer = np.frombuffer(data, dtype=np.uint8)
    if buffer.size < height * step:
        raise InputError(f"image data has {buffer.size} bytes, expected height*step = {height}*{step} = "
                         f"{height * step} (data too small)", kind="size")

    # Rows of `step` bytes, of which the first `row_bytes` are pixels: a strided view, no copy.
    rows = buffer[: height * step].reshape(height, step)[:, :row_bytes]
    if layout.depth == 1:
        pixels = rows.reshape(height, width, layout.channels)
    else:
        dtype = np.dtype(">u2" if is_bigendian else "<u2")
        # A 16-bit view needs 2-byte aligned row starts, which odd padding breaks.
        if step % 2:
            rows = np.ascontiguousarray(rows)
        pixels = sixteen_to_eight_bits(rows.view(dtype).reshape(height, width, layout.channels))
    if layout.to_rgb is None:
        return pixels
    source = pixels[:, :, 0] if layout.channels == 1 else pixels
    return cv2.cvtColor(np.ascontiguousarray(source), layout.to_rgb)


@dataclass(frozen=True)
class DecodedImage:
    """A decoded camera frame.

    rgb: (H, W, 3) uint8 RGB. image_format: the raw encoding, or ``COMPRESSED_FORMAT``.
    warnings: what a JPEG/PNG decoder reported (non-empty only when the caller accepted a corrupt
    frame: its pixels are partly made up).
    """

    rgb: np.ndarray
    image_format: str
    warnings: tuple[str, ...] = ()


def is_compressed(message: Any) -> bool:
    """True for a ``CompressedImage`` (it has ``format`` and no ``encoding``), False for an ``Image``."""
    return not hasattr(message, "encoding") and hasattr(message, "format")


def decode_image(message: Any, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                 allow_corrupt: bool = False) -> DecodedImage:
    """Decode a ``sensor_msgs/Image`` or ``CompressedImage`` (rclpy or rosbags object) to RGB.

    Args:
        message: an object with the Image fields (``height``, ``width``, ``step``, ``encoding``,
            ``is_bigendian``, ``data``) or the CompressedImage fields (``format``, ``data``).
        max_pixels: largest ``height * width`` accepted (0: no limit), checked before decoding.
        allow_corrupt: return a JPEG/PNG frame the decoder reports as corrupt (with its warnings)
            instead of refusing it.

    Raises:
        InputError: see ``decode_raw`` and ``compressed_decode.decode_compressed``; a corrupt
        compressed frame is kind ``corrupt_image`` unless ``allow_corrupt``.
    """
    if is_compressed(message):
        rgb, warnings = decode_compressed(message.data, str(message.format), max_pixels=max_pixels)
        if warnings and not allow_corrupt:
            raise InputError(f"corrupt {len(message.data)}-byte image: {'; '.join(warnings)}", kind="corrupt_image")
        return DecodedImage(rgb, COMPRESSED_FORMAT, warnings)
    rgb = decode_raw(message.data, height=int(message.height), width=int(message.width), step=int(message.step),
                     encoding=str(message.encoding), is_bigendian=bool(message.is_bigendian), max_pixels=max_pixels)
    return DecodedImage(rgb, str(message.encoding))
