"""The bag integrity check knows every encoding the decoder knows (one encoding table)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from efc_core.edge.image_decode import RAW_ENCODINGS, bytes_per_pixel
from efc_core.edge.image_encode import OUTPUT_ENCODINGS
from efc_ros.bag.integrity import message_problem

WIDTH, HEIGHT = 6, 2


def _image(encoding: str, step: int) -> SimpleNamespace:
    return SimpleNamespace(height=HEIGHT, width=WIDTH, step=step, encoding=encoding, data=bytes(HEIGHT * step))


@pytest.mark.parametrize("encoding", sorted(set(RAW_ENCODINGS) | set(OUTPUT_ENCODINGS) | {"8UC1", "16UC1"}))
def test_rows_shorter_than_the_encoding_needs_are_reported(encoding: str) -> None:
    pixel_bytes = bytes_per_pixel(encoding)
    layout = RAW_ENCODINGS.get(encoding)
    if layout is not None:
        assert pixel_bytes == layout.channels * layout.depth
    assert pixel_bytes is not None and pixel_bytes >= 1
    tight = WIDTH * pixel_bytes
    assert message_problem("sensor_msgs/msg/Image", _image(encoding, tight)) is None
    problem = message_problem("sensor_msgs/msg/Image", _image(encoding, tight - 1))
    assert problem == f"step {tight - 1} < width*{pixel_bytes} = {tight} for {encoding}"


def test_generic_and_unknown_encodings() -> None:
    assert bytes_per_pixel("32FC2") == 8 and bytes_per_pixel("16UC1") == 2 and bytes_per_pixel("64FC3") == 24
    assert bytes_per_pixel("bayer_rggb16") == 2 and bytes_per_pixel("rgba16") == 8
    assert bytes_per_pixel("no_such_encoding") is None
    assert message_problem("sensor_msgs/msg/Image", _image("no_such_encoding", 1)) is None  # size only
