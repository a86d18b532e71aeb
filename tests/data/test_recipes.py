"""The dataset recipes load with the training schema and their data options build both splits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from efc_core.data.datasets import build_dataset
from tests.data.fixtures import write_camvid_tree, write_cityscapes_tree, write_kitti_tree

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"
RECIPES = ["cityscapes_paper", "cityscapes_realtime", "kitti_flow_finetune", "camvid", "own_bag_adaptation"]


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_loads_with_the_training_schema(recipe: str) -> None:
    from training.config import load_config

    config = load_config(CONFIGS / f"{recipe}.yaml")
    assert config.name == recipe
    assert config.loss.supervised_flow is False  # EFC learns flow without flow labels
    if config.data.dataset in ("kitti2015", "rosbag"):
        assert config.loss.weights.seg == 0.0  # no labels there


def test_cityscapes_recipe_options_build_train_and_val(tmp_path) -> None:
    from training.config import load_config

    write_cityscapes_tree(tmp_path, "train", cities={"aachen": 1}, size=(32, 64))
    write_cityscapes_tree(tmp_path, "val", cities={"lindau": 1}, size=(32, 64))
    data = load_config(CONFIGS / "cityscapes_realtime.yaml").data
    train = build_dataset(data.dataset, str(tmp_path), data.train_split, **data.options)
    val = build_dataset(data.dataset, str(tmp_path), data.val_split, **data.options)
    assert train.num_labelled_pairs == 10 and len(train) == 20
    assert train[0]["image1"].shape == (3, 448, 896)
    assert len(val) == 1 and val[0]["image1"].shape == (3, 512, 1024) and val[0]["frame_gap"].item() == -1


def test_camvid_and_kitti_recipe_options(tmp_path) -> None:
    from training.config import load_config

    write_camvid_tree(tmp_path / "camvid", "train", sequences={"0001TP": 2}, size=(36, 48))
    write_camvid_tree(tmp_path / "camvid", "val", sequences={"0006R0": 2}, size=(36, 48))
    data = load_config(CONFIGS / "camvid.yaml").data
    sample = build_dataset("camvid", str(tmp_path / "camvid"), "train", **data.options)[0]
    assert sample["image1"].shape == (3, 320, 448) and sample["has_label2"]
    assert len(build_dataset("camvid", str(tmp_path / "camvid"), "val", **data.options)) == 1

    write_kitti_tree(tmp_path / "kitti", pairs=1, size=(30, 40))
    data = load_config(CONFIGS / "kitti_flow_finetune.yaml").data
    val = build_dataset(data.dataset, str(tmp_path / "kitti"), data.val_split, **data.options)
    assert val[0]["flow_fw"].shape == (2, 320, 1024) and torch.any(val[0]["flow_valid"])


def test_build_dataset_synthetic_and_unknown_names() -> None:
    sample = build_dataset("synthetic", None, "val", num_sequences=1, height=64, width=64, num_frames=3)[0]
    assert sample["image1"].shape == (3, 64, 64) and sample["has_flow"]
    with pytest.raises(ValueError, match="unknown dataset"):
        build_dataset("imagenet", "/tmp", "train")
    with pytest.raises(ValueError, match="topic"):
        build_dataset("rosbag", "/tmp/none", "train")
