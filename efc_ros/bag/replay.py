"""``efc bag replay``: play a bag into the running node through rclpy and record what it publishes.

This measures the node as deployed (transport, drops, latency) on machines without ``ros2 bag``:
camera messages are published, as recorded (serialised CDR, no conversion), at the bag's rate
times ``rate``; the node's outputs are recorded with their receive time, together with the camera
messages at their publish time and the ground-truth topics, into a bag that ``efc bag eval``
then scores (latency = output receive time - camera publish time).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from efc_core.errors import InputError
from efc_ros.bag.io import BagOutput, find_image_topic, open_bag
from efc_ros.bag.integrity import IntegrityReport, drop_corrupt_chunks
from efc_ros.output_paths import check_output_apart

#: Node outputs recorded (relative to the node's namespace) and their types.
RECORDED_OUTPUTS = {
    "segmentation": "sensor_msgs/msg/Image",
    "flow": "sensor_msgs/msg/Image",
    "occlusion": "sensor_msgs/msg/Image",
    "occlusion/probability": "sensor_msgs/msg/Image",
}


@dataclass(frozen=True)
class ReplayOptions:
    """How to replay: target namespace, speed, and how long to wait for matching and draining (s)."""

    namespace: str = ""
    image_topic: str = "image"
    rate: float = 1.0
    storage: str = "mcap"
    match_timeout_s: float = 20.0
    drain_timeout_s: float = 10.0
    reliable: bool = True


def _topic(namespace: str, name: str) -> str:
    namespace = namespace.strip("/")
    return f"/{namespace}/{name}" if namespace else f"/{name}"


def replay_bag(input_bag: str | Path, output_bag: str | Path, options: ReplayOptions, *,
               topic: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Replay ``input_bag`` into the node and record ``output_bag``; returns counts.

    The node must already run with its ``image`` input at ``options.namespace``/``image_topic``.
    ``InputError`` when the bag is unusable or the node never subscribes.
    """
    if not options.rate > 0:
        raise ValueError(f"rate must be > 0, got {options.rate}")
    from efc_ros.dds_profile import use_large_image_profile

    # Before the first participant of this process: 640x480 frames and the node's flow output
    # through best-effort QoS need the large shared-memory segment (README "Large images over DDS").
    use_large_image_profile()
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image

    reliability = ReliabilityPolicy.RELIABLE if options.reliable else ReliabilityPolicy.BEST_EFFORT
    qos = QoSProfile(depth=50, reliability=reliability)
    check_output_apart(output_bag, [input_bag])  # before the node is started
    with open_bag(input_bag) as reader:
        camera_topic, camera_type = find_image_topic(reader, topic)
        gt_connections = [c for c in reader.connections if c.topic.startswith("/ground_truth")]
        camera_connections = [c for c in reader.connections if c.topic == camera_topic]
        # Chunks failing their CRC are taken out (and counted) instead of ending the replay midway.
        integrity = IntegrityReport()
        drop_corrupt_chunks(reader, {c.topic for c in camera_connections + gt_connections}, integrity)
        context = rclpy.Context()
        rclpy.init(context=context)
        node = rclpy.create_node("efc_bag_replay", context=context)
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(node)
        counts = {"published": 0, "received": dict.fromkeys(RECORDED_OUTPUTS, 0), "integrity": integrity}
        try:
            with BagOutput(output_bag, storage=options.storage, overwrite=overwrite, inputs=[input_bag]) as output:
                def recorder(name: str):
                    def callback(raw: bytes) -> None:
                        counts["received"][name] += 1
                        output.write_raw(f"/efc/{name}", RECORDED_OUTPUTS[name], raw, time.time_ns())
                    return callback

                subscriptions = [node.create_subscription(Image, _topic(options.namespace, name), recorder(name), qos,
                                                          raw=True)
                                 for name in RECORDED_OUTPUTS]
                message_class = CompressedImage if camera_type.endswith("CompressedImage") else Image
                input_topic = _topic(options.namespace,
                                     options.image_topic + ("/compressed" if message_class is CompressedImage else ""))
                publisher = node.create_publisher(message_class, input_topic, qos)
                deadline = time.monotonic() + options.match_timeout_s
                while publisher.get_subscription_count() == 0 or any(s.get_publisher_count() == 0
                                                                     for s in subscriptions[:1]):
                    if time.monotonic() > deadline:
                        raise InputError(f"no node subscribed to {input_topic} within {options.match_timeout_s:.0f} s; "
                                         "is perception_node running?")
                    executor.spin_once(timeout_sec=0.05)
                start_wall = time.monotonic()
                first_bag_time: int | None = None
                for connection, bag_time, raw in reader.messages(connections=camera_connections + gt_connections):
                    first_bag_time = bag_time if first_bag_time is None else first_bag_time
                    target = start_wall + (bag_time - first_bag_time) * 1e-9 / options.rate
                    while (remaining := target - time.monotonic()) > 0:
                        executor.spin_once(timeout_sec=min(remaining, 0.005))
                    if connection.topic == camera_topic:
                        publisher.publish(bytes(raw))
                        counts["published"] += 1
                    output.write_raw(connection.topic, connection.msgtype, bytes(raw), time.time_ns())
                drain_until = time.monotonic() + options.drain_timeout_s
                while time.monotonic() < drain_until and counts["received"]["segmentation"] < counts["published"]:
                    executor.spin_once(timeout_sec=0.05)
                # Let late flow/occlusion messages of the last frame arrive too.
                settle = time.monotonic() + 0.5
                while time.monotonic() < settle:
                    executor.spin_once(timeout_sec=0.05)
        finally:
            executor.shutdown()
            node.destroy_node()
            rclpy.shutdown(context=context)
    return counts
