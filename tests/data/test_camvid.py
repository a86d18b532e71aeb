"""CamVid (SegNet layout) reader on a tiny tree."""

from __future__ import annotations

import numpy as np
import pytest

from efc_core.data.datasets import build_dataset
from efc_core.data.datasets.camvid import CamVidDataset
from efc_core.data.datasets.sample import read_label_png
from tests.data.fixtures import write_camvid_tree, write_gray, write_rgb


def test_sequences_pairs_and_labels(tmp_path) -> None:
    write_camvid_tree(tmp_path, "train", sequences={"0001TP": 4, "Seq05VD": 3})
    dataset = CamVidDataset(tmp_path, "train")
    assert dataset.sequence_names == ["0001TP", "Seq05VD"]
    # t = 1 both ways inside each sequence: 2 * (4 - 1) + 2 * (3 - 1)
    assert len(dataset) == 10 and dataset.num_labelled_pairs == 10
    for index, pair in enumerate(dataset.pairs):
        sample = dataset[index]
        assert round(sample["image1"][0, 0, 0].item() * 255) == pair.first
        assert round(sample["image2"][0, 0, 0].item() * 255) == pair.second
        assert round(sample["image1"][1, 0, 0].item() * 255) == pair.sequence
        assert sample["has_label1"] and sample["has_label2"]
        raw = read_label_png(tmp_path / "trainannot" / dataset.sequences[pair.sequence][pair.first])
        expected = np.where(raw >= 11, 255, raw)
        np.testing.assert_array_equal(sample["label1"].numpy(), expected)


def test_frame_order_follows_frame_numbers(tmp_path) -> None:
    write_camvid_tree(tmp_path, "val", sequences={"0016E5": 3})
    dataset = build_dataset("camvid", str(tmp_path), "val", pairs={"max_gap": 2})
    assert dataset.sequences[0] == ["0016E5_006690.png", "0016E5_006720.png", "0016E5_006750.png"]
    assert sorted(abs(p.gap) for p in dataset.pairs) == [1, 1, 1, 1, 2, 2]


def test_frame_numbers_with_f_prefix(tmp_path) -> None:
    for name in ("0006R0_f00960.png", "0006R0_f00930.png"):
        write_rgb(tmp_path / "train" / name, np.zeros((4, 6, 3), np.uint8))
        write_gray(tmp_path / "trainannot" / name, np.zeros((4, 6), np.uint8))
    dataset = CamVidDataset(tmp_path, "train")
    assert dataset.sequence_names == ["0006R0"] and dataset.sequences == [["0006R0_f00930.png", "0006R0_f00960.png"]]


def test_bad_file_name_rejected(tmp_path) -> None:
    write_camvid_tree(tmp_path, "train", sequences={"0001TP": 2})
    (tmp_path / "train" / "junk.png").write_bytes(b"")
    with pytest.raises(ValueError, match="junk.png"):
        CamVidDataset(tmp_path, "train")
