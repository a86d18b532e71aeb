"""Only subscribed outputs are computed and published; ``flow_scale`` shrinks flow consistently.

The node runs in this process (own rclpy context) so that the Perceptor calls can be observed.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.ros.ros_helpers import RosClient, publish_frame, require_loopback_environment, spin_in_background

pytestmark = pytest.mark.ros

NAMESPACE = "/efc_demand"


def test_unsubscribed_outputs_are_skipped_and_flow_scale_halves_flow(ros_environment, demo_model) -> None:
    require_loopback_environment()
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image, TimeReference

    from efc_ros.image_conversions import image_msg_to_array
    from efc_ros.perception_node import PerceptionNode

    context = rclpy.Context()
    rclpy.init(context=context)
    node = PerceptionNode(context=context, namespace=NAMESPACE,
                          parameter_overrides=[Parameter("model_path", value=str(demo_model)),
                                               Parameter("num_threads", value=1),
                                               Parameter("qos_reliability", value="reliable"),
                                               Parameter("max_frame_gap", value=5.0),
                                               Parameter("flow_scale", value=0.5)])
    calls: list[dict] = []
    original = node._perceptor.process

    def spy(*args, **kwargs):
        calls.append({k: kwargs[k] for k in ("with_flow", "with_occlusion", "flow_scale")})
        return original(*args, **kwargs)

    node._perceptor.process = spy
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = spin_in_background(executor)
    client = RosClient("efc_demand_client")
    try:
        flow = client.subscribe(Image, f"{NAMESPACE}/flow")
        prev = client.subscribe(TimeReference, f"{NAMESPACE}/flow/prev_stamp")
        publisher = client.publisher(Image, f"{NAMESPACE}/image", depth=10)
        assert client.wait_for(lambda: publisher.get_subscription_count() > 0
                               and node._outputs.publishers["flow"].get_subscription_count() > 0, 30)
        time.sleep(0.5)
        rng = np.random.default_rng(0)
        for index in range(3):
            publish_frame(publisher, rng.integers(0, 255, (120, 200, 3), dtype=np.uint8), index)
            assert client.wait_for(lambda: len(calls) > index and node._worker.idle, 30)
        assert client.wait_for(lambda: len(flow) == 2 and len(prev) == 2, 10)
        # Nobody subscribed to occlusion (or its probability): never brought to input size.
        assert [c["with_occlusion"] for c in calls] == [False] * 3
        assert [c["with_flow"] for c in calls] == [True] * 3 and calls[0]["flow_scale"] == 0.5
        assert (flow[0].height, flow[0].width, flow[0].encoding) == (60, 100, "32FC2")
        assert image_msg_to_array(flow[0]).shape == (60, 100, 2)
        # Without a flow subscriber, flow is not computed either; prev_stamp still marks the pair.
        flow_subscription = next(s for s in client.node.subscriptions if s.topic_name == f"{NAMESPACE}/flow")
        client.node.destroy_subscription(flow_subscription)
        assert client.wait_for(lambda: node._outputs.publishers["flow"].get_subscription_count() == 0, 10)
        publish_frame(publisher, rng.integers(0, 255, (120, 200, 3), dtype=np.uint8), 3)
        assert client.wait_for(lambda: len(calls) == 4 and len(prev) == 3, 30)
        assert calls[-1]["with_flow"] is False and len(flow) == 2
    finally:
        client.close()
        executor.shutdown()
        spinner.join(5)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
