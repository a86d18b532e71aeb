"""Corrupt payloads are found, reported, counted and skipped; they never become a silent metric (issue 13, case 4).

The bags are corrupted by the test in the file itself: random bytes written over a ground-truth
flow message, 50 KB of zeros over a camera image. With the chunk CRCs this project writes
(as ``ros2 bag record`` does) the chunk is detected; without CRCs (the plain ``rosbags`` writer)
the impossible ground truth is caught by ``bag eval``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2.storage_mcap import McapReader

from efc_ros.bag.io import TYPESTORE, open_bag, read_messages
from efc_ros.bag.make_synthetic import CAMERA_TOPIC, GT_FLOW_TOPIC, SyntheticBagOptions, make_synthetic_bag
from tests.bag.test_data_safety import run_efc

pytestmark = pytest.mark.slow


def _mcap_file(bag: Path) -> Path:
    return next(bag.glob("*.mcap"))


def _payload_offset(bag: Path, topic: str, index: int) -> tuple[int, int]:
    """(file offset, length) of the ``index``-th message of ``topic``'s serialised data in the MCAP file."""
    with open_bag(bag) as reader:
        messages = list(read_messages(reader, [topic]))
    message = messages[index]
    raw = bytes(TYPESTORE.serialize_cdr(message.message, message.msgtype))
    data = _mcap_file(bag).read_bytes()
    offset = data.find(raw)
    assert offset > 0 and data.find(raw, offset + 1) == -1, "message bytes not found once in the file"
    return offset, len(raw)


def _overwrite(path: Path, offset: int, payload: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(payload)


def _clear_chunk_crcs(bag: Path) -> int:
    """Zero every chunk CRC, as the plain rosbags writer leaves them; returns how many were set."""
    path = _mcap_file(bag)
    reader = McapReader(path)
    reader.open()
    chunks = list(reader.chunks)
    reader.close()
    cleared = 0
    with open(path, "r+b") as handle:
        for chunk in chunks:
            handle.seek(chunk.chunk_start_offset + 33)
            cleared += int.from_bytes(handle.read(4), "little") != 0
            handle.seek(chunk.chunk_start_offset + 33)
            handle.write(bytes(4))
    return cleared


@pytest.fixture
def camera_bag(tmp_path) -> Path:
    # 320x240: a frame's messages fill about one 1 MiB MCAP chunk, so a bad chunk costs one frame.
    return make_synthetic_bag(tmp_path / "camera", SyntheticBagOptions(width=320, height=240, num_frames=8))


def _random_bytes(count: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, count, dtype=np.uint8).tobytes()


def _damage_message(bag: Path, topic: str, index: int, data: bytes) -> None:
    """Overwrite the middle of message ``index`` of ``topic`` in the bag's MCAP file with ``data``."""
    offset, length = _payload_offset(bag, topic, index)
    _overwrite(_mcap_file(bag), offset + length // 2 - len(data) // 2, data)


def test_written_bags_carry_chunk_crcs(camera_bag):
    assert _clear_chunk_crcs(camera_bag) > 0


def test_random_bytes_in_a_ground_truth_message_are_found_by_the_chunk_crc(tmp_path, camera_bag, demo_model):
    _damage_message(camera_bag, GT_FLOW_TOPIC, 3, _random_bytes(5000))
    stats_path = tmp_path / "stats.json"
    result = run_efc("bag", "process", camera_bag, tmp_path / "out", "--model", demo_model, "--json", stats_path)
    assert result.returncode == 0, result.stderr
    assert "efc: warning: skipped" in result.stderr and GT_FLOW_TOPIC in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    integrity = json.loads(stats_path.read_text())["integrity"]
    assert integrity["by_topic"].get(GT_FLOW_TOPIC, 0) >= 1 and "checksum" in " ".join(integrity["problems"])
    report = tmp_path / "report"
    evaluated = run_efc("bag", "eval", tmp_path / "out", "--output", report, "--num-classes", "6")
    assert evaluated.returncode == 0, evaluated.stderr
    flow = json.loads((report / "report.json").read_text())["ground_truth"]["flow"]
    assert np.isfinite(flow["epe"]) and flow["epe"] < 50, flow  # the corrupt message never reached the metric


def test_random_bytes_in_a_bag_without_crcs_are_kept_out_of_the_metrics_with_a_warning(tmp_path, camera_bag,
                                                                                       demo_model):
    _clear_chunk_crcs(camera_bag)
    _damage_message(camera_bag, GT_FLOW_TOPIC, 3, _random_bytes(5000))
    result = run_efc("bag", "process", camera_bag, tmp_path / "out", "--model", demo_model)
    assert result.returncode == 0, result.stderr  # nothing to detect without a checksum: copied as is
    report = tmp_path / "report"
    evaluated = run_efc("bag", "eval", tmp_path / "out", "--output", report, "--num-classes", "6")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "efc: warning:" in evaluated.stderr and "impossible values" in evaluated.stderr, evaluated.stderr
    data = json.loads((report / "report.json").read_text())
    assert data["integrity"]["implausible_ground_truth"] == {GT_FLOW_TOPIC: 1}
    assert data["ground_truth"]["flow"]["epe"] < 50, data["ground_truth"]["flow"]
    assert "warning" in (report / "report.md").read_text()


def test_zeroed_block_inside_a_camera_image_is_reported_and_the_frame_skipped(tmp_path, camera_bag, demo_model):
    _damage_message(camera_bag, CAMERA_TOPIC, 4, bytes(50_000))
    stats_path = tmp_path / "stats.json"
    result = run_efc("bag", "process", camera_bag, tmp_path / "out", "--model", demo_model, "--json", stats_path)
    assert result.returncode == 0, result.stderr
    assert CAMERA_TOPIC in result.stderr and "corrupt" in result.stderr, result.stderr
    stats = json.loads(stats_path.read_text())
    assert stats["integrity"]["by_topic"][CAMERA_TOPIC] >= 1
    assert stats["frames"] == 8 - stats["integrity"]["by_topic"][CAMERA_TOPIC]
