"""The shipped real-camera model (models/efc_camvid_tiny.*): its manifest, and what it sees on real data.

The quality floors are far below the measured values (training/README.md), so they only fail when
the shipped model or the inference path is broken, not when a retrained model is slightly worse.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from efc_core.data.datasets.camvid import CAMVID_CLASS_NAMES, CAMVID_PALETTE
from efc_core.manifest import load_manifest

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL = REPO_ROOT / "models" / "efc_camvid_tiny.onnx"

pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason=f"{MODEL} is not shipped in this checkout")


def test_manifest_names_the_camvid_classes_size_and_training_data() -> None:
    manifest = load_manifest(MODEL.with_suffix(".json"))
    assert list(manifest.class_names) == list(CAMVID_CLASS_NAMES)
    assert np.array_equal(np.asarray(manifest.palette), np.asarray(CAMVID_PALETTE))
    assert (manifest.input_height, manifest.input_width) == (320, 384)
    sources = {entry["name"]: entry for entry in manifest.training_data}
    assert {"camvid", "davis", "kitti_odometry", "video", "synthetic"} <= set(sources)
    assert "non-commercial" in sources["camvid"]["terms"]
    for entry in manifest.training_data:
        assert entry["terms"] and entry["what"], entry


def test_node_and_bag_tools_default_to_the_camvid_model() -> None:
    from efc_ros.model_paths import default_model_path

    assert default_model_path() == MODEL


def test_camvid_val_segmentation_is_far_above_chance(shared_data) -> None:
    from training.camvid_eval import evaluate_camvid

    report = evaluate_camvid(MODEL, shared_data / "real" / "camvid", fusions=(0.0,), threads=2, max_frames=8)
    run = report["runs"][0]
    # Measured on all 101 val frames: see training/README.md. Road and sky are the easy classes.
    assert run["miou"] > 0.25, run
    assert run["iou"]["road"] > 0.6 and run["iou"]["sky"] > 0.6, run["iou"]


def test_flow_on_real_video_explains_the_motion_better_than_zero_flow(shared_data) -> None:
    from training.real_eval import PerceptorEstimator, evaluate_sequence, sequence_folders

    estimator = PerceptorEstimator(MODEL, threads=2)
    frames = sequence_folders(shared_data / "real" / "davis", "frames")["car-roundabout"][:13]
    result = evaluate_sequence("car-roundabout", frames, estimator.flow_fn, estimator.occlusion_fn, 3, 1)
    assert result.residual < 0.7 * result.zero_residual, result
    # The occlusion head fires somewhere (borders, disocclusions) but not everywhere.
    assert 0.002 < result.occluded_fraction < 0.5, result
