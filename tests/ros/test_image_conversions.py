"""Decoding camera messages to RGB and encoding outputs: round trips against OpenCV conversions."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage
from std_msgs.msg import Header

from efc_core.edge.image_decode import decode_raw
from efc_core.errors import InputError
from efc_ros.image_conversions import (
    array_to_image_msg,
    compressed_msg_to_rgb,
    image_msg_to_array,
    image_msg_to_rgb,
    rgb_to_compressed_msg,
    rgb_to_image_msg,
)


def _header() -> Header:
    header = Header(frame_id="camera")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    return header


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    """A smooth 24x32 colour image (smooth so that 4:2:2 chroma and jpeg errors stay small)."""
    ys, xs = np.mgrid[0:24, 0:32].astype(np.float32)
    image = np.stack([xs * 7, ys * 9, 128 + 60 * np.sin(xs / 5 + ys / 7)], axis=-1)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
@pytest.mark.parametrize("padding", [0, 7])
def test_colour_encodings_decode_exactly(rgb, encoding, padding):
    channels = 4 if encoding.endswith("a8") else 3
    msg = rgb_to_image_msg(rgb, encoding, _header(), step=rgb.shape[1] * channels + padding)
    decoded = image_msg_to_rgb(msg)
    assert decoded.shape == rgb.shape and decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, rgb)


def test_rgb8_without_padding_is_a_view_on_the_message_buffer(rgb):
    msg = rgb_to_image_msg(rgb, "rgb8", _header())
    decoded = image_msg_to_rgb(msg)
    assert np.shares_memory(decoded, np.frombuffer(msg.data, np.uint8))


@pytest.mark.parametrize("padding", [0, 3])
def test_mono8_decodes_to_equal_gray_channels(rgb, padding):
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    msg = rgb_to_image_msg(rgb, "mono8", _header(), step=rgb.shape[1] + padding)
    decoded = image_msg_to_rgb(msg)
    for channel in range(3):
        np.testing.assert_array_equal(decoded[:, :, channel], gray)


@pytest.mark.parametrize("encoding, code",
                         [("yuv422", cv2.COLOR_YUV2RGB_UYVY), ("yuv422_yuy2", cv2.COLOR_YUV2RGB_YUY2)])
@pytest.mark.parametrize("padding", [0, 4])
def test_yuv422_variants_match_opencv_and_the_source(rgb, encoding, code, padding):
    msg = rgb_to_image_msg(rgb, encoding, _header(), step=rgb.shape[1] * 2 + padding)
    decoded = image_msg_to_rgb(msg)
    packed = np.frombuffer(msg.data, np.uint8).reshape(rgb.shape[0], -1)[:, : rgb.shape[1] * 2]
    expected = cv2.cvtColor(np.ascontiguousarray(packed).reshape(rgb.shape[0], rgb.shape[1], 2), code)
    np.testing.assert_array_equal(decoded, expected)
    # Against the original: chroma is shared by pixel pairs, so allow the subsampling error.
    error = np.abs(decoded.astype(int) - rgb.astype(int))
    assert error.mean() < 4 and error.max() < 40
    # Swapping the two byte orders must give a visibly different (wrong) image.
    msg.encoding = "yuv422_yuy2" if encoding == "yuv422" else "yuv422"
    assert np.abs(image_msg_to_rgb(msg).astype(int) - rgb.astype(int)).mean() > 20


@pytest.mark.parametrize("bigendian", [False, True])
def test_16_bit_encodings_honour_byte_order_and_padding(rgb, bigendian):
    height, width = rgb.shape[:2]
    step = width * 6 + 3  # odd padding: rows are no longer 2-byte aligned

    def decode(values16: np.ndarray, as_bigendian: bool) -> np.ndarray:
        buffer = np.zeros((height, step), np.uint8)
        raw = values16.astype(">u2" if bigendian else "<u2").view(np.uint8)
        buffer[:, : width * 6] = raw.reshape(height, width * 6)
        return decode_raw(buffer.tobytes(), height=height, width=width, step=step, encoding="rgb16",
                          is_bigendian=as_bigendian)

    np.testing.assert_array_equal(decode(rgb.astype(np.uint16) * 257, bigendian), rgb)  # 257*255 = 65535
    # High and low bytes differ here, so reading them in the wrong order is far off.
    values16 = rgb.astype(np.uint16) * 256 + 128
    assert np.abs(decode(values16, bigendian).astype(int) - rgb).max() <= 1
    assert np.abs(decode(values16, not bigendian).astype(int) - rgb).mean() > 30


def test_compressed_png_is_exact_and_jpeg_close(rgb):
    png = rgb_to_compressed_msg(rgb, "png", _header())
    np.testing.assert_array_equal(compressed_msg_to_rgb(png), rgb)
    jpeg = rgb_to_compressed_msg(rgb, "jpeg", _header(), jpeg_quality=95)
    error = np.abs(compressed_msg_to_rgb(jpeg).astype(int) - rgb.astype(int))
    assert error.mean() < 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"encoding": "bayer_foo8", "height": 2, "width": 2, "step": 2}, "unsupported image encoding 'bayer_foo8'"),
        ({"encoding": "rgb8", "height": 0, "width": 4, "step": 12}, "zero size"),
        ({"encoding": "rgb8", "height": 4, "width": 4, "step": 8}, "step 8"),
        ({"encoding": "rgb8", "height": 4, "width": 4, "step": 12, "data": b"\0" * 47},
         "expected height*step = 4*12 = 48"),
        ({"encoding": "yuv422", "height": 2, "width": 3, "step": 6}, "even width"),
    ],
)
def test_bad_raw_images_raise_input_error_naming_the_problem(kwargs, message):
    data = kwargs.pop("data", b"\0" * 64)
    with pytest.raises(InputError, match=message.replace("*", r"\*").replace("(", r"\(")):
        decode_raw(data, **kwargs)


def test_corrupt_compressed_image_raises_input_error():
    msg = CompressedImage(format="jpeg")
    msg.data = b"not a jpeg at all"
    with pytest.raises(InputError, match="neither PNG nor JPEG"):
        compressed_msg_to_rgb(msg)
    msg.data = b"\xff\xd8\xff\xda\x00\x02" + bytes(20)  # a JPEG whose scan starts before any frame header
    with pytest.raises(InputError, match="without a frame"):
        compressed_msg_to_rgb(msg)
    with pytest.raises(InputError, match="format 'tiff'"):
        compressed_msg_to_rgb(CompressedImage(format="tiff"))


@pytest.mark.parametrize(
    "encoding, values",
    [
        ("mono8", np.arange(12, dtype=np.uint8).reshape(3, 4)),
        ("rgb8", np.arange(36, dtype=np.uint8).reshape(3, 4, 3)),
        ("32FC1", np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)),
        ("32FC2", np.linspace(-5, 5, 24, dtype=np.float32).reshape(3, 4, 2)),
    ],
)
def test_output_messages_round_trip_with_tight_step(encoding, values):
    header = _header()
    msg = array_to_image_msg(values, encoding, header)
    channels = 1 if values.ndim == 2 else values.shape[2]
    assert (msg.height, msg.width, msg.encoding, msg.is_bigendian) == (3, 4, encoding, 0)
    assert msg.step == 4 * channels * values.itemsize
    assert len(msg.data) == msg.step * msg.height
    assert msg.header.stamp.sec == 12 and msg.header.stamp.nanosec == 345 and msg.header.frame_id == "camera"
    np.testing.assert_array_equal(image_msg_to_array(msg), values)


def test_output_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="32FC2 needs shape"):
        array_to_image_msg(np.zeros((3, 4), np.float32), "32FC2", _header())
    with pytest.raises(ValueError, match="unsupported output encoding '16UC1'"):
        array_to_image_msg(np.zeros((3, 4), np.uint16), "16UC1", _header())


def test_agrees_with_cv_bridge_where_installed(rgb):
    cv_bridge = pytest.importorskip("cv_bridge", reason="cv_bridge is not installed here (docs/ENVIRONMENT.md)")
    bridge = cv_bridge.CvBridge()
    for encoding in ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "yuv422", "yuv422_yuy2"):
        msg = rgb_to_image_msg(rgb, encoding, _header())
        theirs = bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8")
        np.testing.assert_allclose(image_msg_to_rgb(msg).astype(int), theirs.astype(int), atol=2, err_msg=encoding)
