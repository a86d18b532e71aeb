"""``efc bag replay`` against the real node in a subprocess: outputs for the replayed frames, then a report."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from efc_ros.bag.make_synthetic import SyntheticBagOptions, make_synthetic_bag
from tests.ros.ros_helpers import NodeProcess

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_replay_into_the_running_node_records_and_evaluates(tmp_path, ros_environment, demo_model) -> None:
    camera = make_synthetic_bag(tmp_path / "camera",
                                SyntheticBagOptions(width=96, height=64, num_frames=6, fps=5.0, seed=11))
    namespace = f"replay_{uuid.uuid4().hex[:6]}"
    node = NodeProcess(tmp_path / "node.log", {"model_path": str(demo_model), "qos_reliability": "reliable",
                                               "qos_depth": 10, "publish_occlusion_probability": True},
                       namespace=f"/{namespace}")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "efc_ros.cli", "bag", "replay", str(camera), str(tmp_path / "recorded"),
             "--namespace", namespace, "--rate", "0.5", "--report", str(tmp_path / "report")],
            capture_output=True, text=True, timeout=240,
        )
    finally:
        node.stop()
    assert result.returncode == 0, result.stderr + "\n--- node log ---\n" + node.log()
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    # Reliable QoS at 2.5 Hz: every frame reaches the node. A frame that arrives while the
    # (cold, first) inference runs may be dropped by design (latest frame wins): allow one.
    frames = report["frames"]
    assert frames["camera"] == 6 and frames["outputs"] >= 5
    assert frames["outputs"] + frames["dropped"] == 6
    assert report["latency_ms"]["count"] == frames["outputs"] and report["latency_ms"]["p50"] > 0
    assert report["ground_truth"]["flow"]["count"] > 0
    assert 0.0 <= report["ground_truth"]["segmentation"]["miou"] <= 1.0
