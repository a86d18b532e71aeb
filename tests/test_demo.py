"""``make demo`` runs the synthetic-class demo model, whatever the real-camera default model is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from efc_ros.demo import main
from efc_ros.model_paths import DEMO_MODEL_NAME, default_model_path

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_uses_the_demo_model_and_scores_its_classes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    if not default_model_path(name=DEMO_MODEL_NAME).is_file():
        pytest.skip("the shipped demo model is absent")
    assert main(["--output", str(tmp_path), "--frames", "4", "--size", "160x120", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"on {DEMO_MODEL_NAME}.onnx" in printed
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    # Class 0 is the synthetic scenes' background (sky for the real-camera model): the demo model
    # finds it (measured 0.90 on these frames).
    assert report["ground_truth"]["segmentation"]["iou"]["0"] > 0.5, report["ground_truth"]


def test_the_demo_scene_is_the_one_the_demo_model_was_trained_on() -> None:
    from efc_ros.demo import DEMO_SCENE
    from training.config import load_config

    trained = load_config(REPO_ROOT / "training" / "configs" / "synthetic_demo.yaml").data.synthetic
    assert DEMO_SCENE == {key: getattr(trained, key) for key in DEMO_SCENE}
