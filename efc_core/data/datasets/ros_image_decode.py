"""Decode deserialised ``sensor_msgs`` Image / CompressedImage messages to RGB with numpy + OpenCV.

Works on the message objects ``rosbags`` deserialises (attributes ``height``, ``width``,
``encoding``, ``is_bigendian``, ``step``, ``data`` / ``format``, ``data``), so no ROS install
(cv_bridge) is needed to read a bag. 16-bit encodings are brought to 8 bits by dropping the low
byte: a fixed mapping keeps brightness comparable between frames, which the photometric loss needs
(a per-image stretch would not).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from efc_core.errors import InputError

#: encoding -> (channels, bytes per channel, OpenCV conversion to RGB or None for none)
_RAW_ENCODINGS: dict[str, tuple[int, int, int | None]] = {
    "rgb8": (3, 1, None),
    "bgr8": (3, 1, cv2.COLOR_BGR2RGB),
    "8UC3": (3, 1, cv2.COLOR_BGR2RGB),  # OpenCV's default channel order
    "rgba8": (4, 1, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, 1, cv2.COLOR_BGRA2RGB),
    "8UC4": (4, 1, cv2.COLOR_BGRA2RGB),
    "mono8": (1, 1, cv2.COLOR_GRAY2RGB),
    "8UC1": (1, 1, cv2.COLOR_GRAY2RGB),
    "mono16": (1, 2, cv2.COLOR_GRAY2RGB),
    "16UC1": (1, 2, cv2.COLOR_GRAY2RGB),
    "rgb16": (3, 2, None),
    "bgr16": (3, 2, cv2.COLOR_BGR2RGB),
    # The Bayer names give the colour order of the top-left 2x2 block, as in OpenCV's *RGGB* codes.
    "bayer_rggb8": (1, 1, cv2.COLOR_BayerRGGB2RGB),
    "bayer_bggr8": (1, 1, cv2.COLOR_BayerBGGR2RGB),
    "bayer_gbrg8": (1, 1, cv2.COLOR_BayerGBRG2RGB),
    "bayer_grbg8": (1, 1, cv2.COLOR_BayerGRBG2RGB),
    "yuv422": (2, 1, cv2.COLOR_YUV2RGB_UYVY),       # ROS "yuv422" is UYVY byte order
    "uyvy": (2, 1, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": (2, 1, cv2.COLOR_YUV2RGB_YUY2),
    "yuyv": (2, 1, cv2.COLOR_YUV2RGB_YUY2),
}

SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_RAW_ENCODINGS)
IMAGE_MSGTYPE = "sensor_msgs/msg/Image"
COMPRESSED_MSGTYPE = "sensor_msgs/msg/CompressedImage"


def decode_raw_image(message: Any) -> np.ndarray:
    """``sensor_msgs/msg/Image`` -> (H, W, 3) uint8 RGB; ``InputError`` for unknown encodings or bad sizes."""
    encoding = str(message.encoding)
    if encoding not in _RAW_ENCODINGS:
        raise InputError(f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    channels, depth, conversion = _RAW_ENCODINGS[encoding]
    height, width, step = int(message.height), int(message.width), int(message.step)
    row_bytes = width * channels * depth
    data = np.frombuffer(memoryview(message.data), dtype=np.uint8)
    if step < row_bytes or data.size < height * step:
        raise InputError(f"{encoding} image {width}x{height}: step {step} and {data.size} bytes are too small "
                         f"(need rows of {row_bytes} bytes)")
    # Rows may be padded to ``step`` bytes: cut the padding off before reshaping.
    rows = data[: height * step].reshape(height, step)[:, :row_bytes]
    if depth == 2:
        dtype = np.dtype(">u2" if message.is_bigendian else "<u2")
        pixels = np.ascontiguousarray(rows).view(dtype).reshape(height, width, channels)
        pixels = (pixels >> 8).astype(np.uint8)
    else:
        pixels = rows.reshape(height, width, channels)
    if channels == 1:
        pixels = pixels.reshape(height, width)
    if conversion is None:
        return np.ascontiguousarray(pixels)
    return cv2.cvtColor(np.ascontiguousarray(pixels), conversion)


def decode_compressed_image(message: Any) -> np.ndarray:
    """``sensor_msgs/msg/CompressedImage`` (JPEG / PNG) -> (H, W, 3) uint8 RGB."""
    data = np.frombuffer(memoryview(message.data), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"cannot decode compressed image of format {str(message.format)!r} ({data.size} bytes)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def decode_image_message(message: Any, msgtype: str) -> np.ndarray:
    """Decode either image message type to (H, W, 3) uint8 RGB."""
    if msgtype == IMAGE_MSGTYPE:
        return decode_raw_image(message)
    if msgtype == COMPRESSED_MSGTYPE:
        return decode_compressed_image(message)
    raise InputError(f"topic type {msgtype!r} is not an image; expected {IMAGE_MSGTYPE} or {COMPRESSED_MSGTYPE}")
