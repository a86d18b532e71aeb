"""The readers on the workplace's real data (``../shared/data/real``); skipped where it is absent."""

from __future__ import annotations

import numpy as np
import pytest

from efc_core.data.datasets import build_dataset
from tests.conftest import SHARED_DATA

REAL = SHARED_DATA / "real"
pytestmark = pytest.mark.skipif(not REAL.is_dir(),
                                reason=f"real data folder {REAL} absent (read-only, not redistributable)")


def test_camvid_real_splits_and_label_ids() -> None:
    train = build_dataset("camvid", str(REAL / "camvid"), "train", pairs={"max_gap": 1, "unlabelled_per_labelled": 0})
    val = build_dataset("camvid", str(REAL / "camvid"), "val", pairs={"max_gap": 1, "directions": [-1]})
    assert sum(len(s) for s in train.sequences) == 367
    assert sorted(train.sequence_names) == ["0001TP", "0006R0", "0016E5"]
    assert sum(len(s) for s in val.sequences) == 101 and val.sequence_names == ["0016E5"]
    assert all(val.labelled[0])
    sample = val[0]
    assert sample["image1"].shape == (3, 360, 480) and sample["has_label1"]
    ids = set(np.unique(sample["label1"].numpy()).tolist())
    assert ids <= set(range(11)) | {255} and {0, 1, 3} <= ids  # sky, building, road in a street scene


def test_davis_real_sequences() -> None:
    dataset = build_dataset("davis", str(REAL / "davis"), "train", pairs={"max_gap": 1, "directions": [1]})
    assert len(dataset.source.sequences) == 20
    assert sum(len(s) for s in dataset.source.sequences) == 1376
    assert len(dataset) == 1376 - 20
    sample = dataset[0]
    assert sample["image1"].shape == (3, 270, 480) and not sample["has_label1"]


def test_kitti_odometry_real_sequences() -> None:
    dataset = build_dataset("kitti_odometry", str(REAL / "kitti_odometry"), "train",
                            pairs={"max_gap": 1, "directions": [1]})
    assert dataset.source.sequence_names == ["sequence_1", "sequence_2"]
    assert [len(s) for s in dataset.source.sequences] == [51, 51]
    image = dataset[0]["image1"]
    assert image.shape[0] == 3 and image.shape[1] in range(370, 377)


def test_real_videos_cut_at_scene_changes_only() -> None:
    dataset = build_dataset("video", str(REAL / "video"), "train", pairs={"max_gap": 1, "directions": [1]})
    source = dataset.source
    assert [f.name for f in source.files] == ["bikes.mp4", "solidWhiteRight.mp4"]
    assert source.cuts == [[30, 76, 137, 187, 242], []]  # the five cuts of bikes.mp4, none on the highway
    assert sum(len(s) for s in source.sequences) == 250 + 221
    assert dataset[len(dataset) - 1]["image1"].shape == (3, 540, 960)


def test_real_mixture_batches_camvid_with_unlabelled_video() -> None:
    from torch.utils.data import DataLoader

    def source(name: str, weight: float, **extra) -> dict:
        return {"name": name, "root": str(REAL / name), "weight": weight, **extra}

    dataset = build_dataset(
        "mixture", None, "train", length=64, seed=1,
        augment={"crop_size": [192, 256], "scale_range": [0.5, 0.8]},
        sources=[source("camvid", 0.5, pairs={"max_gap": 1, "unlabelled_per_labelled": 0}),
                 source("davis", 0.25, pairs={"max_gap": 2}), source("kitti_odometry", 0.125),
                 source("video", 0.125)],
    )
    assert list(dataset.source_counts.values()) == [32, 16, 8, 8]
    batch = next(iter(DataLoader(dataset, batch_size=8, shuffle=True)))
    assert batch["image1"].shape == (8, 3, 192, 256)
