"""Unusable bags: a one-line reason, a non-zero exit, and no partial output claiming success."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from efc_ros.bag.io import TYPESTORE, BagOutput
from efc_ros.bag.make_synthetic import SyntheticBagOptions, make_synthetic_bag
from tests.bag.efc_cli import run_efc


def assert_one_line_failure(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory) -> Path:
    return make_synthetic_bag(tmp_path_factory.mktemp("bags") / "camera",
                              SyntheticBagOptions(width=64, height=48, num_frames=4, storage="mcap"))


def test_missing_bag(tmp_path, demo_model) -> None:
    result = run_efc("bag", "process", tmp_path / "nope", tmp_path / "out", "--model", demo_model)
    assert_one_line_failure(result, "bag not found")
    assert not (tmp_path / "out").exists()


def test_corrupt_bag(tmp_path, small_bag, demo_model) -> None:
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for source in small_bag.iterdir():
        data = source.read_bytes()
        # Keep the metadata, cut the storage file in half: a recording killed mid-write.
        (corrupt / source.name).write_bytes(data if source.suffix == ".yaml" else data[: len(data) // 2])
    result = run_efc("bag", "process", corrupt, tmp_path / "out", "--model", demo_model)
    assert_one_line_failure(result)
    assert not (tmp_path / "out").exists()
    assert not any(p.name.startswith(".out.") for p in tmp_path.iterdir()), "staging folder left behind"


def test_missing_topic(tmp_path, small_bag, demo_model) -> None:
    result = run_efc("bag", "process", small_bag, tmp_path / "out", "--model", demo_model, "--topic", "/front/image")
    assert_one_line_failure(result, "/front/image", "not in bag")
    assert not (tmp_path / "out").exists()


def test_wrong_message_type(tmp_path, demo_model) -> None:
    bag = tmp_path / "strings"
    string_type = TYPESTORE.types["std_msgs/msg/String"]
    with BagOutput(bag, storage="sqlite3") as output:
        output.write("/camera/image_raw", string_type(data="not an image"), 1)
    result = run_efc("bag", "process", bag, tmp_path / "out", "--model", demo_model, "--topic", "/camera/image_raw")
    assert_one_line_failure(result, "std_msgs/msg/String")
    no_topic = run_efc("bag", "process", bag, tmp_path / "out", "--model", demo_model)
    assert_one_line_failure(no_topic, "no sensor_msgs/Image")


def test_eval_without_outputs(tmp_path, small_bag) -> None:
    result = run_efc("bag", "eval", small_bag, "--output", tmp_path / "report")
    assert_one_line_failure(result, "/efc/segmentation")
    assert not (tmp_path / "report" / "report.json").exists()
