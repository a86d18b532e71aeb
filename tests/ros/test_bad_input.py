"""Bad input never takes the node down: each problem is logged and counted, the next good frame works.

Also: a missing or mismatched model, or a bad start-up parameter, stops the process at start-up
with a non-zero exit code and a one-line reason (not a traceback).
"""

from __future__ import annotations

import array
import shutil

import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from tests.ros.ros_helpers import (
    NodeProcess,
    frame_stamp,
    messages_with_stamp,
    publish_frame,
    start_node_and_client,
)

pytestmark = pytest.mark.ros

NAMESPACE = "/efc_bad"
NODE = f"{NAMESPACE}/efc_perception"
HEIGHT, WIDTH = 96, 128


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    from efc_core.data.synthetic import SyntheticConfig, generate_sequence

    return generate_sequence(SyntheticConfig(height=HEIGHT, width=WIDTH, num_frames=4), seed=5).frames


@pytest.fixture(scope="module")
def running(demo_model, tmp_path_factory):
    # log_throttle_sec 0: every error is logged, so each case can look for its own line.
    node, client, publisher, received = start_node_and_client(
        tmp_path_factory.mktemp("bad") / "node.log",
        {"model_path": str(demo_model), "qos_reliability": "reliable", "qos_depth": 20, "num_threads": 1,
         "log_throttle_sec": 0.0},
        NAMESPACE, "efc_bad_client", {"segmentation": Image, "flow": Image})
    yield node, client, publisher, received
    client.close()
    assert node.stop() == 0
    assert "Traceback" not in node.log()


def _process_good_frame(running, rgb: np.ndarray, index: int, *, flow_expected: bool, stamp=None) -> Image:
    node, client, publisher, received = running
    header = publish_frame(publisher, rgb, index, stamp=stamp)
    assert client.wait_for(lambda: messages_with_stamp(received["segmentation"], header.stamp), 30), node.log()
    [segmentation] = messages_with_stamp(received["segmentation"], header.stamp)
    if flow_expected:
        assert client.wait_for(lambda: messages_with_stamp(received["flow"], header.stamp), 5), node.log()
    else:
        client.wait_for(lambda: False, 0.3)
        assert messages_with_stamp(received["flow"], header.stamp) == []
    return segmentation


def _raw_message(index: int, *, encoding: str, height: int, width: int, step: int, size: int) -> Image:
    msg = Image(header=Header(stamp=frame_stamp(index), frame_id="camera"), encoding=encoding,
                height=height, width=width, step=step)
    msg.data = array.array("B", bytes(size))
    return msg


@pytest.mark.slow
@pytest.mark.parametrize(
    "index, bad_message, log_text",
    [
        (10, {"encoding": "bayer_xyz8", "height": HEIGHT, "width": WIDTH, "step": WIDTH, "size": HEIGHT * WIDTH},
         "unsupported image encoding 'bayer_xyz8'"),
        (20, {"encoding": "rgb8", "height": 0, "width": 0, "step": 0, "size": 0}, "image has zero size: 0x0"),
        (30, {"encoding": "rgb8", "height": HEIGHT, "width": WIDTH, "step": WIDTH * 3, "size": 100},
         f"expected height*step = {HEIGHT}*{WIDTH * 3}"),
    ],
)
def test_bad_frame_is_logged_counted_and_the_next_good_frame_processed(ros_environment, running, frames, index,
                                                                       bad_message, log_text):
    node, client, publisher, received = running
    _process_good_frame(running, frames[0], index, flow_expected=False)  # 1 s after the last case: new pair
    publisher.publish(_raw_message(index + 1, **bad_message))
    assert client.wait_for(lambda: log_text in node.log(), 10), node.log()
    line = next(line for line in node.log().splitlines() if log_text in line)
    assert "[ERROR]" in line and "skipped [input_" in line  # counted per kind: input_encoding, input_size
    assert messages_with_stamp(received["segmentation"], frame_stamp(index + 1)) == []
    # The bad frame never became a partner: the next good frame pairs with the good one before it.
    _process_good_frame(running, frames[1], index + 2, flow_expected=True)


@pytest.mark.slow
def test_resolution_change_resets_the_pair_and_keeps_running(ros_environment, running, frames):
    import cv2

    node, client, publisher, received = running
    _process_good_frame(running, frames[0], 40, flow_expected=False)
    _process_good_frame(running, frames[1], 41, flow_expected=True)
    smaller = [cv2.resize(f, (WIDTH // 2, HEIGHT // 2), interpolation=cv2.INTER_AREA) for f in frames[2:4]]
    segmentation = _process_good_frame(running, smaller[0], 42, flow_expected=False)
    assert (segmentation.height, segmentation.width) == (HEIGHT // 2, WIDTH // 2)
    assert client.wait_for(lambda: "resolution changed" in node.log(), 5)
    _process_good_frame(running, smaller[1], 43, flow_expected=True)


@pytest.mark.slow
def test_time_going_backwards_resets_the_pair(ros_environment, running, frames):
    node, client, publisher, received = running
    _process_good_frame(running, frames[0], 60, flow_expected=False)
    _process_good_frame(running, frames[1], 61, flow_expected=True)
    _process_good_frame(running, frames[2], 55, flow_expected=False)  # a rosbag looping back
    assert client.wait_for(lambda: "time went backwards" in node.log(), 5)
    _process_good_frame(running, frames[3], 56, flow_expected=True)


@pytest.mark.slow
@pytest.mark.parametrize(
    "index, changes, reason_text",
    [
        (70, {"occlusion_threshold": 1.5}, "occlusion_threshold"),  # rclpy checks the descriptor's range
        (80, {"backend": "tensorrt"}, "read-only"),
        (90, {"max_frame_gap": "long"}, "type"),  # rclpy: "Wrong parameter type ..."
        (100, {"log_throttle_sec": -1.0}, "log_throttle_sec"),
    ],
)
def test_invalid_runtime_parameters_are_rejected_with_a_reason(ros_environment, running, frames, index, changes,
                                                               reason_text):
    node, client, publisher, received = running
    [result] = client.set_parameters(NODE, changes)
    assert not result.successful
    assert reason_text in result.reason, result.reason
    _process_good_frame(running, frames[0], index, flow_expected=False)
    _process_good_frame(running, frames[1], index + 1, flow_expected=True)


def _start_and_expect_exit(tmp_path, parameters: dict) -> tuple[int, str]:
    node = NodeProcess(tmp_path / "node.log", parameters, namespace="/efc_broken")
    code = node.wait_exit(60)
    return code, node.log()


@pytest.mark.slow
def test_missing_mismatched_model_and_bad_parameters_stop_the_process_with_one_line(ros_environment, demo_model,
                                                                                    tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for sibling in demo_model.parent.glob(demo_model.stem + ".*"):
        shutil.copy(sibling, broken / sibling.name)
    (broken / demo_model.name).write_bytes(b"this is not an onnx graph")
    cases = {
        "missing": ({"model_path": str(tmp_path / "nowhere.onnx")}, "does not exist"),
        "corrupt": ({"model_path": str(broken / demo_model.name)}, "cannot load"),
        "wrong_backend": ({"model_path": str(demo_model), "backend": "tensorrt"}, "cannot start"),
        "bad_choice": ({"model_path": str(demo_model), "resize_mode": "crop"}, "resize_mode must be one of"),
        "out_of_range": ({"model_path": str(demo_model), "qos_depth": 0}, "qos_depth"),
        "bad_size": ({"model_path": str(demo_model), "input_width": 100, "input_height": 64}, "cannot start"),
    }
    processes = {}
    for name, (parameters, _) in cases.items():  # all at once: each start costs seconds
        folder = tmp_path / name
        folder.mkdir()
        processes[name] = NodeProcess(folder / "node.log", parameters, namespace=f"/efc_broken_{name}")
    for name, (_, text) in cases.items():
        code = processes[name].wait_exit(90)
        log = processes[name].log()
        assert code != 0, f"{name}: exit code {code}\n{log}"
        assert "Traceback" not in log, f"{name}:\n{log}"
        reason_lines = [line for line in log.splitlines() if "cannot start" in line]
        assert len(reason_lines) == 1 and text in reason_lines[0], f"{name}:\n{log}"
