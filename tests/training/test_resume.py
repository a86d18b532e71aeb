"""``--resume`` continues a run exactly: N steps == N/2 steps + resume for N/2 steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from efc_core.model.checkpoint import load_checkpoint
from training.config import load_config
from training.train import main, run_training

CONFIG = Path(__file__).resolve().parents[2] / "training" / "configs" / "ci_tiny.yaml"
# 64x64 pairs, batch 2; 2 sequences x 3 pairs = 3 steps per epoch, so 4 steps cross an epoch
# boundary and the resumed half starts mid-epoch. Stage 2 starts at step 2, so the resumed half
# runs with the temporal loss and O_seg on.
TINY = [
    "num_threads=1", "data.batch_size=2", "data.synthetic.height=64", "data.synthetic.width=64",
    "data.synthetic.num_frames=4", "data.synthetic.train_sequences=2", "data.synthetic.pairs_per_sequence=3",
    "data.synthetic.val_sequences=0", "schedule.total_steps=4", "schedule.warmup_steps=2",
    "schedule.stage2_start_step=2", "logging.checkpoint_every=2", "logging.tensorboard=false",
]


def _state(path: Path) -> dict:
    return load_checkpoint(path)


def _assert_same_tensors(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    for key in a:
        assert torch.equal(a[key], b[key]), f"{what}: {key} differs"


@pytest.mark.slow
def test_resume_reproduces_an_uninterrupted_run(tmp_path: Path) -> None:
    config = load_config(CONFIG, TINY)
    full = run_training(config, tmp_path / "full")
    assert full["step"] == 4
    halfway = tmp_path / "full" / "checkpoint_0000002.pt"
    assert halfway.is_file()

    # The command-line path: --resume from the halfway checkpoint of the first run.
    assert main(["--config", str(CONFIG), "--output", str(tmp_path / "resumed"), "--resume", str(halfway),
                 *[arg for override in TINY for arg in ("--set", override)]]) == 0

    reference = _state(tmp_path / "full" / "final.pt")
    resumed = _state(tmp_path / "resumed" / "final.pt")
    start = _state(halfway)
    assert resumed["step"] == reference["step"] == 4 and start["step"] == 2
    _assert_same_tensors(reference["model_state"], resumed["model_state"], "model")
    # The second half did train: parameters moved away from the halfway checkpoint.
    assert any(not torch.equal(start["model_state"][k], reference["model_state"][k])
               for k in reference["model_state"] if reference["model_state"][k].is_floating_point())
    for group_ref, group_res in zip(reference["optimizer_state"]["param_groups"],
                                    resumed["optimizer_state"]["param_groups"]):
        assert group_ref["lr"] == group_res["lr"]
    for index, slot in reference["optimizer_state"]["state"].items():
        _assert_same_tensors(slot, resumed["optimizer_state"]["state"][index], f"optimizer state {index}")
    assert reference["scheduler_state"]["last_epoch"] == resumed["scheduler_state"]["last_epoch"] == 4
    assert reference["train_config"] == resumed["train_config"]
    assert reference["git_revision"] == resumed["git_revision"]


@pytest.mark.slow
def test_init_checkpoint_copies_weights_only_and_keeps_mismatched_heads_fresh(tmp_path: Path) -> None:
    """``model.init_checkpoint`` (e.g. Cityscapes -> own bag): weights in, step and optimiser afresh."""
    source = run_training(load_config(CONFIG, TINY), tmp_path / "source")
    source_state = _state(tmp_path / "source" / "final.pt")
    # Three classes instead of two: every tensor but the classifier's keeps its trained value.
    overrides = [o for o in TINY if not o.startswith("schedule.total_steps")] + [
        "schedule.total_steps=1", "schedule.warmup_steps=0", "schedule.stage2_start_step=1", "model.num_classes=3",
        f"model.init_checkpoint={tmp_path / 'source' / 'final.pt'}", "optimizer.lr=1e-30",
    ]
    run_training(load_config(CONFIG, overrides), tmp_path / "adapted")
    adapted = _state(tmp_path / "adapted" / "final.pt")
    assert source["step"] == 4 and adapted["step"] == 1
    assert adapted["class_names"][:2] == source_state["class_names"]
    same_shape = [k for k, v in adapted["model_state"].items()
                  if source_state["model_state"][k].shape == v.shape and v.is_floating_point()]
    differing = [k for k, v in adapted["model_state"].items() if source_state["model_state"][k].shape != v.shape]
    assert differing and all("classifier" in k or "aux" in k for k in differing), differing
    # lr 1e-30: one step moves no float32 weight, so every copied tensor equals the source's
    # (BatchNorm running statistics still update in train mode and are left out).
    for key in same_shape:
        if "running_" not in key:
            assert torch.equal(adapted["model_state"][key], source_state["model_state"][key]), key
