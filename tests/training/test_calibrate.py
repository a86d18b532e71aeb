"""training.calibrate: per-class bias offsets found on labelled frames, baked into the classifier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from efc_core.metrics import confusion_iou
from efc_core.model import build_model
from efc_core.model.checkpoint import load_checkpoint, load_model, save_checkpoint
from training.calibrate import apply_class_bias, collect_logits, main, tune_class_bias
from training.loop import normalise_images


def test_confusion_iou_matches_hand_counts() -> None:
    # rows truth, columns prediction: class 0 TP 3, FP 1, FN 2 -> 3/6; class 2 never occurs -> NaN.
    confusion = np.array([[3, 2, 0], [1, 4, 0], [0, 0, 0]])
    iou = confusion_iou(confusion)
    assert iou[0] == pytest.approx(3 / 6) and iou[1] == pytest.approx(4 / 7) and np.isnan(iou[2])


def test_offsets_undo_a_known_prior_shift() -> None:
    # Perfect scores (1 for the true class, 0 elsewhere), then class 2 pushed down by 1.5 everywhere:
    # every class-2 pixel is lost. An offset in (0.5, 2.5) above the others restores mIoU 1.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=3000)
    logits = np.eye(3, dtype=np.float32)[labels].T.copy()
    logits[2] -= 1.5
    offsets, before, after = tune_class_bias(logits, labels)
    assert before < 0.7 and after == pytest.approx(1.0)
    margin = offsets[2] - max(offsets[0], offsets[1])
    assert 0.5 < margin < 2.5


def test_no_offset_when_the_scores_are_already_right() -> None:
    labels = np.repeat(np.arange(4), 50)
    logits = np.eye(4, dtype=np.float32)[labels].T * 3.0
    offsets, before, after = tune_class_bias(logits, labels)
    assert before == after == pytest.approx(1.0) and np.all(offsets == 0)


def test_bad_shapes_and_labels_are_named() -> None:
    with pytest.raises(ValueError, match=r"\(K, P\)"):
        tune_class_bias(np.zeros((3, 10)), np.zeros(9, dtype=int))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        tune_class_bias(np.zeros((3, 4)), np.array([0, 1, 2, 3]))


def _checkpoint(path: Path, num_classes: int = 3) -> Path:
    torch.manual_seed(0)
    model = build_model("tiny", num_classes).eval()
    return save_checkpoint(path, model, train_config={}, step=1, metrics={},
                           class_names=[f"c{k}" for k in range(num_classes)], palette=[[0, 0, 0]] * num_classes)


def test_applied_offsets_shift_every_logit_by_exactly_that_much(tmp_path: Path) -> None:
    state = load_checkpoint(_checkpoint(tmp_path / "m.pt"))
    offsets = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    calibrated = apply_class_bias(state, offsets, {"frames": 1})
    torch.save(calibrated, tmp_path / "cal.pt")
    image = normalise_images(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
    outputs = []
    for path in (tmp_path / "m.pt", tmp_path / "cal.pt"):
        model, _ = load_model(path)
        with torch.no_grad():
            outputs.append(model.segment(model.encode(image), out_size=(64, 64)).logits)
    torch.testing.assert_close(outputs[1] - outputs[0], torch.tensor(offsets).view(1, 3, 1, 1).expand_as(outputs[0]),
                               atol=1e-5, rtol=0)
    assert calibrated["extra"]["seg_bias_calibration"] == [{"frames": 1}]
    with pytest.raises(ValueError, match="2 offsets for a classifier of \\(3,\\) classes"):
        apply_class_bias(state, offsets[:2], {})


def test_cli_writes_a_model_whose_own_predictions_score_the_reported_miou(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Labelled frames where the untrained model's argmax is far from the labels: the offsets found
    # must reproduce, through the written checkpoint, the mIoU the tool reports.
    source = _checkpoint(tmp_path / "m.pt")
    generator = torch.Generator().manual_seed(2)
    samples = []
    for _ in range(3):
        label = torch.zeros(48, 64, dtype=torch.long)
        label[:, 20:] = 1
        label[30:, 40:] = 2
        samples.append({"image1": torch.rand(3, 48, 64, generator=generator), "label1": label,
                        "has_label1": torch.tensor(True)})
    samples.append({"image1": torch.rand(3, 48, 64), "label1": torch.zeros(48, 64, dtype=torch.long),
                    "has_label1": torch.tensor(False)})
    monkeypatch.setattr("training.calibrate.build_calibration_samples", lambda *args: samples)
    assert main([str(source), "--output", str(tmp_path / "cal.pt"), "--pixel-stride", "1",
                 "--report", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["frames"] == 3 and report["miou_after"] >= report["miou_before"]
    model, _ = load_model(tmp_path / "cal.pt")
    logits, labels, frames = collect_logits(model, samples, pixel_stride=1)
    confusion = np.bincount(labels * 3 + logits.argmax(0), minlength=9).reshape(3, 3)
    assert frames == 3
    assert float(np.nanmean(confusion_iou(confusion))) == pytest.approx(report["miou_after"], abs=1e-6)


def test_cli_refuses_a_missing_checkpoint_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([str(tmp_path / "none.pt"), "--output", str(tmp_path / "x.pt")]) == 1
    assert "checkpoint not found" in capsys.readouterr().err
