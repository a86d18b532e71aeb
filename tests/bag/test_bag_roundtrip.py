"""Synthetic bags written with real ``rosbags`` read back with identical pixels and stamps."""

from __future__ import annotations

import numpy as np
import pytest

from efc_core.data.synthetic import SyntheticConfig, generate_sequence
from efc_ros.bag.io import open_bag, read_messages, stamp_to_ns
from efc_ros.bag.make_synthetic import (
    GT_FLOW_TOPIC, GT_OCCLUSION_TOPIC, GT_SEGMENTATION_TOPIC, SyntheticBagOptions, camera_topic, frame_stamps_ns,
    make_synthetic_bag,
)
from efc_ros.image_conversions import compressed_msg_to_rgb, image_msg_to_array, image_msg_to_rgb


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "png"])
def test_synthetic_bag_round_trip(tmp_path, storage: str, encoding: str) -> None:
    options = SyntheticBagOptions(width=64, height=48, num_frames=5, fps=10.0, encoding=encoding, storage=storage,
                                  seed=3)
    bag = make_synthetic_bag(tmp_path / "bag", options)
    sequence = generate_sequence(SyntheticConfig(height=48, width=64, num_frames=5, num_classes=options.num_classes),
                                 seed=3000)
    stamps = frame_stamps_ns(options)
    topic = camera_topic(encoding)
    with open_bag(bag) as reader:
        messages = list(read_messages(reader, [topic, GT_SEGMENTATION_TOPIC, GT_FLOW_TOPIC, GT_OCCLUSION_TOPIC]))
    camera = [m for m in messages if m.topic == topic]
    assert [stamp_to_ns(m.message.header.stamp) for m in camera] == stamps.tolist()
    assert all(m.message.header.frame_id == "camera" for m in camera)
    # Receive time follows the stamp by the simulated transport delay, as a real recording would.
    assert all(m.bag_time_ns - stamp_to_ns(m.message.header.stamp) == 4_000_000 for m in camera)
    for index, item in enumerate(camera):
        decoded = compressed_msg_to_rgb(item.message) if encoding == "png" else image_msg_to_rgb(item.message)
        np.testing.assert_array_equal(decoded, sequence.frames[index])
    labels = [image_msg_to_array(m.message) for m in messages if m.topic == GT_SEGMENTATION_TOPIC]
    np.testing.assert_array_equal(np.stack(labels), sequence.labels)
    flows = [m for m in messages if m.topic == GT_FLOW_TOPIC]
    assert [stamp_to_ns(m.message.header.stamp) for m in flows] == stamps[1:].tolist()
    np.testing.assert_array_equal(image_msg_to_array(flows[1].message), sequence.flow(1, 2))
    occlusion = [image_msg_to_array(m.message) for m in messages if m.topic == GT_OCCLUSION_TOPIC]
    np.testing.assert_array_equal(occlusion[0] > 0, sequence.occlusion(0, 1))


def test_stamps_follow_the_frame_rate() -> None:
    stamps = frame_stamps_ns(SyntheticBagOptions(num_frames=30, fps=30.0))
    periods = np.diff(stamps) * 1e-9
    assert np.all(periods > 0)
    assert abs(np.median(periods) - 1 / 30) < 1e-3


def test_scene_settings_reach_the_generator(tmp_path) -> None:
    still = {"max_translation": 0.0, "max_rotation_deg": 0.0, "max_scale_change": 0.0, "background_motion": 0.0,
             "background_rotation_deg": 0.0, "background_scale_change": 0.0}
    options = SyntheticBagOptions(width=64, height=48, num_frames=3, seed=3, scene=still)
    with open_bag(make_synthetic_bag(tmp_path / "bag", options)) as reader:
        flows = [image_msg_to_array(m.message) for m in read_messages(reader, [GT_FLOW_TOPIC])]
    # Nothing moves: zero flow up to rounding (the default scene moves up to ~5 px per frame here).
    assert len(flows) == 2 and max(float(np.abs(flow).max()) for flow in flows) < 1e-6
    with pytest.raises(ValueError, match=r"\['max_speed'\]"):
        SyntheticBagOptions(scene={"max_speed": 1.0}).validate()
    with pytest.raises(ValueError, match=r"\['height'\]"):  # the bag's own options are not scene settings
        SyntheticBagOptions(scene={"height": 32}).validate()
