"""rclpy message wrappers around the edge layer: ``sensor_msgs`` messages <-> arrays, without cv_bridge.

Decoding, encoding and rendering live in ``efc_core.edge`` (transport-free, shared with the bag
tools and the training dataset); this module only moves fields between rclpy messages and those
functions. Assigning an ``array('B')`` to ``msg.data`` skips the per-element validation rclpy runs
on other sequences, so building a message costs one memcpy.
"""

from __future__ import annotations

import array

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage, Image, TimeReference
from std_msgs.msg import Header

from efc_core.edge.image_decode import decode_image
from efc_core.edge.image_encode import PackedImage, encode_camera, pack_output, unpack_output
from efc_core.edge.input_limits import DEFAULT_MAX_IMAGE_PIXELS, error_kind  # noqa: F401  (re-exported for the CLIs)
from efc_core.edge.render import TIME_REFERENCE
from efc_core.edge.stamps import ns_to_sec_nanosec


def image_msg_to_rgb(msg: Image, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` to (H, W, 3) uint8 RGB (``efc_core.edge.image_decode``)."""
    return decode_image(msg, max_pixels=max_pixels).rgb


def compressed_msg_to_rgb(msg: CompressedImage, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                          allow_corrupt: bool = False) -> np.ndarray:
    """Decode a jpeg/png ``CompressedImage`` to (H, W, 3) uint8 RGB; corrupt data is an ``InputError``
    (kind ``corrupt_image``) unless ``allow_corrupt``.
    """
    return decode_image(msg, max_pixels=max_pixels, allow_corrupt=allow_corrupt).rgb


def _byte_array(values: np.ndarray) -> array.array:
    """Copy a contiguous array's bytes into the ``array('B')`` the message field stores."""
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(values).data.cast("B"))
    return out


def _image_msg(packed: PackedImage, header: Header) -> Image:
    msg = Image()
    msg.header = header
    msg.height, msg.width, msg.encoding = packed.height, packed.width, packed.encoding
    msg.is_bigendian, msg.step = packed.is_bigendian, packed.step
    msg.data = _byte_array(packed.data)
    return msg


def array_to_image_msg(values: np.ndarray, encoding: str, header: Header) -> Image:
    """Wrap an output array (``efc_core.edge.image_encode.pack_output``) in a ``sensor_msgs/Image``
    carrying ``header`` (the input image's stamp and frame_id).
    """
    return _image_msg(pack_output(values, encoding), header)


def time_reference_msg(stamp_ns: int, header: Header) -> TimeReference:
    """``flow/prev_stamp``: ``header`` of the flow message, ``time_ref`` = ``stamp_ns`` (image1's stamp)."""
    sec, nanosec = ns_to_sec_nanosec(stamp_ns)
    return TimeReference(header=header, time_ref=Time(sec=sec, nanosec=nanosec), source="previous_frame")


def rendered_to_msg(array_value: np.ndarray, encoding: str, header: Header) -> Image | TimeReference:
    """One entry of ``efc_core.edge.render.render_outputs`` as its message."""
    if encoding == TIME_REFERENCE:
        return time_reference_msg(int(array_value), header)
    return array_to_image_msg(array_value, encoding, header)


def image_msg_to_array(msg: Image) -> np.ndarray:
    """Read back an output ``Image``: (H, W) or (H, W, C) array (tests, tools)."""
    return unpack_output(msg)


def rgb_to_image_msg(rgb: np.ndarray, encoding: str, header: Header, *, step: int | None = None,
                     is_bigendian: bool = False) -> Image:
    """Encode (H, W, 3) uint8 RGB as a camera would, in any decodable encoding (tests, benchmarks).

    ``step`` larger than the tight row size pads each row with zeros.
    """
    return _image_msg(encode_camera(rgb, encoding, step=step, is_bigendian=is_bigendian), header)


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
