"""training.ship: the shipped checkpoint states its data and terms and never names this machine's paths."""

from __future__ import annotations

from pathlib import Path

import torch

from efc_core.model import build_model
from efc_core.model.checkpoint import load_checkpoint, save_checkpoint
from training.ship import ship

RECIPE = Path(__file__).resolve().parents[2] / "training" / "configs" / "camvid_efc_tiny.yaml"


def test_shipped_copy_has_provenance_placeholder_roots_and_no_optimiser(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("tiny", 3)
    config = {"data": {"options": {"sources": [{"name": "camvid", "root": "../shared/data/real/camvid"}]}}}
    source = save_checkpoint(tmp_path / "run.pt", model, train_config=config, step=5, metrics={},
                             class_names=["a", "b", "c"], palette=[[0, 0, 0]] * 3,
                             optimizer_state={"state": {}, "param_groups": []})
    shipped = load_checkpoint(ship(source, tmp_path / "shipped.pt", RECIPE, {"miou": 0.4}))
    assert shipped["train_config"]["data"]["options"]["sources"][0]["root"] == "<data root>/real/camvid"
    names = [entry["name"] for entry in shipped["train_config"]["data"]["provenance"]]
    assert names == ["camvid", "davis", "kitti_odometry", "video", "synthetic"]
    assert shipped["optimizer_state"] is None and shipped["metrics"] == {"miou": 0.4}
    assert all(torch.equal(shipped["model_state"][k], v) for k, v in model.state_dict().items())


def test_evaluate_ship_writes_no_workplace_path_either(tmp_path: Path) -> None:
    from training.evaluate import ship_checkpoint

    state = {"train_config": {"data": {"synthetic": {"texture_dirs": ["../shared/data/real/camvid/train", "/own"]}}},
             "optimizer_state": {"state": {}}, "extra": {"torch_rng_state": torch.zeros(1), "world_size": 1}}
    shipped = torch.load(ship_checkpoint(state, {}, tmp_path / "x.pt"), weights_only=False)
    assert shipped["train_config"]["data"]["synthetic"]["texture_dirs"] == ["<data root>/real/camvid/train", "/own"]
    assert shipped["optimizer_state"] is None and shipped["extra"] == {"world_size": 1}
