"""Several cameras: two namespaced node processes at once, compressed input, best-effort loss,
and the single-process multi-camera variant sharing one backend.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from efc_ros.image_conversions import image_msg_to_array, rgb_to_compressed_msg
from tests.ros.ros_helpers import (
    NodeProcess,
    RosClient,
    frame_stamp,
    messages_with_stamp,
    publish_frame,
)

pytestmark = pytest.mark.ros

HEIGHT, WIDTH = 96, 128
RAW, COMPRESSED, MULTI = "/efc_cam1", "/efc_cam2", ("/efc_mc1", "/efc_mc2")


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    from efc_core.data.synthetic import SyntheticConfig, generate_sequence

    return generate_sequence(SyntheticConfig(height=HEIGHT, width=WIDTH, num_frames=4), seed=11).frames


@pytest.fixture(scope="module")
def cameras(demo_model, tmp_path_factory):
    """Three processes started together: raw best-effort node, compressed reliable node, multi-camera process."""
    logs = tmp_path_factory.mktemp("multi")
    common = {"model_path": str(demo_model), "num_threads": 1}
    processes = {
        RAW: NodeProcess(logs / "raw.log", common, namespace=RAW),  # default QoS: best effort
        COMPRESSED: NodeProcess(logs / "compressed.log", dict(common, use_compressed=True, qos_reliability="reliable"),
                                namespace=COMPRESSED),
        "multi": NodeProcess(logs / "multi.log", dict(common, qos_reliability="reliable"),
                             module="efc_ros.multi_camera",
                             program_args=("--cameras", *MULTI)),
    }
    client = RosClient("efc_multi_client")
    namespaces = (RAW, COMPRESSED, *MULTI)
    received = {(ns, topic): client.subscribe(Image, f"{ns}/{topic}")
                for ns in namespaces for topic in ("segmentation", "flow")}
    publishers = {
        RAW: client.publisher(Image, f"{RAW}/image", reliable=False),
        COMPRESSED: client.publisher(CompressedImage, f"{COMPRESSED}/image/compressed"),
        **{ns: client.publisher(Image, f"{ns}/image") for ns in MULTI},
    }
    ready = client.wait_for(lambda: all(p.get_subscription_count() > 0 for p in publishers.values())
                            and all(client.node.count_publishers(f"{ns}/flow") for ns in namespaces), 120, 0.2)
    if not ready:
        logs_text = "\n".join(f"--- {name}\n{p.log()}" for name, p in processes.items())
        client.close()
        for process in processes.values():
            process.stop()
        pytest.fail(f"nodes did not come up:\n{logs_text}")
    time.sleep(1.0)
    yield processes, client, publishers, received
    client.close()
    for name, process in processes.items():
        assert process.stop() == 0, f"{name}:\n{process.log()}"
        assert "Traceback" not in process.log(), process.log()


def _send_and_wait(cameras, namespace: str, rgb: np.ndarray, index: int, *, timeout: float = 30.0) -> Header | None:
    processes, client, publishers, received = cameras
    header = Header(stamp=frame_stamp(index), frame_id=namespace.strip("/"))
    if namespace == COMPRESSED:
        publishers[namespace].publish(rgb_to_compressed_msg(rgb, "png", header))
    else:
        publish_frame(publishers[namespace], rgb, index, frame_id=header.frame_id)
    if client.wait_for(lambda: messages_with_stamp(received[(namespace, "segmentation")], header.stamp), timeout):
        return header
    return None


@pytest.mark.slow
def test_compressed_png_input_gives_the_perceptor_outputs_of_the_raw_frames(ros_environment, cameras, frames,
                                                                            demo_model):
    from efc_core.perceptor_config import PerceptorConfig, build_perceptor
    from efc_core.runtime import create_backend

    processes, client, publishers, received = cameras
    # The node's Perceptor: its settings' defaults (flow refinement on) around the same model.
    perceptor = build_perceptor(PerceptorConfig(), create_backend("onnxruntime", demo_model, intra_op_threads=1))
    for index, rgb in enumerate(frames[:3]):
        header = _send_and_wait(cameras, COMPRESSED, rgb, index)
        assert header is not None, processes[COMPRESSED].log()
        expected = perceptor.process(rgb, int(header.stamp.sec) * 10**9 + header.stamp.nanosec, header.frame_id)
        [segmentation] = messages_with_stamp(received[(COMPRESSED, "segmentation")], header.stamp)
        assert (image_msg_to_array(segmentation) == expected.segmentation).mean() > 0.999  # png is lossless
        if index:
            assert client.wait_for(lambda: messages_with_stamp(received[(COMPRESSED, "flow")], header.stamp), 5)
            [flow] = messages_with_stamp(received[(COMPRESSED, "flow")], header.stamp)
            np.testing.assert_allclose(image_msg_to_array(flow), expected.flow, atol=1e-3)


@pytest.mark.slow
def test_best_effort_input_loss_is_measured(ros_environment, cameras, frames):
    processes, client, publishers, received = cameras
    sent, first = 11, 20
    for offset in range(sent):  # paced slower than inference so that only transport can lose frames
        publish_frame(publishers[RAW], frames[offset % len(frames)], first + offset, frame_id="efc_cam1")
        time.sleep(0.4)
    client.wait_for(lambda: False, 1.0)
    arrived = sum(bool(messages_with_stamp(received[(RAW, "segmentation")], frame_stamp(first + k)))
                  for k in range(sent))
    print(f"best-effort input, {WIDTH}x{HEIGHT} rgb8: {sent - arrived} of {sent} frames lost")
    assert arrived > 0, processes[RAW].log()


@pytest.mark.slow
def test_namespaced_nodes_only_see_their_own_camera(ros_environment, cameras, frames):
    processes, client, publishers, received = cameras
    for namespace in (RAW, COMPRESSED):
        # Best effort may lose a frame: send until one comes through.
        assert any(_send_and_wait(cameras, namespace, frames[0], 40 + k, timeout=5)
                   for k in range(5)), processes[namespace].log()
    for namespace in (RAW, COMPRESSED):
        frame_ids = {m.header.frame_id for m in received[(namespace, "segmentation")]}
        assert frame_ids == {namespace.strip("/")}, (namespace, frame_ids)


@pytest.mark.slow
def test_one_process_serves_two_cameras_with_one_shared_backend(ros_environment, cameras, frames):
    processes, client, publishers, received = cameras
    assert "2 cameras ['/efc_mc1', '/efc_mc2'] share 1 backend(s)" in processes["multi"].log()
    for index in range(2):
        for namespace in MULTI:
            assert _send_and_wait(cameras, namespace, frames[index], 60 + index) is not None, processes["multi"].log()
    for namespace in MULTI:
        assert client.wait_for(lambda: messages_with_stamp(received[(namespace, "flow")], frame_stamp(61)), 10)
        assert {m.header.frame_id for m in received[(namespace, "segmentation")]} == {namespace.strip("/")}
