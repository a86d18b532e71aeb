"""Camera-sized images through DDS between real processes (README "Large images over DDS").

A 640x480 rgb8 camera at 30 Hz, best effort, in its own process; the node in another; a listener
in a third. With the shipped Fast DDS profile the node must receive >= 95 % of the frames; Fast
DDS's defaults are measured and printed (1-20 % here: the frame does not fit the 512 KB default
shared-memory segment and best effort drops fragmented UDP samples). The node's 2.5 MB ``flow``
output must reach a best-effort subscriber in another process that has *no* profile of its own
(a subscriber reads from the publisher's segment, so rviz2 or ``ros2 bag record`` need nothing).
Delivery is a rate over real transport, so it is asserted with a margin and printed, not timed.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from efc_ros.dds_profile import profile_environment, shipped_profile
from tests.ros import camera_process
from tests.ros.ros_helpers import NodeProcess, RosClient, publish_frame, require_loopback_environment

pytestmark = pytest.mark.ros

NAMESPACE = "/efc_dds"
FRAMES = 90


def _node_status(diagnostics: list, since: float) -> dict[str, str]:
    """Values of the node's newest /diagnostics status received after ``since`` (monotonic)."""
    for stamp, array in reversed(list(diagnostics)):
        if stamp < since:
            break
        for status in array.status:
            if status.name.endswith(f"{NAMESPACE}/efc_perception"):
                return {kv.key: kv.value for kv in status.values}
    return {}


@pytest.fixture(scope="module")
def node_and_client(tmp_path_factory, demo_model):
    """The node (default best-effort input, the shipped profile from conftest) and a client."""
    require_loopback_environment()
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import TimeReference

    log = Path(tmp_path_factory.mktemp("dds")) / "node.log"
    node = NodeProcess(log, {"model_path": str(demo_model), "max_frame_gap": 5.0, "diagnostics_period": 0.5},
                       namespace=NAMESPACE)
    client = RosClient("efc_dds_client")
    diagnostics: list = []
    client.node.create_subscription(DiagnosticArray, "/diagnostics",
                                    lambda msg: diagnostics.append((time.monotonic(), msg)), 50)
    prev_stamps = client.subscribe(TimeReference, f"{NAMESPACE}/flow/prev_stamp")
    if not client.wait_for_publishers([f"{NAMESPACE}/segmentation", f"{NAMESPACE}/flow/prev_stamp"], 120):
        client.close()
        node.stop()
        pytest.fail(f"node did not start:\n{node.log()}")
    yield node, client, diagnostics, prev_stamps
    client.close()
    node.stop()


def _deliver(client, diagnostics, env: dict[str, str], start_s: int) -> tuple[int, dict[str, str], dict[str, str]]:
    """Run a camera process with ``env``; (frames the node received, status before, status after)."""
    before_time = time.monotonic()
    client.wait_for(lambda: bool(_node_status(diagnostics, before_time)), 10)
    before = _node_status(diagnostics, before_time)
    sent = camera_process.run("publish", f"{NAMESPACE}/image", "--frames", str(FRAMES), "--start-s", str(start_s),
                              env=env)
    assert sent.get("sent") == FRAMES, sent
    after_time = time.monotonic() + 1.0  # a report issued after the last frame arrived
    client.wait_for(lambda: bool(_node_status(diagnostics, after_time)), 10)
    after = _node_status(diagnostics, after_time)
    return int(after["frames_received"]) - int(before["frames_received"]), before, after


def test_640x480_best_effort_camera_reaches_the_node_with_the_shipped_profile(node_and_client) -> None:
    node, client, diagnostics, _ = node_and_client
    with_profile = profile_environment(shipped_profile(localhost=True))
    received, _, after = _deliver(client, diagnostics, with_profile, start_s=1000)
    without, before_default, after_default = _deliver(client, diagnostics, profile_environment(None), start_s=2000)
    lost_default = int(after_default["frames_lost_in_transport"]) - int(before_default["frames_lost_in_transport"])
    print(f"\n640x480 rgb8 30 Hz best effort -> node: {received}/{FRAMES} with the shipped profile, "
          f"{without}/{FRAMES} with Fast DDS defaults (node counted {lost_default} lost from stamp gaps)")
    assert received >= 0.95 * FRAMES, f"{received}/{FRAMES} frames reached the node with the profile"
    # The loss count of the default-transport run is printed, not asserted: when the defaults drop
    # frames at a regular interval the surviving stamps look like a slower camera, which stamp
    # gaps cannot tell apart (seen once in a clean-clone run: lost 0). The counting itself is
    # tested on exact stamp sequences in test_transport_loss.py.


def test_flow_output_reaches_a_best_effort_subscriber_without_a_profile(node_and_client) -> None:
    node, client, diagnostics, prev_stamps = node_and_client
    from sensor_msgs.msg import Image

    from efc_core.data.synthetic import SyntheticConfig, generate_sequence

    listener = camera_process.start("listen", f"{NAMESPACE}/flow", "--seconds", "12", env=profile_environment(None))
    assert listener.stdout.readline().strip() == "READY"
    time.sleep(1.0)  # the node must see the listener's subscription before it computes flow
    publisher = client.publisher(Image, f"{NAMESPACE}/image", depth=5)
    client.wait_for(lambda: publisher.get_subscription_count() > 0, 10)
    frames = generate_sequence(SyntheticConfig(height=480, width=640, num_frames=8), seed=5).frames
    first = len(prev_stamps)
    for index in range(20):  # 5 Hz: the node keeps up, so every frame after the first is paired
        publish_frame(publisher, frames[index % len(frames)], 3000 + index)
        time.sleep(0.2)
    client.wait_for(lambda: len(prev_stamps) - first >= 15, 20)
    paired = len(prev_stamps) - first
    result = camera_process.finish(listener)
    print(f"\nflow 32FC2 640x480 (2.5 MB) -> best-effort subscriber without profile: "
          f"{result['received']} of {paired} flow messages")
    assert paired >= 15, f"only {paired} paired frames; node log:\n{node.log()}"
    assert result["shapes"] == [[480, 640, "32FC2", 480 * 640 * 8]]
    assert result["received"] >= 0.9 * paired
