"""The perception node: worker, parameters, diagnostics, and the real node in its own process.

The node runs as ``python -m efc_ros.perception_node`` with reliable QoS (set through its
parameters) so that frames can be counted exactly; its outputs are compared with what the
``Perceptor`` computes directly on the same frames.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from efc_ros.diagnostics import NodeStatistics, status_values
from efc_ros.inference_worker import LatestFrameWorker
from efc_ros.node_parameters import (
    PARAMETER_SPECS,
    ParameterError,
    PerceptionParameters,
    check_parameter_changes,
)
from tests.ros.ros_helpers import spin_in_background, NodeProcess, RosClient, frame_stamp, messages_with_stamp, stamp_ns

NAMESPACE = "/efc_test"
HEIGHT, WIDTH, NUM_FRAMES = 96, 128, 5


# ---- latest-frame-wins worker (no ROS) ----

def test_worker_drops_stale_frames_and_processes_the_newest():
    gate = threading.Event()
    processed: list[int] = []
    dropped: list[int] = []

    def process(item: int) -> None:
        if item == 0:
            gate.wait(5)
        processed.append(item)

    worker = LatestFrameWorker(process, lambda item, error: None, on_drop=dropped.append)
    worker.submit(0)
    assert RosClient.wait_for(lambda: not worker.idle and worker.submitted == 1 and worker._has_pending is False, 2)
    for item in (1, 2, 3):
        worker.submit(item)  # 0 is still running: 1 and 2 are replaced before the worker is free
    gate.set()
    assert worker.wait_idle(5)
    assert processed == [0, 3]
    assert dropped == [1, 2] and worker.dropped == 2 and worker.processed == 2
    assert worker.stop(2)


def test_worker_survives_exceptions_and_stop_joins_the_thread():
    errors: list[tuple[str, str]] = []
    processed: list[str] = []

    def process(item: str) -> None:
        if item == "bad":
            raise ValueError("bad frame")
        processed.append(item)

    worker = LatestFrameWorker(process, lambda item, error: errors.append((item, str(error))))
    for item in ("bad", "good"):
        worker.submit(item)
        assert worker.wait_idle(5)
    assert errors == [("bad", "bad frame")] and processed == ["good"] and worker.failed == 1
    assert worker.stop(2) and not worker._thread.is_alive()
    assert worker.submit("late") is False
    time.sleep(0.05)
    assert processed == ["good"]


def test_submit_never_waits_for_processing():
    gate = threading.Event()
    worker = LatestFrameWorker(lambda item: gate.wait(5), lambda item, error: None)
    worker.submit(0)
    started = time.perf_counter()
    for item in range(1, 200):
        worker.submit(item)
    assert time.perf_counter() - started < 0.5
    gate.set()
    worker.stop(5)


# ---- parameters (no ROS) ----

def test_parameter_table_matches_the_typed_snapshot():
    defaults = PerceptionParameters()
    assert {spec.name for spec in PARAMETER_SPECS} == set(defaults.__dataclass_fields__)
    for spec in PARAMETER_SPECS:
        assert getattr(defaults, spec.name) == spec.default, spec.name
        descriptor = spec.descriptor()
        assert descriptor.description and descriptor.read_only == spec.read_only
        assert bool(descriptor.integer_range) == (spec.int_range is not None)
        assert bool(descriptor.floating_point_range) == (spec.float_range is not None)


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"backend": "tensorrt"}, "backend is read-only"),
        ({"occlusion_threshold": 1.5}, r"occlusion_threshold must be in \[0.0, 1.0\], got 1.5"),
        ({"max_frame_gap": 0.0}, "max_frame_gap must be in"),
        ({"log_throttle_sec": "often"}, "log_throttle_sec must be of type float"),
        ({"no_such_parameter": 1}, "unknown parameter 'no_such_parameter'"),
    ],
)
def test_bad_runtime_changes_are_rejected_with_a_reason(changes, reason):
    message = check_parameter_changes(PerceptionParameters(), changes)
    assert message is not None
    assert pytest.importorskip("re").search(reason, message), message


def test_good_runtime_changes_and_start_up_rules():
    assert check_parameter_changes(PerceptionParameters(),
                                   {"occlusion_threshold": 0.25, "temporal_fusion": 0.5}) is None
    with pytest.raises(ParameterError, match="input_width and input_height must both be 0"):
        PerceptionParameters().replace({"input_width": 320})
    with pytest.raises(ParameterError, match="resize_mode must be one of letterbox, stretch; got 'crop'"):
        PerceptionParameters().replace({"resize_mode": "crop"})
    assert PerceptionParameters().replace({"input_width": 320, "input_height": 256}).input_size == (256, 320)


# ---- diagnostics (no ROS) ----

def test_statistics_report_rates_drops_and_latencies():
    now = [100.0]
    stats = NodeStatistics(clock=lambda: now[0])
    for index in range(10):
        now[0] = 100.0 + 0.1 * (index + 1)
        stats.record_received()
    for value in (10.0, 20.0, 30.0, 40.0):
        stats.record_processed({"inference": value, "end_to_end": 2 * value}, pair_reset=False)
    for _ in range(3):
        stats.record_dropped()
    stats.record_error("input", "unsupported image encoding 'foo'")
    values = status_values(stats.report(name="n", hardware_id="h", info={"backend": "onnxruntime"}, period_s=1.0))
    assert values["backend"] == "onnxruntime"
    assert float(values["input_rate_hz"]) == pytest.approx(10.0)
    assert float(values["output_rate_hz"]) == pytest.approx(4.0)
    assert (values["frames_dropped"], values["errors"], values["errors_input"]) == ("3", "1", "1")
    assert float(values["inference_ms_mean"]) == pytest.approx(25.0)
    assert float(values["end_to_end_ms_max"]) == pytest.approx(80.0)
    assert "unsupported image encoding" in values["last_error"]
    now[0] += 10.0  # no input for 10 periods
    status = stats.report(name="n", hardware_id="h", info={}, period_s=1.0)
    assert status.message == "no input images" and status.level == status.WARN
    assert status_values(status)["inference_ms_mean"] == "nan"  # the window restarted


# ---- the node in its own process ----

OUTPUT_TOPICS = ("segmentation", "segmentation/color", "overlay", "flow", "flow/color", "flow/prev_stamp",
                 "occlusion", "occlusion/probability")


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """(T, H, W, 3) uint8 synthetic camera frames with moving objects."""
    from efc_core.data.synthetic import SyntheticConfig, generate_sequence

    return generate_sequence(SyntheticConfig(height=HEIGHT, width=WIDTH, num_frames=NUM_FRAMES), seed=3).frames


@pytest.fixture(scope="module")
def node_and_client(demo_model, tmp_path_factory):
    """One node process for the module (reliable input, occlusion probability on) and a client on every output."""
    from sensor_msgs.msg import Image, TimeReference
    from diagnostic_msgs.msg import DiagnosticArray

    log = tmp_path_factory.mktemp("node") / "node.log"
    node = NodeProcess(log, {"model_path": str(demo_model), "qos_reliability": "reliable", "qos_depth": 50,
                             "publish_occlusion_probability": True, "num_threads": 1}, namespace=NAMESPACE)
    client = RosClient("efc_test_client")
    received = {topic: client.subscribe(TimeReference if topic == "flow/prev_stamp" else Image, f"{NAMESPACE}/{topic}")
                for topic in OUTPUT_TOPICS}
    received["/diagnostics"] = client.subscribe(DiagnosticArray, "/diagnostics")
    publisher = client.publisher(Image, f"{NAMESPACE}/image")
    ready = client.wait_for(lambda: publisher.get_subscription_count() > 0
                            and all(client.node.count_publishers(f"{NAMESPACE}/{t}") for t in OUTPUT_TOPICS), 90, 0.1)
    if not ready:
        node.stop()
        pytest.fail(f"node did not come up in 90 s; its log:\n{node.log()}")
    # Our output subscriptions must be matched too, or the first outputs are lost to discovery.
    time.sleep(1.0)
    yield node, client, publisher, received
    client.close()
    node.stop()


def _publish(publisher, rgb: np.ndarray, index: int, *, frame_id: str = "camera", encoding: str = "rgb8"):
    from std_msgs.msg import Header

    from efc_ros.image_conversions import rgb_to_image_msg

    header = Header(stamp=frame_stamp(index), frame_id=frame_id)
    publisher.publish(rgb_to_image_msg(rgb, encoding, header))
    return header


@pytest.fixture(scope="module")
def lockstep_run(node_and_client, frames):
    """Publish the frames one at a time, each after the previous one's outputs arrived."""
    node, client, publisher, received = node_and_client
    headers, latencies = [], []
    for index, rgb in enumerate(frames):
        sent = time.monotonic()
        header = _publish(publisher, rgb, index)
        headers.append(header)
        wanted = ("segmentation", "segmentation/color", "overlay") if index == 0 else OUTPUT_TOPICS
        if not client.wait_for(lambda: all(messages_with_stamp(received[t], header.stamp) for t in wanted), 30):
            pytest.fail(f"frame {index}: missing outputs "
                        f"{[t for t in wanted if not messages_with_stamp(received[t], header.stamp)]}; "
                        f"log:\n{node.log()}")
        latencies.append(time.monotonic() - sent)
    time.sleep(0.3)  # anything published late for the first frame would show up now
    return headers, received, latencies


@pytest.mark.slow
@pytest.mark.ros
def test_every_frame_after_the_first_yields_all_outputs_with_the_input_header(ros_environment, lockstep_run, frames):
    headers, received, _ = lockstep_run
    expected_encoding = {"segmentation": ("mono8", 1), "segmentation/color": ("rgb8", 3), "overlay": ("rgb8", 3),
                         "flow": ("32FC2", 8), "flow/color": ("rgb8", 3), "occlusion": ("mono8", 1),
                         "occlusion/probability": ("32FC1", 4)}
    for index, header in enumerate(headers):
        for topic, (encoding, bytes_per_pixel) in expected_encoding.items():
            messages = messages_with_stamp(received[topic], header.stamp)
            if index == 0 and topic.split("/")[0] in ("flow", "occlusion"):
                assert messages == [], f"{topic} published for the first frame, which has no predecessor"
                continue
            assert len(messages) == 1, (topic, index)
            msg = messages[0]
            assert msg.header.frame_id == "camera"
            assert (msg.encoding, msg.height, msg.width, msg.is_bigendian) == (encoding, HEIGHT, WIDTH, 0), topic
            assert msg.step == WIDTH * bytes_per_pixel and len(msg.data) == HEIGHT * msg.step, topic
        if index > 0:
            [prev_stamp] = messages_with_stamp(received["flow/prev_stamp"], header.stamp)
            assert stamp_ns(prev_stamp.time_ref) == stamp_ns(headers[index - 1].stamp)
            assert prev_stamp.header.frame_id == "camera"


@pytest.mark.slow
@pytest.mark.ros
def test_outputs_equal_what_the_perceptor_computes_directly(ros_environment, lockstep_run, frames, demo_model):
    from efc_core import viz
    from efc_core.perceptor_config import PerceptorConfig, build_perceptor
    from efc_core.runtime import create_backend
    from efc_ros.image_conversions import image_msg_to_array

    headers, received, _ = lockstep_run
    backend = create_backend("onnxruntime", demo_model, intra_op_threads=1)
    perceptor = build_perceptor(PerceptorConfig(), backend)   # the node's settings: flow refinement on
    palette = np.asarray(backend.manifest.palette, np.uint8)
    for index, (rgb, header) in enumerate(zip(frames, headers)):
        expected = perceptor.process(rgb, stamp_ns(header.stamp), "camera")
        [segmentation] = messages_with_stamp(received["segmentation"], header.stamp)
        got_labels = image_msg_to_array(segmentation)
        assert (got_labels == expected.segmentation).mean() > 0.999
        [colour] = messages_with_stamp(received["segmentation/color"], header.stamp)
        np.testing.assert_array_equal(image_msg_to_array(colour), viz.colorize_labels(got_labels, palette))
        if index == 0:
            continue
        [flow] = messages_with_stamp(received["flow"], header.stamp)
        np.testing.assert_allclose(image_msg_to_array(flow), expected.flow, atol=1e-3)
        [probability] = messages_with_stamp(received["occlusion/probability"], header.stamp)
        np.testing.assert_allclose(image_msg_to_array(probability), expected.occlusion, atol=1e-4)
        [mask] = messages_with_stamp(received["occlusion"], header.stamp)
        np.testing.assert_array_equal(image_msg_to_array(mask) == 255, image_msg_to_array(probability) > 0.5)
    backend.close()


def _latest_status(received: list, node_fqn: str) -> dict[str, str] | None:
    for array in reversed(list(received)):
        for status in array.status:
            if status.name.endswith(node_fqn):
                return status_values(status)
    return None


@pytest.mark.slow
@pytest.mark.ros
def test_runtime_parameter_change_applies_to_the_next_frame(ros_environment, node_and_client, lockstep_run, frames):
    from efc_ros.image_conversions import image_msg_to_array

    node, client, publisher, received = node_and_client
    [result] = client.set_parameters(f"{NAMESPACE}/efc_perception", {"occlusion_threshold": 0.0})
    assert result.successful, result.reason
    header = _publish(publisher, frames[0], 50)  # 4.6 s after frame 4: a fresh pair starts
    assert client.wait_for(lambda: messages_with_stamp(received["segmentation"], header.stamp), 30), node.log()
    header = _publish(publisher, frames[1], 51)
    assert client.wait_for(lambda: messages_with_stamp(received["occlusion"], header.stamp), 30), node.log()
    [mask] = messages_with_stamp(received["occlusion"], header.stamp)
    [probability] = messages_with_stamp(received["occlusion/probability"], header.stamp)
    # Threshold 0: every pixel with a positive probability (a sigmoid: all of them) is occluded.
    np.testing.assert_array_equal(image_msg_to_array(mask) == 255, image_msg_to_array(probability) > 0.0)
    [result] = client.set_parameters(f"{NAMESPACE}/efc_perception", {"occlusion_threshold": 0.5})
    assert result.successful


@pytest.mark.slow
@pytest.mark.ros
def test_frames_faster_than_inference_are_dropped_and_the_newest_processed(ros_environment, node_and_client,
                                                                           lockstep_run, frames):
    node, client, publisher, received = node_and_client
    first, count = 100, 20
    segmentation_before = len(received["segmentation"])
    for offset in range(count):  # ~200 fps: far faster than inference (~100+ ms per frame here)
        header = _publish(publisher, frames[offset % len(frames)], first + offset)
        time.sleep(0.005)
    published_last = time.monotonic()
    assert client.wait_for(lambda: messages_with_stamp(received["segmentation"], header.stamp), 30), node.log()
    latency = time.monotonic() - published_last
    outputs = len(received["segmentation"]) - segmentation_before
    print(f"flood: {count} frames in, {outputs} segmentations out, newest frame's latency {latency * 1e3:.0f} ms")
    assert outputs < count
    # At most the frame in flight plus the newest one: the newest never waits behind a queue.
    single_frame = max(lockstep_run[2])
    assert latency < 3 * single_frame + 1.0, (latency, single_frame)
    # The node reports the drops once per second.
    deadline_values = lambda: _latest_status(received["/diagnostics"], f"{NAMESPACE}/efc_perception")  # noqa: E731
    # Every frame that produced no output was dropped (and counted), except the one in flight.
    # Wait for a report issued after the flood: a 1 Hz report can come out in the middle of it.
    expected_drops = count - outputs - 1
    assert client.wait_for(lambda: (v := deadline_values()) is not None and int(v["frames_dropped"]) >= expected_drops,
                           5), \
        deadline_values()
    values = deadline_values()
    assert values["backend"] == "onnxruntime" and values["precision"] == "fp32"
    for stage in ("decode", "preprocess", "inference", "postprocess", "publish", "end_to_end"):
        assert f"{stage}_ms_mean" in values


@pytest.mark.slow
@pytest.mark.ros
def test_sigint_shuts_the_node_down_cleanly(ros_environment, node_and_client, lockstep_run):
    node, client, publisher, received = node_and_client
    assert node.stop() == 0
    log = node.log()
    assert "Traceback" not in log, log


# ---- lifecycle variant (in this process, driven through its real lifecycle services) ----

@pytest.mark.slow
@pytest.mark.ros
def test_lifecycle_node_loads_in_configure_and_processes_only_while_active(ros_environment, demo_model, frames,
                                                                           tmp_path):
    import rclpy
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image

    from efc_ros.lifecycle_node import PerceptionLifecycleNode

    namespace, context = "/efc_lifecycle", rclpy.Context()
    rclpy.init(context=context)
    node = PerceptionLifecycleNode(context=context, namespace=namespace, parameter_overrides=[
        Parameter("model_path", value=str(tmp_path / "missing.onnx")), Parameter("qos_reliability", value="reliable")])
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = spin_in_background(executor)
    client = RosClient("efc_lifecycle_client")
    service = f"{namespace}/efc_perception"

    def change(transition: int, idempotent: bool = False) -> bool:
        request = ChangeState.Request(transition=Transition(id=transition))
        return client.call_service(ChangeState, f"{service}/change_state", request, idempotent=idempotent).success

    def state() -> str:
        return client.call_service(GetState, f"{service}/get_state", GetState.Request(),
                                   idempotent=True).current_state.label

    try:
        assert state() == "unconfigured" and node.backend is None
        # Activating before configuring is refused and changes nothing, so it may be resent; it
        # also matches the change_state client's reply path before the calls that change state.
        assert not change(Transition.TRANSITION_ACTIVATE, idempotent=True) and state() == "unconfigured"
        assert not change(Transition.TRANSITION_CONFIGURE)  # the model is missing: configure fails
        assert state() == "unconfigured"
        # Fixed over ROS (issue 13): model_path is settable while unconfigured, then configure retried.
        [result] = client.set_parameters(service, {"model_path": str(demo_model)})
        assert result.successful, result.reason
        assert change(Transition.TRANSITION_CONFIGURE) and state() == "inactive" and node.backend is not None
        [refused] = client.set_parameters(service, {"model_path": str(tmp_path / "other.onnx")})
        assert not refused.successful and "read-only" in refused.reason
        assert node.settings.model_path == str(demo_model)
        segmentation = client.subscribe(Image, f"{namespace}/segmentation")
        publisher = client.publisher(Image, f"{namespace}/image")
        assert client.node.count_subscribers(f"{namespace}/image") == 0  # inactive: not subscribed
        assert change(Transition.TRANSITION_ACTIVATE) and state() == "active"
        assert client.wait_for(lambda: publisher.get_subscription_count() > 0, 10)
        time.sleep(0.5)
        header = _publish(publisher, frames[0], 0)
        assert client.wait_for(lambda: messages_with_stamp(segmentation, header.stamp), 30)
        assert change(Transition.TRANSITION_DEACTIVATE) and state() == "inactive"
        assert client.wait_for(lambda: publisher.get_subscription_count() == 0, 10)
        assert change(Transition.TRANSITION_CLEANUP) and state() == "unconfigured" and node.backend is None
    finally:
        client.close()
        executor.shutdown()
        spinner.join(5)
        node.destroy_node()
        rclpy.try_shutdown(context=context)


_NO_TORCH_PROBE = """
import sys
import numpy as np
import efc_ros.perception_node, efc_ros.lifecycle_node, efc_ros.multi_camera
from efc_core.perceptor import Perceptor
from efc_ros.node_parameters import PerceptionParameters
from efc_ros.perception_node import load_backend
backend = load_backend(PerceptionParameters(model_path=sys.argv[1], num_threads=1))
Perceptor(backend).process(np.zeros((64, 96, 3), np.uint8), 0, "camera")
print("torch" in sys.modules)
"""


def test_node_and_onnxruntime_path_never_import_torch(demo_model):
    import subprocess
    import sys

    completed = subprocess.run([sys.executable, "-c", _NO_TORCH_PROBE, str(demo_model)],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.slow
@pytest.mark.ros
def test_colour_images_are_computed_only_while_someone_subscribes(ros_environment, demo_model, frames, monkeypatch):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image

    from efc_core import viz
    from efc_ros.perception_node import PerceptionNode

    calls = {"colorize_labels": 0, "flow_to_color": 0, "overlay": 0}
    for name in calls:  # count calls, keep the real functions
        real = getattr(viz, name)
        monkeypatch.setattr(viz, name, lambda *a, _real=real, _name=name,
                            **k: (calls.__setitem__(_name, calls[_name] + 1), _real(*a, **k))[1])
    namespace, context = "/efc_colour", rclpy.Context()
    rclpy.init(context=context)
    node = PerceptionNode(context=context, namespace=namespace, parameter_overrides=[
        Parameter("model_path", value=str(demo_model)), Parameter("qos_reliability", value="reliable"),
        Parameter("num_threads", value=1)])
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = spin_in_background(executor)
    client = RosClient("efc_colour_client")
    try:
        flow = client.subscribe(Image, f"{namespace}/flow")
        publisher = client.publisher(Image, f"{namespace}/image")
        assert client.wait_for(lambda: publisher.get_subscription_count() > 0
                               and node.count_subscribers(f"{namespace}/flow") > 0, 10)
        _publish(publisher, frames[0], 0)
        assert client.wait_for(lambda: node.statistics.frames_processed == 1, 30)
        header = _publish(publisher, frames[1], 1)
        assert client.wait_for(lambda: messages_with_stamp(flow, header.stamp), 30)
        assert calls == {"colorize_labels": 0, "flow_to_color": 0, "overlay": 0}
        colour = client.subscribe(Image, f"{namespace}/flow/color")
        assert client.wait_for(lambda: node.count_subscribers(f"{namespace}/flow/color") > 0, 10)
        header = _publish(publisher, frames[2], 2)
        assert client.wait_for(lambda: messages_with_stamp(colour, header.stamp), 30)
        assert calls["flow_to_color"] == 1 and calls["colorize_labels"] == 0 and calls["overlay"] == 0
    finally:
        client.close()
        executor.shutdown()
        spinner.join(5)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
