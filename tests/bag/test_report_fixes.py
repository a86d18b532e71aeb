"""Bugs of the bag report (issue 15 item 8), each test failing on the code before the fix (0e869c2).

* montage: a row showed frame t beside the flow of pair (t-1, t), which is drawn on frame t-1's
  grid; now every panel of a row belongs to image1 of the pair.
* temporal consistency: reported as ``temporal_consistency`` (an mIoU that read like pixel
  agreement); now ``tc_miou`` and ``tc_pixel_agreement``.
* photometric residual: counted pixels whose warp target lies outside the frame (compared with
  the warp's border value); now only in-frame targets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from efc_core.viz import colorize_labels
from efc_ros.bag.evaluate import evaluate_bag
from efc_ros.bag.io import BagOutput, image_message, open_bag, read_messages, stamp_to_ns
from efc_ros.bag.make_synthetic import (
    CAMERA_TOPIC, GT_FLOW_TOPIC, GT_OCCLUSION_TOPIC, GT_SEGMENTATION_TOPIC, SyntheticBagOptions, make_synthetic_bag,
)
from efc_ros.image_conversions import image_msg_to_array

FRAME_ID = "camera"
MODEL_PALETTE = np.random.default_rng(7).integers(0, 256, (32, 3), dtype=np.uint8)
STAMP0 = 1_700_000_000_000_000_000
PERIOD = 100_000_000


def _write(path: Path, frames: list[dict[str, tuple[np.ndarray, str]]]) -> Path:
    """A bag of ``frames``: per frame, topic -> (array, encoding), stamped ``STAMP0 + k * PERIOD``."""
    with BagOutput(path, storage="mcap") as bag:
        for k, topics in enumerate(frames):
            stamp = STAMP0 + k * PERIOD
            for topic, (array, encoding) in topics.items():
                bag.write(topic, image_message(array, encoding, stamp, FRAME_ID), stamp)
    return path


@pytest.fixture(scope="module")
def moving_bag(tmp_path_factory) -> Path:
    """The synthetic scene's camera and ground truth, with the ground truth copied as the /efc outputs."""
    folder = tmp_path_factory.mktemp("montage")
    camera = make_synthetic_bag(folder / "camera", SyntheticBagOptions(num_frames=16, seed=3, width=96, height=64))
    with open_bag(camera) as reader:
        messages = list(read_messages(reader, [CAMERA_TOPIC, GT_SEGMENTATION_TOPIC, GT_FLOW_TOPIC, GT_OCCLUSION_TOPIC]))
    with BagOutput(folder / "outputs", storage="mcap") as bag:
        for item in messages:
            bag.write(item.topic, item.message, item.bag_time_ns)
            copy_to = {GT_SEGMENTATION_TOPIC: "/efc/segmentation", GT_FLOW_TOPIC: "/efc/flow"}.get(item.topic)
            if copy_to is not None:
                bag.write(copy_to, item.message, item.bag_time_ns)
            if item.topic == GT_SEGMENTATION_TOPIC:
                # The node's colour topic, in a palette of the "model" that no fixed palette guesses.
                colours = colorize_labels(image_msg_to_array(item.message), MODEL_PALETTE)
                stamp = stamp_to_ns(item.message.header.stamp)
                bag.write("/efc/segmentation/color", image_message(colours, "rgb8", stamp, FRAME_ID), item.bag_time_ns)
    return folder / "outputs"


def test_montage_rows_show_the_frame_the_flow_is_drawn_on(moving_bag) -> None:
    """Each row's camera image and segmentation are image1 of the pair whose flow the row shows.

    Before the fix a row held image2 (frame t) with the flow stamped t, which lies on frame t-1's grid.
    """
    with open_bag(moving_bag) as reader:
        messages = list(read_messages(reader, [CAMERA_TOPIC, GT_SEGMENTATION_TOPIC, GT_FLOW_TOPIC,
                                               GT_OCCLUSION_TOPIC]))
    by_topic: dict[str, dict[int, np.ndarray]] = {}
    for item in messages:
        array = item.message.data.reshape(item.message.height, item.message.width, 3) if item.topic == CAMERA_TOPIC \
            else image_msg_to_array(item.message)
        by_topic.setdefault(item.topic, {})[stamp_to_ns(item.message.header.stamp)] = array
    stamps = sorted(by_topic[CAMERA_TOPIC])
    _, state = evaluate_bag(moving_bag)
    assert state.samples
    for sample in state.samples:
        index = next(k for k,
                     stamp in enumerate(stamps) if np.array_equal(by_topic[CAMERA_TOPIC][stamp], sample["image"]))
        image1, image2 = stamps[index], stamps[index + 1]
        np.testing.assert_array_equal(sample["segmentation"], by_topic[GT_SEGMENTATION_TOPIC][image1])
        np.testing.assert_array_equal(sample["gt_segmentation"], by_topic[GT_SEGMENTATION_TOPIC][image1])
        # The montage draws the bag's own class colours (the model's palette), of image1 too.
        np.testing.assert_array_equal(sample["segmentation_color"],
                                      colorize_labels(by_topic[GT_SEGMENTATION_TOPIC][image1], MODEL_PALETTE))
        # The flow stamped image2 (pair image1 -> image2) is the one drawn on image1's grid.
        np.testing.assert_array_equal(sample["flow"], by_topic[GT_FLOW_TOPIC][image2])
        np.testing.assert_array_equal(sample["gt_flow"], by_topic[GT_FLOW_TOPIC][image2])
        # Beside the predicted occlusion, the true one of the same pair.
        np.testing.assert_array_equal(sample["gt_occlusion"], by_topic[GT_OCCLUSION_TOPIC][image2])


def test_temporal_consistency_reports_miou_and_pixel_agreement_apart(tmp_path) -> None:
    """A small region changes class between two frames: pixel agreement stays high, mIoU drops.

    Zero flow, 32x32 frames, a 4x4 square of class 1 in frame 1 becomes class 2 in frame 2:
    pixel agreement = (1024 - 16) / 1024; per-class IoU 1 (class 0), 0 (classes 1, 2): mIoU 1/3.
    """
    size = (32, 32)
    first, second = np.zeros(size, np.uint8), np.zeros(size, np.uint8)
    first[8:12, 8:12], second[8:12, 8:12] = 1, 2
    flow = np.zeros((*size, 2), np.float32)
    bag = _write(tmp_path / "tc", [{"/efc/segmentation": (first, "mono8")},
                                   {"/efc/segmentation": (second, "mono8"), "/efc/flow": (flow, "32FC2")}])
    report, _ = evaluate_bag(bag)
    free = report["label_free"]
    assert free["tc_pixel_agreement"] == pytest.approx(1008 / 1024)
    assert free["tc_miou"] == pytest.approx(1 / 3)
    assert "temporal_consistency" not in free  # the ambiguous name is gone


def test_photometric_residual_counts_only_targets_inside_the_frame(tmp_path) -> None:
    """Two identical grey frames, flow 0 except a band that points far outside the frame.

    In-frame targets match exactly (residual 0); before the fix the band's pixels were compared
    with the warp's border value 0 and the residual came out near 128 * band share.
    """
    size = (24, 40)
    grey = np.full((*size, 3), 128, np.uint8)
    flow = np.zeros((*size, 2), np.float32)
    flow[:, :10, 0] = -1000.0  # the left quarter looks 1000 px to the left of the image
    segmentation = np.zeros(size, np.uint8)
    bag = _write(tmp_path / "residual", [
        {CAMERA_TOPIC: (grey, "rgb8"), "/efc/segmentation": (segmentation, "mono8")},
        {CAMERA_TOPIC: (grey, "rgb8"), "/efc/segmentation": (segmentation, "mono8"), "/efc/flow": (flow, "32FC2")},
    ])
    report, state = evaluate_bag(bag)
    assert report["label_free"]["photometric_residual"] == pytest.approx(0.0)
    assert state.residual_count == size[0] * (size[1] - 10)
