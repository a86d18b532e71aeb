"""``efc bag process`` / ``eval`` on real bags, through the CLI where the user would call it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from efc_core.perceptor import Perceptor
from efc_core.runtime import create_backend
from efc_ros.bag.evaluate import evaluate_bag
from efc_ros.bag.io import BagOutput, image_message, open_bag, read_messages, stamp_to_ns
from efc_ros.bag.make_synthetic import (
    CAMERA_TOPIC, GT_FLOW_TOPIC, GT_OCCLUSION_TOPIC, GT_SEGMENTATION_TOPIC, SyntheticBagOptions, make_synthetic_bag,
)
from efc_ros.bag.process import process_bag
from efc_ros.image_conversions import image_msg_to_array, image_msg_to_rgb
from tests.bag.efc_cli import run_efc

SIZE = {"width": 96, "height": 64}


@pytest.fixture(scope="module")
def camera_bag(tmp_path_factory) -> Path:
    return make_synthetic_bag(tmp_path_factory.mktemp("bags") / "camera",
                              SyntheticBagOptions(num_frames=8, seed=5, **SIZE))


def test_process_pairs_by_header_stamp_even_when_bag_order_is_shuffled(tmp_path, camera_bag, demo_model) -> None:
    # Rewrite the camera topic with receive times that swap neighbouring frames.
    with open_bag(camera_bag) as reader:
        frames = list(read_messages(reader, [CAMERA_TOPIC]))
    shuffled = tmp_path / "shuffled"
    order = [1, 0, 3, 2, 5, 4, 7, 6]
    with BagOutput(shuffled, storage="sqlite3") as output:
        for rank, index in enumerate(order):
            output.write(CAMERA_TOPIC, frames[index].message, frames[0].bag_time_ns + rank * 1000)
    perceptor = Perceptor(create_backend("onnxruntime", demo_model))
    stats = process_bag(shuffled, tmp_path / "out", perceptor)
    assert stats.frames == 8 and stats.pairs == 7
    assert stats.reordered > 0
    assert set(stats.pair_resets) <= {"first frame"}, stats.pair_resets

    # The flow for each stamp equals the Perceptor run on the frames in stamp order.
    reference = Perceptor(create_backend("onnxruntime", demo_model))
    expected = {}
    for item in frames:
        stamp = stamp_to_ns(item.message.header.stamp)
        expected[stamp] = reference.process(image_msg_to_rgb(item.message), stamp_ns=stamp, frame_id="camera")
    with open_bag(tmp_path / "out") as reader:
        outputs = list(read_messages(reader, ["/efc/flow", "/efc/segmentation"]))
    flows = [m for m in outputs if m.topic == "/efc/flow"]
    assert len(flows) == 7
    for item in flows:
        result = expected[stamp_to_ns(item.message.header.stamp)]
        np.testing.assert_allclose(image_msg_to_array(item.message), result.flow, atol=1e-5)
    for item in (m for m in outputs if m.topic == "/efc/segmentation"):
        np.testing.assert_array_equal(image_msg_to_array(item.message),
                                      expected[stamp_to_ns(item.message.header.stamp)].segmentation)


def _outputs_from_ground_truth(camera_bag: Path, output: Path, flow_shift: tuple[float, float]) -> None:
    """A bag whose /efc outputs are the ground truth itself (flow optionally shifted)."""
    with open_bag(camera_bag) as reader:
        messages = list(read_messages(reader, [CAMERA_TOPIC, GT_SEGMENTATION_TOPIC, GT_FLOW_TOPIC, GT_OCCLUSION_TOPIC]))
    with BagOutput(output, storage="mcap") as bag:
        for item in messages:
            bag.write(item.topic, item.message, item.bag_time_ns)
            stamp, frame_id = stamp_to_ns(item.message.header.stamp), item.message.header.frame_id
            array = image_msg_to_array(item.message) if item.topic != CAMERA_TOPIC else None
            if item.topic == GT_SEGMENTATION_TOPIC:
                bag.write("/efc/segmentation", image_message(array, "mono8", stamp, frame_id), item.bag_time_ns)
            elif item.topic == GT_FLOW_TOPIC:
                shifted = array + np.asarray(flow_shift, np.float32)
                bag.write("/efc/flow", image_message(shifted, "32FC2", stamp, frame_id), item.bag_time_ns)
            elif item.topic == GT_OCCLUSION_TOPIC:
                bag.write("/efc/occlusion/probability",
                          image_message((array > 0).astype(np.float32), "32FC1", stamp, frame_id), item.bag_time_ns)


def test_eval_of_ground_truth_outputs_is_perfect(tmp_path, camera_bag) -> None:
    _outputs_from_ground_truth(camera_bag, tmp_path / "perfect", (0.0, 0.0))
    report, _ = evaluate_bag(tmp_path / "perfect")
    gt = report["ground_truth"]
    assert gt["segmentation"]["miou"] == pytest.approx(1.0)
    assert gt["flow"]["epe"] == pytest.approx(0.0, abs=1e-6)
    assert gt["flow"]["fl_all"] == pytest.approx(0.0)
    assert gt["occlusion"]["f1"] == pytest.approx(1.0)
    assert report["frames"] == {"camera": 8, "outputs": 8, "dropped": 0}
    # Ground-truth flow is also perfectly consistent: TC of the true labels under the true flow.
    assert report["label_free"]["tc_miou"] > 0.97 and report["label_free"]["tc_pixel_agreement"] > 0.97
    assert report["label_free"]["photometric_residual"] < 3.0


def test_eval_reports_the_known_epe_of_a_shifted_flow(tmp_path, camera_bag) -> None:
    _outputs_from_ground_truth(camera_bag, tmp_path / "shifted", (3.0, 4.0))
    result = run_efc("bag", "eval", tmp_path / "shifted", "--output", tmp_path / "report")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["ground_truth"]["flow"]["epe"] == pytest.approx(5.0, abs=1e-4)
    for name in ("report.md", "montage.png", "metrics_over_time.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0


def test_process_cli_writes_outputs_and_colour_topics(tmp_path, camera_bag, demo_model) -> None:
    result = run_efc("bag", "process", camera_bag, tmp_path / "out", "--model", demo_model, "--json",
                     tmp_path / "stats.json")
    assert result.returncode == 0, result.stderr
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["frames"] == 8 and stats["pairs"] == 7
    with open_bag(tmp_path / "out") as reader:
        counts: dict[str, int] = {}
        for connection in reader.connections:
            counts[connection.topic] = connection.msgcount
    assert counts["/efc/segmentation"] == 8 and counts["/efc/segmentation/color"] == 8
    assert counts["/efc/flow"] == counts["/efc/flow/color"] == counts["/efc/occlusion"] == 7
    assert counts[CAMERA_TOPIC] == 8 and counts[GT_FLOW_TOPIC] == 7
