"""``make demo`` runs the synthetic-class demo model, whatever the real-camera default model is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from efc_ros.demo import main
from efc_ros.model_paths import DEMO_MODEL_NAME, default_model_path

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_uses_the_demo_model_and_sees_what_the_ground_truth_has(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    if not default_model_path(name=DEMO_MODEL_NAME).is_file():
        pytest.skip("the shipped demo model is absent")
    assert main(["--output", str(tmp_path), "--threads", "1"]) == 0  # make demo's defaults: 40 frames, 4 scenes
    printed = capsys.readouterr().out
    assert f"on {DEMO_MODEL_NAME}.onnx" in printed
    truth = json.loads((tmp_path / "report" / "report.json").read_text())["ground_truth"]
    # Measured with the shipped demo model: mIoU 0.56 (background 0.96, vehicle 0.72, pole 0.59,
    # person 0.49, sign 0.32, vegetation 0.28), EPE 1.05 px, occlusion F1 0.45. The old demo model
    # (trained at 64x128, run at 320x256) scored occlusion F1 0.001 on its demo.
    assert truth["segmentation"]["miou"] > 0.3 and truth["segmentation"]["iou"]["1"] > 0.4, truth["segmentation"]
    assert truth["flow"]["epe"] < 1.5, truth["flow"]  # zero flow: 3.2 px on held-out scenes like these
    assert truth["occlusion"]["f1"] > 0.3, truth["occlusion"]


def test_the_demo_scene_is_the_one_the_demo_model_was_trained_on() -> None:
    from efc_ros.demo import DEMO_SCENE
    from training.config import load_config

    trained = load_config(REPO_ROOT / "training" / "configs" / "synthetic_demo.yaml").data.synthetic
    assert DEMO_SCENE == {key: getattr(trained, key) for key in DEMO_SCENE}
