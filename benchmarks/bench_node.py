"""End-to-end benchmark of the ROS perception node against the bare Perceptor, in one run.

Measures, on the same frames and the same backend (ONNX Runtime by default):

1. bare ``Perceptor.process`` latency in this process (no ROS), run on each frame just before the
   node gets it, so that the (shared, noisy) CPU load affects both alike;
2. the node in its own process (``python -m efc_ros.perception_node``, reliable QoS): publish ->
   last output received, one frame at a time, without and with the colour outputs subscribed
   (``segmentation/color``, ``flow/color``, ``overlay`` are only computed while subscribed);
3. sustained output rate and latency while a camera publishes at 30 Hz (latest-frame-wins drops
   what inference cannot keep up with), plus the node's own per-stage breakdown from /diagnostics.

The node's overhead over bare inference is reported as a ratio (ROS_NODE.md, performance honesty).

    .venv/bin/python benchmarks/bench_node.py                          # 640x480, shipped demo model
    .venv/bin/python benchmarks/bench_node.py --model m.onnx --frames 30 --json out.json
    .venv/bin/python benchmarks/bench_node.py --export-tiny            # untrained tiny net at 640x512

ROS traffic stays on loopback: the script sets ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST,
ROS_LOCALHOST_ONLY=1 and a random ROS_DOMAIN_ID before rclpy is imported.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_LOCALHOST_ONLY"] = "1"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)

import numpy as np  # noqa: E402

from tests.ros.ros_helpers import NodeProcess, RosClient, frame_stamp, stamp_ns  # noqa: E402

NAMESPACE = "/efc_bench"
CORE_TOPICS = ("segmentation", "flow", "occlusion")
COLOUR_TOPICS = ("segmentation/color", "flow/color", "overlay")


def percentiles(values_ms: list[float]) -> dict[str, float]:
    """p50 / p99 / mean of latencies in ms (NaN when empty)."""
    if not values_ms:
        return {"p50": float("nan"), "p99": float("nan"), "mean": float("nan"), "n": 0}
    values = np.asarray(values_ms)
    return {"p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99)),
            "mean": float(values.mean()), "n": int(values.size)}


def export_tiny(size: tuple[int, int]) -> Path:
    """Export an untrained ``tiny`` model at (height, width) to a temporary folder (needs torch)."""
    import torch

    from efc_core.data.synthetic import SYNTHETIC_CLASS_NAMES, SYNTHETIC_PALETTE
    from efc_core.export.onnx_export import export_onnx
    from efc_core.model import build_model
    from efc_core.model.checkpoint import save_checkpoint

    torch.manual_seed(0)
    folder = Path(tempfile.mkdtemp(prefix="efc_bench_model_"))
    model = build_model("tiny", num_classes=len(SYNTHETIC_CLASS_NAMES)).eval()
    checkpoint = save_checkpoint(folder / "tiny.pt", model, train_config={}, step=0, metrics={},
                                 class_names=list(SYNTHETIC_CLASS_NAMES), palette=SYNTHETIC_PALETTE.tolist())
    path = folder / "efc_bench_tiny.onnx"
    export_onnx(checkpoint, path, height=size[0], width=size[1])
    print(f"exported {path} (reuse it with --model)", file=sys.stderr)
    return path


class BarePerceptor:
    """``Perceptor.process`` in this process on the same frames: the baseline without ROS."""

    def __init__(self, model: Path, threads: int) -> None:
        from efc_core.perceptor import Perceptor
        from efc_core.runtime import create_backend

        self.backend = create_backend("onnxruntime", model, intra_op_threads=threads)
        self.perceptor = Perceptor(self.backend)

    def process_ms(self, rgb: np.ndarray, key: int) -> tuple[float, bool]:
        """Latency of one frame in ms, and whether it produced flow (had a predecessor)."""
        started = time.perf_counter()
        result = self.perceptor.process(rgb, key, "camera")
        return (time.perf_counter() - started) * 1e3, result.flow is not None


class Bench:
    """The node process, a client, and publish-time bookkeeping keyed by stamp."""

    def __init__(self, model: Path, threads: int, log: Path, max_frame_gap: float) -> None:
        from sensor_msgs.msg import Image

        self.bare = BarePerceptor(model, threads)
        self.node = NodeProcess(log, {"model_path": str(model), "qos_reliability": "reliable", "qos_depth": 5,
                                      "num_threads": threads, "max_frame_gap": max_frame_gap}, namespace=NAMESPACE)
        self.client = RosClient("efc_bench_client")
        self.publisher = self.client.publisher(Image, f"{NAMESPACE}/image", depth=5)
        self.sent: dict[int, float] = {}
        self.arrivals: dict[str, dict[int, float]] = {}
        self._subscriptions: list = []
        if not self.client.wait_for(lambda: self.publisher.get_subscription_count() > 0, 120, 0.2):
            raise RuntimeError(f"node did not start:\n{self.node.log()}")

    def subscribe(self, topics: tuple[str, ...]) -> None:
        """Replace the client's output subscriptions by ``topics`` and wait until they match."""
        from sensor_msgs.msg import Image
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        for subscription in self._subscriptions:
            self.client.node.destroy_subscription(subscription)
        self._subscriptions = []
        self.arrivals = {topic: {} for topic in topics}
        for topic in topics:
            def store(msg, topic=topic) -> None:
                self.arrivals[topic][stamp_ns(msg.header.stamp)] = time.perf_counter()
            qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
            self._subscriptions.append(self.client.node.create_subscription(Image, f"{NAMESPACE}/{topic}", store, qos))
        self.client.wait_for(lambda: all(self.client.node.count_publishers(f"{NAMESPACE}/{t}") for t in topics), 30, 0.1)
        time.sleep(1.5)  # the node must also see our subscriptions (it colours only for subscribers)

    def publish(self, rgb: np.ndarray, index: int) -> int:
        from std_msgs.msg import Header

        from efc_ros.image_conversions import rgb_to_image_msg

        header = Header(stamp=frame_stamp(index, period_ns=33_000_000), frame_id="camera")
        msg = rgb_to_image_msg(rgb, "rgb8", header)
        key = stamp_ns(header.stamp)
        self.sent[key] = time.perf_counter()
        self.publisher.publish(msg)
        return key

    def complete(self, key: int, topics: tuple[str, ...] | None = None) -> float | None:
        """Publish -> all subscribed outputs (or ``topics``) received, ms; None while incomplete."""
        times = [arrivals.get(key) for topic, arrivals in self.arrivals.items() if topics is None or topic in topics]
        return None if any(t is None for t in times) else (max(times) - self.sent[key]) * 1e3

    def lockstep(self, frames: np.ndarray, first_index: int) -> dict[str, dict[str, float]]:
        """One frame at a time: node latency of each pair frame (after one warm-up pair), and the
        bare Perceptor on the same frame just before it, so that load changes hit both alike."""
        latencies, bare = [], []
        for offset, rgb in enumerate(frames):
            stamp = stamp_ns(frame_stamp(first_index + offset, period_ns=33_000_000))
            bare_ms, paired = self.bare.process_ms(rgb, stamp)
            if offset >= 2 and paired:
                bare.append(bare_ms)
            key = self.publish(rgb, first_index + offset)
            # The first frame has no predecessor: segmentation only.
            topics = ("segmentation",) if offset == 0 else None
            if not self.client.wait_for(lambda: self.complete(key, topics) is not None, 60, 0.001):
                print(f"frame {offset}: outputs missing", file=sys.stderr)
                continue
            if offset >= 2:
                latencies.append(self.complete(key))
        return {"node": percentiles(latencies), "bare_perceptor": percentiles(bare)}

    def sustained(self, frames: np.ndarray, first_index: int, rate_hz: float, seconds: float) -> dict[str, float]:
        """Publish at ``rate_hz`` for ``seconds``; output rate and latency of the frames that got outputs.

        The node's own per-stage means come from the /diagnostics messages of this phase.
        """
        from diagnostic_msgs.msg import DiagnosticArray

        diagnostics = self.client.subscribe(DiagnosticArray, "/diagnostics")
        count = int(rate_hz * seconds)
        started = time.perf_counter()
        keys = []
        for offset in range(count):
            target = started + offset / rate_hz
            time.sleep(max(0.0, target - time.perf_counter()))
            keys.append(self.publish(frames[offset % len(frames)], first_index + offset))
        elapsed = time.perf_counter() - started
        # Outputs run in the window [first publish, last output]: wait until the frame in flight is out.
        last_seen, settled = -1, time.perf_counter()
        while time.perf_counter() - settled < 3.0 and time.perf_counter() - started < seconds + 120:
            seen = sum(self.complete(k, ("segmentation",)) is not None for k in keys)
            if seen != last_seen:
                last_seen, settled = seen, time.perf_counter()
            time.sleep(0.05)
        segmented = [k for k in keys if self.complete(k, ("segmentation",)) is not None]
        done = [k for k in keys if self.complete(k) is not None]
        last_output = max((self.sent[k] + self.complete(k, ("segmentation",)) / 1e3 for k in segmented), default=0.0)
        window = max(last_output - started, elapsed)
        stages = {}
        for array in list(diagnostics):
            for status in array.status:
                if status.name.endswith(f"{NAMESPACE}/efc_perception"):
                    for kv in status.values:
                        if kv.key.endswith("_ms_mean") and kv.value != "nan":
                            stages.setdefault(kv.key, []).append(float(kv.value))
        return {"published": count, "published_hz": count / elapsed,
                "segmentation_outputs": len(segmented), "segmentation_hz": len(segmented) / window,
                "flow_outputs": len(done), "flow_hz": len(done) / window,
                **{f"segmentation_latency_{k}": v for k, v in
                   percentiles([self.complete(k, ("segmentation",)) for k in segmented]).items()},
                "node_stage_ms_mean": {k: float(np.mean(v)) for k, v in stages.items()}}

    def diagnostics(self) -> dict[str, str]:
        """The node's next /diagnostics status values."""
        from diagnostic_msgs.msg import DiagnosticArray

        received = self.client.subscribe(DiagnosticArray, "/diagnostics")
        self.client.wait_for(lambda: any(s.name.endswith(f"{NAMESPACE}/efc_perception") for a in received for s in a.status), 5)
        for array in reversed(received):
            for status in array.status:
                if status.name.endswith(f"{NAMESPACE}/efc_perception"):
                    return {kv.key: kv.value for kv in status.values}
        return {}

    def close(self) -> None:
        self.client.close()
        self.node.stop()
        self.bare.backend.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: shipped demo model)")
    parser.add_argument("--export-tiny", action="store_true", help="export an untrained tiny model at the camera size rounded up to 64")
    parser.add_argument("--size", default="640x480", help="camera WIDTHxHEIGHT")
    parser.add_argument("--frames", type=int, default=20, help="frames per lockstep phase")
    parser.add_argument("--rate", type=float, default=30.0, help="camera rate of the sustained phase, Hz")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the sustained phase")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0 = all cores)")
    parser.add_argument("--max-frame-gap", type=float, default=0.5,
                        help="node parameter max_frame_gap: with latest-frame-wins, processed frames are one "
                             "inference apart, so flow needs max_frame_gap > inference time")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    from efc_core.data.synthetic import SyntheticConfig, generate_sequence
    from efc_ros.model_paths import default_model_path

    if args.export_tiny:
        model = export_tiny((-(-height // 64) * 64, -(-width // 64) * 64))
    else:
        model = args.model or default_model_path()
    if not Path(model).is_file():
        print(f"bench_node: model {model} not found; pass --model or --export-tiny", file=sys.stderr)
        return 2
    frames = generate_sequence(SyntheticConfig(height=height, width=width, num_frames=8), seed=7).frames
    lockstep_frames = np.stack([frames[i % len(frames)] for i in range(args.frames)])

    results: dict = {"model": str(model), "size": f"{width}x{height}", "threads": args.threads,
                     "cpu_count": os.cpu_count()}
    bench = Bench(Path(model), args.threads, Path(tempfile.mkdtemp(prefix="efc_bench_")) / "node.log", args.max_frame_gap)
    try:
        bench.subscribe(CORE_TOPICS)
        results["lockstep_ms_without_colour"] = bench.lockstep(lockstep_frames, 0)
        bench.subscribe(CORE_TOPICS + COLOUR_TOPICS)
        results["lockstep_ms_with_colour"] = bench.lockstep(lockstep_frames, 1000)
        bench.subscribe(CORE_TOPICS)
        results["sustained"] = bench.sustained(frames, 2000, args.rate, args.seconds)
        results["node_counters"] = {k: v for k, v in bench.diagnostics().items()
                                    if k.startswith("frames_") or k in ("backend", "precision", "errors")}
    finally:
        bench.close()
    for statistic in ("p50", "mean"):
        results[f"overhead_ratio_{statistic}"] = {
            phase: results[f"lockstep_ms_{phase}"]["node"][statistic]
            / results[f"lockstep_ms_{phase}"]["bare_perceptor"][statistic]
            for phase in ("without_colour", "with_colour")
        }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
