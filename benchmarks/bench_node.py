"""End-to-end benchmark of the ROS perception node against the bare Perceptor, with and without
the shipped Fast DDS profile, in one run.

Each profile setting (``config/fastdds_large_images_localhost.xml``, then Fast DDS's defaults) runs
in a child process of its own (Fast DDS reads the profile once per process), on the same frames:

1. bare ``Perceptor.process`` latency in the child (no ROS), run on each frame just before the
   node gets it, so that the (shared, noisy) CPU load affects both alike;
2. the node in its own process (reliable input QoS so that every lockstep frame arrives even
   without the profile): publish -> last subscribed output received, one frame at a time, with
   (a) segmentation + flow + occlusion subscribed, (b) plus the colour outputs, (c) flow not
   subscribed (segmentation + occlusion); the node's per-stage p50s from /diagnostics per phase;
3. delivered input rate: a best-effort 30 Hz camera in a separate process into the node at its
   default best-effort QoS; frames received (node's counter), outputs, transport loss counted from
   stamp gaps, per-stage p50s (the queue stage there is latest-frame-wins waiting, see below).

The node's overhead over bare inference is reported as p50/p99 ratios (docs/ROS_NODE.md, performance
honesty). The queue stage is ~0.6 ms while the worker is idle (lockstep); at 30 Hz it is the
time the newest frame waits for the frame in flight, about half a camera period.

    .venv/bin/python -m benchmarks.bench_node                          # 640x480, the node's default model
    .venv/bin/python -m benchmarks.bench_node --frames 30 --json out.json
    .venv/bin/python -m benchmarks.bench_node --export-tiny            # untrained tiny net at 640x512

ROS traffic stays on loopback: the script sets ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST,
ROS_LOCALHOST_ONLY=1 and a random ROS_DOMAIN_ID before rclpy is imported.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
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
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)

import numpy as np  # noqa: E402

from efc_ros.dds_profile import profile_environment, shipped_profile  # noqa: E402
from tests.ros import camera_process  # noqa: E402
from tests.ros.ros_helpers import NodeProcess, RosClient, frame_stamp, stamp_ns  # noqa: E402

NAMESPACE = "/efc_bench"
CORE_TOPICS = ("segmentation", "flow", "occlusion")
COLOUR_TOPICS = ("segmentation/color", "flow/color", "overlay")
NO_FLOW_TOPICS = ("segmentation", "occlusion")
#: Lockstep phases: name -> the outputs the client subscribes to.
PHASES: dict[str, tuple[str, ...]] = {"without_colour": CORE_TOPICS, "with_colour": CORE_TOPICS + COLOUR_TOPICS,
                                      "flow_not_subscribed": NO_FLOW_TOPICS}
STAGES = ("queue", "decode", "preprocess", "inference", "postprocess", "publish", "end_to_end")


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
    """``Perceptor.process`` in this process on the same frames: the baseline without ROS.

    Built by ``build_perceptor`` from the ``PerceptorConfig`` the node's parameters give
    (``model_path``, ``num_threads``, ``max_frame_gap``; the rest at the node's defaults).
    """

    def __init__(self, model: Path, threads: int, max_frame_gap: float = 0.5) -> None:
        from efc_core.perceptor_config import PerceptorConfig, build_perceptor

        config = PerceptorConfig(backend="onnxruntime", model_path=str(model), threads=threads,
                                 max_frame_gap_s=float(max_frame_gap))
        self.perceptor = build_perceptor(config)
        self.backend = self.perceptor.backend

    def process_ms(self, rgb: np.ndarray, key: int) -> tuple[float, bool, dict[str, float]]:
        """Latency of one frame in ms, whether it produced flow (had a predecessor), and the
        Perceptor's own stage timings (ms), to set beside the node's.
        """
        started = time.perf_counter()
        result = self.perceptor.process(rgb, key, "camera")
        return (time.perf_counter() - started) * 1e3, result.flow is not None, dict(result.timings_ms)


class Bench:
    """The node process, a client, and publish-time bookkeeping keyed by stamp."""

    def __init__(self, model: Path, threads: int, log: Path, max_frame_gap: float, *, reliable: bool = True,
                 bare: BarePerceptor | None = None) -> None:
        from sensor_msgs.msg import Image

        self.bare = bare or BarePerceptor(model, threads, max_frame_gap)
        parameters = {"model_path": str(model), "qos_reliability": "reliable" if reliable else "best_effort",
                      "qos_depth": 5, "num_threads": threads, "max_frame_gap": max_frame_gap,
                      "diagnostics_period": 0.5}
        self.node = NodeProcess(log, parameters, namespace=NAMESPACE)
        self.client = RosClient("efc_bench_client")
        self.publisher = self.client.publisher(Image, f"{NAMESPACE}/image", depth=5)
        self.sent: dict[int, float] = {}
        self.arrivals: dict[str, dict[int, float]] = {}
        self._arrived = threading.Event()  # set by every output callback (no polling on the timed path)
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
                self._arrived.set()
            qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
            self._subscriptions.append(self.client.node.create_subscription(Image, f"{NAMESPACE}/{topic}", store, qos))
        self.client.wait_for(lambda: all(self.client.node.count_publishers(f"{NAMESPACE}/{t}") for t in topics), 30,
                             0.1)
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

    def wait_complete(self, key: int, topics: tuple[str, ...] | None, timeout: float) -> bool:
        """Block until ``complete(key, topics)`` or ``timeout`` seconds. Woken by the output callbacks:
        a sleep-polling loop would add up to its interval to every latency and wake up a core that
        ONNX Runtime's threads are using.
        """
        deadline = time.monotonic() + timeout
        while True:
            self._arrived.clear()
            if self.complete(key, topics) is not None:  # stored before the callback sets the event
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._arrived.wait(remaining)

    def lockstep(self, frames: np.ndarray, first_index: int) -> dict[str, dict[str, float]]:
        """One frame at a time: node latency of each pair frame (after one warm-up pair), and the
        bare Perceptor on the same frame just before it, so that load changes hit both alike.
        """
        from diagnostic_msgs.msg import DiagnosticArray

        diagnostics = self.client.subscribe(DiagnosticArray, "/diagnostics")
        latencies, bare = [], []
        bare_stages: dict[str, list[float]] = {}
        for offset, rgb in enumerate(frames):
            stamp = stamp_ns(frame_stamp(first_index + offset, period_ns=33_000_000))
            bare_ms, paired, stages = self.bare.process_ms(rgb, stamp)
            if offset >= 2 and paired:
                bare.append(bare_ms)
                for stage, value in stages.items():
                    bare_stages.setdefault(stage, []).append(value)
            key = self.publish(rgb, first_index + offset)
            # The first frame has no predecessor: segmentation only.
            topics = ("segmentation",) if offset == 0 else None
            if not self.wait_complete(key, topics, 60.0):
                print(f"frame {offset}: outputs missing", file=sys.stderr)
                continue
            if offset >= 2:
                latencies.append(self.complete(key))
        time.sleep(1.2)  # one more diagnostics report covering the last frames
        return {"node": percentiles(latencies), "bare_perceptor": percentiles(bare),
                "bare_stage_ms_p50": {stage: float(np.median(values)) for stage, values in bare_stages.items()},
                "node_stage_ms_p50": self.stage_medians(diagnostics)}

    @staticmethod
    def stage_medians(diagnostics: list) -> dict[str, float]:
        """Median over the node's reports of each stage's per-report p50, ms."""
        stages: dict[str, list[float]] = {}
        for array in list(diagnostics):
            for status in array.status:
                if status.name.endswith(f"{NAMESPACE}/efc_perception"):
                    for kv in status.values:
                        stage = kv.key[: -len("_ms_p50")]
                        if kv.key.endswith("_ms_p50") and stage in STAGES and kv.value != "nan":
                            stages.setdefault(stage, []).append(float(kv.value))
        return {stage: float(np.median(values)) for stage, values in stages.items()}

    def delivered(self, size: str, rate_hz: float, seconds: float, env: dict[str, str]) -> dict:
        """A best-effort camera at ``rate_hz`` in its own process (``env``: the run's profile) into the node.

        Returns the node's received count (its /diagnostics counter), the segmentation outputs that
        came back, the transport loss the node counted from stamp gaps, and the per-stage p50s.
        """
        from diagnostic_msgs.msg import DiagnosticArray

        diagnostics = self.client.subscribe(DiagnosticArray, "/diagnostics")
        before = self.diagnostics()
        outputs_before = len(self.arrivals.get("segmentation", {}))
        frames = int(rate_hz * seconds)
        sent = camera_process.run("publish", f"{NAMESPACE}/image", "--frames", str(frames), "--rate", str(rate_hz),
                                  "--size", size, "--start-s", "5000", "--linger", "2.0", env=env)
        time.sleep(1.5)
        after = self.diagnostics()
        received = int(after["frames_received"]) - int(before["frames_received"])
        return {"sent": sent.get("sent", 0), "camera_hz": sent.get("rate_hz", float("nan")),
                "received_by_node": received, "delivered_fraction": received / frames,
                "segmentation_outputs": len(self.arrivals.get("segmentation", {})) - outputs_before,
                "lost_in_transport_by_stamps": int(after["frames_lost_in_transport"])
                - int(before["frames_lost_in_transport"]),
                "dropped_latest_frame_wins": int(after["frames_dropped"]) - int(before["frames_dropped"]),
                "node_stage_ms_p50": self.stage_medians(diagnostics)}

    def diagnostics(self) -> dict[str, str]:
        """The node's next /diagnostics status values."""
        from diagnostic_msgs.msg import DiagnosticArray

        received = self.client.subscribe(DiagnosticArray, "/diagnostics")
        self.client.wait_for(lambda: any(s.name.endswith(f"{NAMESPACE}/efc_perception") for a in received
                                         for s in a.status), 5)
        for array in reversed(received):
            for status in array.status:
                if status.name.endswith(f"{NAMESPACE}/efc_perception"):
                    return {kv.key: kv.value for kv in status.values}
        return {}

    def close(self) -> None:
        self.client.close()
        self.node.stop()
        self.bare.backend.close()


def run_one(model: Path, args: argparse.Namespace, env: dict[str, str]) -> dict:
    """All phases with the DDS profile already in this process's environment (see ``main``)."""
    from efc_core.data.synthetic import SyntheticConfig, generate_sequence
    from efc_ros.cli_args import parse_size_wh

    height, width = parse_size_wh(args.size)
    frames = generate_sequence(SyntheticConfig(height=height, width=width, num_frames=8), seed=7).frames
    lockstep_frames = np.stack([frames[i % len(frames)] for i in range(args.frames)])
    folder = Path(tempfile.mkdtemp(prefix="efc_bench_"))
    results: dict = {}
    bench = Bench(model, args.threads, folder / "node_reliable.log", args.max_frame_gap, reliable=True)
    try:
        for index, (phase, topics) in enumerate(PHASES.items()):
            bench.subscribe(topics)
            results[f"lockstep_{phase}"] = bench.lockstep(lockstep_frames, 1000 * index)
    finally:
        bench.client.close()
        bench.node.stop()
    # Delivered rate: the node at its default best-effort input QoS, a camera in another process.
    bench = Bench(model, args.threads, folder / "node_best_effort.log", args.max_frame_gap, reliable=False,
                  bare=bench.bare)
    try:
        bench.subscribe(CORE_TOPICS)
        results["delivered"] = bench.delivered(args.size, args.rate, args.seconds, env)
    finally:
        bench.close()
    # The ratio depends on the model (a slower model hides the same transport cost better); the
    # difference in ms is what the node itself adds.
    results["overhead_ms_p50"] = {
        phase: results[f"lockstep_{phase}"]["node"]["p50"] - results[f"lockstep_{phase}"]["bare_perceptor"]["p50"]
        for phase in PHASES
    }
    for statistic in ("p50", "p99"):
        results[f"overhead_ratio_{statistic}"] = {
            phase: results[f"lockstep_{phase}"]["node"][statistic]
            / results[f"lockstep_{phase}"]["bare_perceptor"][statistic]
            for phase in PHASES
        }
    return results


def summary_lines(results: dict) -> list[str]:
    """A short human-readable table of both runs."""
    lines = []
    for run, data in results["runs"].items():
        delivered = data["delivered"]
        lines.append(f"[{run}] delivered {delivered['received_by_node']}/{delivered['sent']} "
                     f"({100 * delivered['delivered_fraction']:.0f} %), lost by stamps "
                     f"{delivered['lost_in_transport_by_stamps']}")
        for phase in PHASES:
            lock = data[f"lockstep_{phase}"]
            lines.append(f"[{run}] {phase:20s} node p50 {lock['node']['p50']:6.1f} p99 {lock['node']['p99']:6.1f} | "
                         "bare p50 "
                         f"{lock['bare_perceptor']['p50']:6.1f} p99 {lock['bare_perceptor']['p99']:6.1f} | ratio p50 "
                         f"{data['overhead_ratio_p50'][phase]:.2f} p99 {data['overhead_ratio_p99'][phase]:.2f} "
                         f"(+{data['overhead_ms_p50'][phase]:.1f} ms) | "
                         "node stages "
                         + " ".join(f"{k} {v:.1f}" for k, v in lock["node_stage_ms_p50"].items())
                         + " | bare stages "
                         + " ".join(f"{k} {v:.1f}" for k, v in lock["bare_stage_ms_p50"].items()))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="ONNX model (default: the node's default model)")
    parser.add_argument("--export-tiny", action="store_true",
                        help="export an untrained tiny model at the camera size rounded up to 64")
    parser.add_argument("--size", default="640x480", help="camera WIDTHxHEIGHT")
    parser.add_argument("--frames", type=int, default=20, help="frames per lockstep phase")
    parser.add_argument("--rate", type=float, default=30.0, help="camera rate of the delivery phase, Hz")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the delivery phase")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0 = all cores)")
    parser.add_argument("--max-frame-gap", type=float, default=0.5,
                        help="node parameter max_frame_gap: with latest-frame-wins, processed frames are one "
                             "inference apart, so flow needs max_frame_gap > inference time")
    parser.add_argument("--profiles", default="shipped,none", help="comma list of runs: shipped, none, or XML paths")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: one run, JSON on stdout
    args = parser.parse_args(argv)

    from efc_ros.model_paths import default_model_path

    if args.child is not None:
        model = Path(args.model)
        print("BENCH_JSON " + json.dumps(run_one(model, args, dict(os.environ))), flush=True)
        return 0
    if args.export_tiny:
        from efc_ros.cli_args import parse_size_wh

        height, width = parse_size_wh(args.size)
        model = export_tiny((-(-height // 64) * 64, -(-width // 64) * 64))
    else:
        model = args.model or default_model_path()
    if not Path(model).is_file():
        print(f"bench_node: model {model} not found; pass --model or --export-tiny", file=sys.stderr)
        return 2
    results: dict = {"model": str(model), "size": args.size, "threads": args.threads, "cpu_count": os.cpu_count(),
                     "load_average_at_start": os.getloadavg(), "runs": {}}
    for name in [n.strip() for n in args.profiles.split(",") if n.strip()]:
        profile = shipped_profile(localhost=True) if name == "shipped" else None if name == "none" else Path(name)
        env = profile_environment(profile)
        command = [sys.executable, __file__, "--child", name, "--model", str(model), "--size", args.size,
                   "--frames", str(args.frames), "--rate", str(args.rate), "--seconds", str(args.seconds),
                   "--threads", str(args.threads), "--max-frame-gap", str(args.max_frame_gap)]
        print(f"bench_node: run '{name}' (profile {profile or 'Fast DDS defaults'})", file=sys.stderr)
        completed = subprocess.run(command, env=env, capture_output=True, text=True)
        line = next((text for text in completed.stdout.splitlines() if text.startswith("BENCH_JSON ")), None)
        if line is None:
            print(f"bench_node: run {name} failed:\n{completed.stdout}\n{completed.stderr}", file=sys.stderr)
            return 1
        results["runs"][name] = {"profile": str(profile) if profile else None, **json.loads(line[len("BENCH_JSON "):])}
    print(json.dumps(results, indent=2))
    print("\n".join(summary_lines(results)), file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
