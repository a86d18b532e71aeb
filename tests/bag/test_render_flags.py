"""``efc bag process --occlusion-threshold/--flow-color-max/--overlay-alpha``: the node's renderer settings."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from efc_core import viz
from efc_core.edge.render import RENDER_FIELDS
from efc_ros.bag.cli import add_parser
from efc_ros.bag.io import open_bag, read_messages, stamp_to_ns
from efc_ros.bag.make_synthetic import SyntheticBagOptions, make_synthetic_bag
from efc_ros.image_conversions import image_msg_to_array
from efc_ros.node_parameters import SPECS_BY_NAME
from tests.bag.efc_cli import run_efc

#: Far below the default 0.5: the demo model's occlusion probabilities on the synthetic bag lie
#: mostly below 1e-3 with a tail up to about 0.5, so this threshold marks pixels 0.5 would not.
THRESHOLD = 0.001
FLOW_COLOR_MAX = 2.0


@pytest.fixture(scope="module")
def camera_bag(tmp_path_factory) -> Path:
    return make_synthetic_bag(tmp_path_factory.mktemp("bags") / "camera",
                              SyntheticBagOptions(num_frames=4, seed=5, width=96, height=64))


def _topics_by_stamp(bag: Path, topics: list[str]) -> dict[str, dict[int, np.ndarray]]:
    found: dict[str, dict[int, np.ndarray]] = {topic: {} for topic in topics}
    with open_bag(bag) as reader:
        for item in read_messages(reader, topics):
            found[item.topic][stamp_to_ns(item.message.header.stamp)] = image_msg_to_array(item.message)
    return found


def test_process_draws_outputs_with_the_given_renderer_settings(tmp_path, camera_bag, demo_model) -> None:
    result = run_efc("bag", "process", camera_bag, tmp_path / "out", "--model", demo_model,
                     "--occlusion-threshold", THRESHOLD, "--flow-color-max", FLOW_COLOR_MAX, "--overlay-alpha", 1.0)
    assert result.returncode == 0, result.stderr
    topics = ["/efc/occlusion", "/efc/occlusion/probability", "/efc/flow", "/efc/flow/color", "/efc/overlay",
              "/efc/segmentation/color"]
    found = _topics_by_stamp(tmp_path / "out", topics)
    assert len(found["/efc/occlusion"]) == 3
    differs_from_default = 0
    for stamp, mask in found["/efc/occlusion"].items():
        probability = found["/efc/occlusion/probability"][stamp]
        np.testing.assert_array_equal(mask, np.where(probability > THRESHOLD, 255, 0).astype(np.uint8))
        differs_from_default += int(np.count_nonzero((probability > THRESHOLD) != (probability > 0.5)))
    assert differs_from_default > 0, "the threshold chosen does not tell the flag from the default"

    flow_colours_differ = False
    for stamp, colours in found["/efc/flow/color"].items():
        flow = found["/efc/flow"][stamp]
        np.testing.assert_array_equal(colours, viz.flow_to_color(flow, FLOW_COLOR_MAX))
        flow_colours_differ |= not np.array_equal(colours, viz.flow_to_color(flow, None))
    assert flow_colours_differ
    for stamp, overlay in found["/efc/overlay"].items():  # alpha 1: the segmentation colours alone
        np.testing.assert_array_equal(overlay, found["/efc/segmentation/color"][stamp])


def test_out_of_range_renderer_flag_is_refused_naming_it(tmp_path, camera_bag, demo_model) -> None:
    result = run_efc("bag", "process", camera_bag, tmp_path / "out", "--model", demo_model,
                     "--occlusion-threshold", 1.5)
    assert result.returncode != 0
    assert "occlusion_threshold must be in [0.0, 1.0], got 1.5" in result.stderr
    assert not (tmp_path / "out").exists()


def test_renderer_flags_and_node_parameters_share_one_definition() -> None:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    process = parser.parse_args(["bag", "process", "in", "out"])
    for setting in RENDER_FIELDS:
        spec = SPECS_BY_NAME[setting.ros_name]
        expected = (setting.default, setting.description, setting.limits)
        assert (spec.default, spec.description, spec.float_range) == expected
        assert spec.read_only is not setting.runtime
        assert getattr(process, setting.name) is None  # left out: RenderOptions' default applies
