"""Cityscapes sequence reader on a tiny tree in the official layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from efc_core.data.datasets import build_dataset
from efc_core.data.datasets.cityscapes import CityscapesSequenceDataset
from efc_core.data.datasets.pair_sampling import PairSamplingConfig
from tests.data.fixtures import CITYSCAPES_ID_TO_TRAIN_ID, write_cityscapes_tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("cityscapes")
    labels = write_cityscapes_tree(root, "train", cities={"aachen": 2, "bremen": 1})
    write_cityscapes_tree(root, "val", cities={"frankfurt": 1}, seed=1)
    return root, labels


def expected_train_ids(label_ids: np.ndarray) -> np.ndarray:
    out = np.full(label_ids.shape, 255, np.int64)
    for label_id, train_id in CITYSCAPES_ID_TO_TRAIN_ID.items():
        out[label_ids == label_id] = train_id
    return out


def test_snippets_pairs_and_labels(tree) -> None:
    root, labels = tree
    dataset = CityscapesSequenceDataset(root, "train", PairSamplingConfig(unlabelled_per_labelled=1.0))
    assert [(c, s, len(f)) for c, s, f in dataset.sequences] == [("aachen", 0, 30), ("aachen", 1, 30),
                                                                 ("bremen", 0, 30)]
    assert dataset.num_labelled_pairs == 3 * 10 and len(dataset) == 60
    for index in range(len(dataset)):
        pair = dataset.pairs[index]
        if not pair.labelled_first:
            continue
        sample = dataset[index]
        city, sequence, frames = dataset.sequences[pair.sequence]
        # the coded pixels say which files were read
        assert sample["image1"][0, 0, 0].item() * 255 == pytest.approx(frames[19] % 256)
        assert sample["image2"][0, 0, 0].item() * 255 == pytest.approx(frames[19 + pair.gap] % 256)
        assert sample["frame_gap"].item() == pair.gap and 1 <= abs(pair.gap) <= 5
        assert sample["has_label1"] and not sample["has_label2"] and not sample["has_flow"]
        np.testing.assert_array_equal(sample["label1"].numpy(), expected_train_ids(labels[(city, sequence)]))
        assert torch.all(sample["label2"] == 255) and not sample["flow_valid"].any()


def test_unlabelled_pairs_have_no_labels(tree) -> None:
    root, _ = tree
    dataset = CityscapesSequenceDataset(root, "train", PairSamplingConfig(unlabelled_per_labelled=0.5))
    unlabelled = [i for i, p in enumerate(dataset.pairs) if not p.labelled_first]
    assert len(unlabelled) == 15
    sample = dataset[unlabelled[0]]
    assert not sample["has_label1"] and not sample["has_label2"] and torch.all(sample["label1"] == 255)


def test_gap_in_frame_numbers_splits_a_snippet(tmp_path) -> None:
    write_cityscapes_tree(tmp_path, "train", cities={"ulm": 1})
    (tmp_path / "leftImg8bit_sequence/train/ulm/ulm_000000_000010_leftImg8bit.png").unlink()
    dataset = CityscapesSequenceDataset(tmp_path, "train", PairSamplingConfig(unlabelled_per_labelled=None))
    assert [len(f) for _, _, f in dataset.sequences] == [10, 19]
    for pair in dataset.pairs:
        frames = dataset.sequences[pair.sequence][2]
        assert abs(frames[pair.second] - frames[pair.first]) == abs(pair.gap)  # no pair across the hole


def test_build_dataset_per_split_options(tree) -> None:
    root, _ = tree
    options = {
        "pairs": {"unlabelled_per_labelled": 1.0},
        "per_split": {
            "train": {"augment": {"crop_size": [8, 16], "hflip_p": 0.5}},
            "val": {"pairs": {"min_gap": 1, "max_gap": 1, "directions": [-1], "unlabelled_per_labelled": 0}},
        },
    }
    train = build_dataset("cityscapes", str(root), "train", **options)
    val = build_dataset("cityscapes", str(root), "val", **options)
    assert train[0]["image1"].shape == (3, 8, 16)
    assert len(val) == 1 and val.pairs[0].gap == -1 and val[0]["image1"].shape == (3, 16, 32)
    batch = torch.utils.data.default_collate([train[0], train[1]])
    assert batch["label1"].shape == (2, 8, 16)
    with pytest.raises(ValueError, match="unknown option"):
        build_dataset("cityscapes", str(root), "train", crop=[8, 8])


def test_missing_folder_is_reported(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="leftImg8bit_sequence"):
        CityscapesSequenceDataset(tmp_path, "train")
