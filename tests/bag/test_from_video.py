"""``efc bag from-video``: a clip written with cv2.VideoWriter, converted, read back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from efc_ros.bag.from_video import DEFAULT_START_TIME_S, VideoBagOptions, video_to_bag
from efc_ros.bag.io import open_bag, read_messages, stamp_to_ns
from efc_ros.cli import main
from efc_ros.image_conversions import compressed_msg_to_rgb, image_msg_to_rgb

FPS = 12.5


def _frame(index: int, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    """(H, W, 3) uint8 RGB: a smooth gradient plus a bright square moving 2 px per frame."""
    height, width = size
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 80)], axis=-1).astype(np.uint8)
    image[8:24, 2 * index + 4: 2 * index + 20] = (250, 250, 40)
    return image


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (64, 48))
    assert writer.isOpened()
    frames = [_frame(i) for i in range(7)]
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path, frames


def _read_back(bag: Path, topic: str) -> list:
    with open_bag(bag) as reader:
        return list(read_messages(reader, [topic]))


@pytest.mark.parametrize("compressed", [False, True])
def test_frames_stamps_and_pixels(tmp_path, clip, compressed: bool) -> None:
    video, frames = clip
    result = video_to_bag(video, tmp_path / "bag", VideoBagOptions(compressed=compressed, frame_id="phone"))
    topic = "/camera/image_raw/compressed" if compressed else "/camera/image_raw"
    assert result.topic == topic and result.frames == 7 and result.fps == pytest.approx(FPS)
    messages = _read_back(tmp_path / "bag", topic)
    assert len(messages) == 7
    stamps = np.array([stamp_to_ns(m.message.header.stamp) for m in messages])
    assert stamps[0] == int(DEFAULT_START_TIME_S * 1e9)
    np.testing.assert_allclose(np.diff(stamps), 1e9 / FPS, atol=1)
    assert [m.bag_time_ns for m in messages] == stamps.tolist()
    for message, frame in zip(messages, frames):
        assert message.message.header.frame_id == "phone"
        if compressed:
            assert message.message.format == "jpeg"
            decoded = compressed_msg_to_rgb(message.message)
        else:
            assert message.message.encoding == "rgb8"
            decoded = image_msg_to_rgb(message.message)
        assert decoded.shape == frame.shape
        assert np.abs(decoded.astype(int) - frame).mean() < 6  # MJPG (+ JPEG) compression only


def test_cli_resize_and_max_frames(tmp_path, clip, capsys) -> None:
    video, frames = clip
    code = main(["bag", "from-video", str(video), str(tmp_path / "bag"), "--resize", "32x24", "--max-frames", "4",
                 "--topic", "/front/image", "--storage", "sqlite3"])
    assert code == 0
    assert "wrote 4 frames (32x24" in capsys.readouterr().out
    messages = _read_back(tmp_path / "bag", "/front/image")
    assert len(messages) == 4
    decoded = image_msg_to_rgb(messages[3].message)
    expected = cv2.resize(frames[3], (32, 24), interpolation=cv2.INTER_AREA)
    assert decoded.shape == (24, 32, 3) and np.abs(decoded.astype(int) - expected).mean() < 8


def _run_efc(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "efc_ros.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def _assert_one_line_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert lines[0].startswith("efc: error:") and fragment in lines[0], lines[0]


def test_errors_are_one_line(tmp_path, clip) -> None:
    video, _ = clip
    missing = _run_efc("bag", "from-video", tmp_path / "nope.mp4", tmp_path / "out")
    _assert_one_line_error(missing, "nope.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    _assert_one_line_error(_run_efc("bag", "from-video", junk, tmp_path / "out"), "junk.mp4")
    assert not (tmp_path / "out").exists()
    (tmp_path / "existing").mkdir()
    _assert_one_line_error(_run_efc("bag", "from-video", video, tmp_path / "existing"), "already exists")
    _assert_one_line_error(_run_efc("bag", "from-video", video, tmp_path / "out", "--resize", "big"), "big")
