"""training.average: the mean of checkpoints' weights, refused across different networks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from efc_core.errors import ModelError
from efc_core.model import build_model
from efc_core.model.checkpoint import load_model, save_checkpoint
from training.average import average_checkpoints, main


def _checkpoint(path: Path, seed: int, num_classes: int = 3, step: int = 10) -> tuple[Path, dict]:
    torch.manual_seed(seed)
    model = build_model("tiny", num_classes)
    for module in model.modules():   # distinct running statistics and counters per checkpoint
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.num_batches_tracked.fill_(seed + 1)
    saved = save_checkpoint(path, model, train_config={"name": f"run{seed}"}, step=step, metrics={"miou": 0.1},
                            class_names=[f"c{i}" for i in range(num_classes)], palette=[[0, 0, 0]] * num_classes,
                            optimizer_state={"state": {}, "param_groups": []})
    return saved, {k: v.clone() for k, v in model.state_dict().items()}


def test_float_tensors_are_averaged_and_counters_come_from_the_first(tmp_path: Path) -> None:
    first, weights1 = _checkpoint(tmp_path / "a.pt", 0)
    second, weights2 = _checkpoint(tmp_path / "b.pt", 1, step=20)
    averaged = average_checkpoints([first, second])
    for key, value in averaged["model_state"].items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (weights1[key] + weights2[key]) / 2)
        else:
            assert torch.equal(value, weights1[key]), key
    assert averaged["optimizer_state"] is None and averaged["metrics"] == {}
    assert averaged["extra"]["weight_average_of"] == [{"path": str(first), "step": 10},
                                                      {"path": str(second), "step": 20}]
    assert averaged["train_config"] == {"name": "run0"}


def test_the_cli_writes_a_loadable_model(tmp_path: Path) -> None:
    first, weights1 = _checkpoint(tmp_path / "a.pt", 0)
    second, _ = _checkpoint(tmp_path / "b.pt", 0)   # same seed: the mean is the model itself
    assert main([str(first), str(second), "--output", str(tmp_path / "mean.pt")]) == 0
    model, _ = load_model(tmp_path / "mean.pt")
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, weights1[key])


def test_different_networks_and_single_inputs_are_refused(tmp_path: Path, capsys) -> None:
    first, _ = _checkpoint(tmp_path / "a.pt", 0)
    other, _ = _checkpoint(tmp_path / "b.pt", 1, num_classes=5)
    with pytest.raises(ModelError, match="another network config"):
        average_checkpoints([first, other])
    with pytest.raises(ValueError, match="at least two"):
        average_checkpoints([first])
    assert main([str(first), str(tmp_path / "missing.pt"), "--output", str(tmp_path / "x.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()
