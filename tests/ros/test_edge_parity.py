"""One edge layer (issue 15): every caller decodes and renders through ``efc_core.edge``.

* Table-driven: every encoding of ``RAW_ENCODINGS`` plus JPEG and PNG decodes to the same pixels
  through the shared decoder, the running node (what its Perceptor receives), ``efc bag process``
  (what its Perceptor receives) and the rosbag training dataset (``RosbagImageSource``).
* The node and ``efc bag process`` on the same frames publish the same set of topics with
  identical arrays (and identical ``flow/prev_stamp``).

The node runs in this process (own rclpy context), so the frames its Perceptor sees can be observed.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from efc_core.edge import render
from efc_core.edge.bag_io import COMPRESSED_TYPE, IMAGE_TYPE, TYPESTORE, open_bag
from efc_core.edge.image_decode import RAW_ENCODINGS, decode_raw
from efc_core.edge.image_encode import encode_camera
from efc_core.edge.stamps import ns_to_sec_nanosec, stamp_to_ns
from tests.ros.ros_helpers import RosClient, require_loopback_environment, spin_in_background

pytestmark = [pytest.mark.ros, pytest.mark.slow]  # about 6 min on a loaded 2-core machine

NAMESPACE = "/efc_parity"
TOPIC = "/camera/image_raw"
HEIGHT, WIDTH = 32, 48
STAMP0 = 1_000 * 1_000_000_000
PERIOD = 100_000_000


def _smooth_rgb(seed: int, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """A smooth colour image (smooth so that JPEG, 4:2:2 and Bayer stay close to it)."""
    coarse = np.random.default_rng(seed).uniform(0, 255, (5, 7, 3)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


#: (name, encoding or compression, row padding, big-endian): every raw encoding, padded and not,
#: 16-bit ones in both byte orders, then the two compressions.
CASES = [(name, name, 6 * (k % 2), k % 4 == 1) for k, name in enumerate(RAW_ENCODINGS)] + [
    ("jpeg", "jpeg", 0, False), ("png", "png", 0, False)]


def _frame_fields(index: int, kind: str, padding: int, bigendian: bool) -> dict:
    """Message fields of case ``index``: ``Image`` fields, or ``format`` and ``data`` for compression."""
    rgb = _smooth_rgb(index)
    if kind in ("jpeg", "png"):
        ok, encoded = cv2.imencode(".jpg" if kind == "jpeg" else ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        assert ok
        return {"format": kind, "data": encoded.reshape(-1)}
    layout = RAW_ENCODINGS[kind]
    step = WIDTH * layout.channels * layout.depth + padding
    packed = encode_camera(rgb, kind, step=step, is_bigendian=bigendian)
    return {"height": packed.height, "width": packed.width, "encoding": kind, "is_bigendian": packed.is_bigendian,
            "step": packed.step, "data": packed.data}


def _expected(fields: dict) -> np.ndarray:
    """The shared decoder's pixels for ``fields`` (OpenCV decodes the compressed ones)."""
    if "format" in fields:
        return cv2.cvtColor(cv2.imdecode(fields["data"], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return decode_raw(fields["data"], height=fields["height"], width=fields["width"], step=fields["step"],
                      encoding=fields["encoding"], is_bigendian=bool(fields["is_bigendian"]))


def _rosbags_message(fields: dict, stamp_ns: int):
    sec, nanosec = ns_to_sec_nanosec(stamp_ns)
    header = TYPESTORE.types["std_msgs/msg/Header"](
        stamp=TYPESTORE.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id="camera")
    msgtype = COMPRESSED_TYPE if "format" in fields else IMAGE_TYPE
    return msgtype, TYPESTORE.types[msgtype](header=header, **fields)


def _rclpy_message(fields: dict, stamp_ns: int):
    import array

    from sensor_msgs.msg import CompressedImage, Image

    msg = CompressedImage() if "format" in fields else Image()
    sec, nanosec = ns_to_sec_nanosec(stamp_ns)
    msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = sec, nanosec, "camera"
    for name, value in fields.items():
        setattr(msg, name, array.array("B", value.tobytes()) if name == "data" else value)
    return msg


def _write_bag(path: Path, messages: list[tuple[str, object, int]]) -> Path:
    from rosbags.rosbag2 import StoragePlugin, Writer

    with Writer(path, version=8, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection(TOPIC, messages[0][0], typestore=TYPESTORE)
        for msgtype, message, stamp in messages:
            writer.write(connection, stamp, TYPESTORE.serialize_cdr(message, msgtype))
    return path


class _InProcessNode:
    """The perception node in this process, with a spy on its Perceptor's ``process`` calls."""

    def __init__(self, demo_model: Path, parameters: dict) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.parameter import Parameter

        from efc_ros.perception_node import PerceptionNode

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        values = {"model_path": str(demo_model), "num_threads": 1, "qos_reliability": "reliable",
                  "qos_depth": 50, **parameters}
        self.node = PerceptionNode(context=self.context, namespace=NAMESPACE,
                                   parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
        self.calls: list[tuple[np.ndarray, str]] = []
        original = self.node._perceptor.process

        def spy(image, *args, **kwargs):
            self.calls.append((np.array(image), kwargs.get("image_format", "")))
            return original(image, *args, **kwargs)

        self.node._perceptor.process = spy
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.spinner = spin_in_background(self.executor)

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.spinner.join(5)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture(scope="module")
def running(demo_model):
    require_loopback_environment()
    node = _InProcessNode(demo_model, {"publish_occlusion_probability": True})
    client = RosClient("efc_parity_client")
    yield node, client
    client.close()
    node.close()


def _publish_and_wait(node: _InProcessNode, client: RosClient, publisher, msg) -> None:
    before = len(node.calls)
    publisher.publish(msg)
    assert client.wait_for(lambda: len(node.calls) > before and node.node._worker.idle, 30)


def test_every_encoding_decodes_identically_through_node_bag_tools_and_dataset(running, tmp_path, demo_model) -> None:
    from sensor_msgs.msg import CompressedImage, Image

    from efc_core.data.datasets.own_video import RosbagImageSource
    from efc_core.perceptor import Perceptor
    from efc_core.runtime import create_backend
    from efc_ros.bag.process import process_bag

    node, client = running
    fields = [_frame_fields(index, kind, padding, bigendian) for index,
              (_, kind, padding, bigendian) in enumerate(CASES)]
    expected = [_expected(f) for f in fields]
    stamps = [STAMP0 + index * PERIOD for index in range(len(CASES))]
    for index, (name, *_) in enumerate(CASES):
        # The table itself: each colour encoding brings the source image back, exactly or within
        # its loss (mean absolute error in grey levels); mono and Bayer keep less than colour.
        if not name.startswith(("bayer_", "mono")):
            error = np.abs(expected[index].astype(int) - _smooth_rgb(index).astype(int)).mean()
            assert error <= {"jpeg": 3, "yuv422": 6, "uyvy": 6, "yuv422_yuy2": 6, "yuyv": 6}.get(name, 0), name

    # The node: what its Perceptor receives for each message.
    raw_publisher = client.publisher(Image, f"{NAMESPACE}/image")
    assert client.wait_for(lambda: raw_publisher.get_subscription_count() > 0, 30)
    time.sleep(0.3)
    node.calls.clear()
    for field, stamp in zip(fields, stamps):
        if "format" not in field:
            _publish_and_wait(node, client, raw_publisher, _rclpy_message(field, stamp))
    node_raw = list(node.calls)

    # The bag tools and the dataset: one bag of raw frames, one of compressed frames.
    raw = [(i, _rosbags_message(f, s)) for i, (f, s) in enumerate(zip(fields, stamps)) if "format" not in f]
    packed = [(i, _rosbags_message(f, s)) for i, (f, s) in enumerate(zip(fields, stamps)) if "format" in f]
    seen_by_bag: list[tuple[np.ndarray, str]] = []
    dataset_pixels: list[np.ndarray] = []
    for group, name in ((raw, "raw"), (packed, "compressed")):
        bag = _write_bag(tmp_path / name, [(msgtype, message, stamps[i]) for i, (msgtype, message) in group])
        perceptor = Perceptor(create_backend("onnxruntime", demo_model, intra_op_threads=1))
        original = perceptor.process

        def spy(image, *args, _original=original, **kwargs):
            seen_by_bag.append((np.array(image), kwargs.get("image_format", "")))
            return _original(image, *args, **kwargs)

        perceptor.process = spy
        stats = process_bag(bag, tmp_path / f"{name}_out", perceptor, colors=False)
        assert stats.frames == len(group) and not stats.skipped_frames, stats.as_dict()
        source = RosbagImageSource(bag, TOPIC)
        dataset_pixels += [source.read(key) for sequence in source.sequences for key in sequence]

    # The node's compressed input: a second node listening on <image>/compressed.
    compressed_node = _InProcessNode(demo_model, {"use_compressed": True})
    try:
        compressed_publisher = client.publisher(CompressedImage, f"{NAMESPACE}/image/compressed")
        assert client.wait_for(lambda: compressed_publisher.get_subscription_count() > 0, 30)
        time.sleep(0.3)
        for index, _ in packed:
            _publish_and_wait(compressed_node, client, compressed_publisher,
                              _rclpy_message(fields[index], stamps[index]))
        node_all = node_raw + list(compressed_node.calls)
    finally:
        compressed_node.close()

    order = [i for i, _ in raw] + [i for i, _ in packed]
    assert len(node_all) == len(seen_by_bag) == len(dataset_pixels) == len(CASES)
    for position, index in enumerate(order):
        name = CASES[index][0]
        image_format = "compressed" if name in ("jpeg", "png") else name
        assert node_all[position][1] == seen_by_bag[position][1] == image_format
        np.testing.assert_array_equal(node_all[position][0], expected[index], err_msg=f"node, {name}")
        np.testing.assert_array_equal(seen_by_bag[position][0], expected[index], err_msg=f"bag process, {name}")
        np.testing.assert_array_equal(dataset_pixels[position], expected[index], err_msg=f"dataset, {name}")


def test_node_and_bag_process_publish_the_same_topics_with_identical_arrays(running, tmp_path, demo_model) -> None:
    from sensor_msgs.msg import Image, TimeReference

    from efc_core.perceptor_config import build_perceptor
    from efc_ros.bag.io import read_messages
    from efc_ros.bag.make_synthetic import CAMERA_TOPIC, SyntheticBagOptions, make_synthetic_bag
    from efc_ros.bag.process import OUTPUT_NAMESPACE, process_bag
    from efc_ros.image_conversions import image_msg_to_array

    node, client = running
    camera_bag = make_synthetic_bag(tmp_path / "camera", SyntheticBagOptions(num_frames=4, width=96, height=64, seed=2))
    with open_bag(camera_bag) as reader:
        frames = [item.message for item in read_messages(reader, [CAMERA_TOPIC])]

    # The node, with a subscriber on every output topic.
    received = {topic: client.subscribe(TimeReference if topic == render.FLOW_PREV_STAMP else Image,
                                        f"{NAMESPACE}/{topic}") for topic in render.OUTPUT_TOPICS}
    publisher = client.publisher(Image, f"{NAMESPACE}/image")
    assert client.wait_for(lambda: all(p.get_subscription_count() > 0 for p in node.node._outputs.publishers.values())
                           and publisher.get_subscription_count() > 0, 30)
    time.sleep(0.3)
    node.node._perceptor.reset()
    fields = ("height", "width", "encoding", "is_bigendian", "step", "data")
    for message in frames:
        _publish_and_wait(node, client, publisher,
                          _rclpy_message({f: getattr(message, f) for f in fields}, stamp_to_ns(message.header.stamp)))
    assert client.wait_for(lambda: len(received[render.SEGMENTATION]) == len(frames)
                           and len(received[render.OCCLUSION_PROBABILITY]) == len(frames) - 1, 10)

    # efc bag process on the same frames, with the node's Perceptor settings and render options.
    perceptor = build_perceptor(node.node.settings.perceptor_config())
    assert perceptor.flow_refinement == "variational"   # the default: refined flow in both paths
    process_bag(camera_bag, tmp_path / "out", perceptor)
    bag_outputs: dict[str, dict[int, object]] = {}
    with open_bag(tmp_path / "out") as reader:
        topics = [c.topic for c in reader.connections if c.topic.startswith(OUTPUT_NAMESPACE + "/")]
        for item in read_messages(reader, topics):
            bag_outputs.setdefault(item.topic[len(OUTPUT_NAMESPACE) + 1:], {})[
                stamp_to_ns(item.message.header.stamp)] = item.message

    node_topics = {topic for topic, messages in received.items() if messages}
    assert node_topics == set(bag_outputs) == set(render.OUTPUT_TOPICS)
    for topic in render.OUTPUT_TOPICS:
        node_messages = {stamp_to_ns(m.header.stamp): m for m in received[topic]}
        assert set(node_messages) == set(bag_outputs[topic]), topic
        for stamp, node_message in node_messages.items():
            bag_message = bag_outputs[topic][stamp]
            if topic == render.FLOW_PREV_STAMP:
                assert stamp_to_ns(node_message.time_ref) == stamp_to_ns(bag_message.time_ref)
                continue
            assert node_message.encoding == bag_message.encoding, topic
            np.testing.assert_array_equal(image_msg_to_array(node_message), image_msg_to_array(bag_message),
                                          err_msg=f"{topic} at {stamp}")
