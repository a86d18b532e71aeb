"""A camera and a best-effort listener in processes of their own, for DDS delivery tests and benchmarks.

    python -m tests.ros.camera_process publish TOPIC --size 640x480 --rate 30 --frames 90
    python -m tests.ros.camera_process listen TOPIC --seconds 10 --encoding 32FC2

``publish`` waits until ``--subscribers`` readers matched, then sends rgb8 frames (stamps one
period apart, best effort unless ``--reliable``) and prints one JSON line with what it sent.
``listen`` subscribes best effort, waits until a publisher matched (``READY`` on stdout), then
counts messages for ``--seconds`` and prints one JSON line (count, distinct stamps, sizes). The
DDS profile is whatever the environment says (``efc_ros.dds_profile.profile_environment``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]

from tests.ros.ros_helpers import require_loopback_environment  # noqa: E402


def _node(name: str):
    import rclpy

    require_loopback_environment()
    rclpy.init()
    return rclpy.create_node(name)


def _qos(reliable: bool, depth: int):
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)


def publish(args: argparse.Namespace) -> dict[str, Any]:
    """Send ``args.frames`` rgb8 frames at ``args.rate`` Hz once ``args.subscribers`` readers matched."""
    import numpy as np
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from efc_core.data.synthetic import SyntheticConfig, generate_sequence
    from efc_ros.cli_args import parse_size_wh
    from efc_ros.image_conversions import rgb_to_image_msg

    height, width = parse_size_wh(args.size)
    node = _node("efc_test_camera")
    publisher = node.create_publisher(Image, args.topic, _qos(args.reliable, 5))
    deadline = time.monotonic() + args.match_timeout
    while publisher.get_subscription_count() < args.subscribers:
        if time.monotonic() > deadline:
            return {"error": f"{publisher.get_subscription_count()} of {args.subscribers} subscribers matched"}
        time.sleep(0.05)
    time.sleep(args.settle)  # the readers must also have matched us (discovery is two-way)
    frames = generate_sequence(SyntheticConfig(height=height, width=width, num_frames=8), seed=3).frames
    # Messages built before the clock starts, so the camera keeps its rate on a loaded CPU.
    period_ns = int(round(1e9 / args.rate))
    messages = []
    for index in range(args.frames):
        total = args.start_s * 1_000_000_000 + index * period_ns
        header = Header(stamp=Time(sec=total // 1_000_000_000, nanosec=total % 1_000_000_000), frame_id="camera")
        messages.append(rgb_to_image_msg(np.ascontiguousarray(frames[index % len(frames)]), "rgb8", header))
    started = time.perf_counter()
    for index, msg in enumerate(messages):
        time.sleep(max(0.0, started + index / args.rate - time.perf_counter()))
        publisher.publish(msg)
    elapsed = time.perf_counter() - started
    time.sleep(args.linger)  # keep the writer alive while the last samples are read
    node.destroy_node()
    return {"sent": args.frames, "seconds": elapsed, "rate_hz": args.frames / elapsed if elapsed else 0.0,
            "bytes": width * height * 3}


def listen(args: argparse.Namespace) -> dict[str, Any]:
    """Count best-effort messages on ``args.topic`` for ``args.seconds`` after a publisher matched."""
    import rclpy
    from sensor_msgs.msg import Image

    node = _node("efc_test_listener")
    stamps: list[int] = []
    shapes: set[tuple[int, int, str, int]] = set()

    def store(msg: Image) -> None:
        stamps.append(int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec))
        shapes.add((msg.height, msg.width, msg.encoding, len(msg.data)))

    node.create_subscription(Image, args.topic, store, _qos(False, 10))
    deadline = time.monotonic() + args.match_timeout
    while node.count_publishers(args.topic) == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    print("READY", flush=True)
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    return {"received": len(stamps), "distinct_stamps": len(set(stamps)),
            "shapes": sorted([list(s) for s in shapes])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["publish", "listen"])
    parser.add_argument("topic")
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--subscribers", type=int, default=1)
    parser.add_argument("--reliable", action="store_true")
    parser.add_argument("--start-s", type=int, default=1000, help="stamp of the first frame, seconds")
    parser.add_argument("--settle", type=float, default=1.0)
    parser.add_argument("--linger", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--match-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    import rclpy

    try:
        result = publish(args) if args.mode == "publish" else listen(args)
    finally:
        rclpy.try_shutdown()
    print(json.dumps(result), flush=True)
    return 0 if "error" not in result else 1


def run(mode: str, topic: str, *options: str, env: dict[str, str], timeout: float = 120.0) -> dict[str, Any]:
    """Run this module to completion in a subprocess with ``env``; its JSON result."""
    completed = subprocess.run([sys.executable, "-m", "tests.ros.camera_process", mode, topic, *options],
                               env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"camera_process {mode} failed "
                           f"({completed.returncode}):\n{completed.stdout}\n{completed.stderr}")
    return json.loads(lines[-1])


def start(mode: str, topic: str, *options: str, env: dict[str, str]) -> subprocess.Popen:
    """Start this module in a subprocess (stdout piped, text); read its JSON with ``finish``."""
    return subprocess.Popen([sys.executable, "-m", "tests.ros.camera_process", mode, topic, *options],
                            env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, timeout: float = 120.0) -> dict[str, Any]:
    """Wait for a ``start``-ed process and return its JSON result."""
    output, _ = process.communicate(timeout=timeout)
    lines = [line for line in output.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"camera_process failed ({process.returncode}):\n{output}")
    return json.loads(lines[-1])


if __name__ == "__main__":
    sys.exit(main())
