"""Pair sampling of the synthetic video dataset against the generator's own ground truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from efc_core.contract import IGNORE_LABEL
from efc_core.data.video_dataset import SyntheticVideoDataset

SMALL = {"height": 32, "width": 48, "num_frames": 8, "num_classes": 4, "max_objects": 3}


def make(**kwargs) -> SyntheticVideoDataset:
    options = dict(SMALL, split="train", num_sequences=3, seed=5, label_every=5)
    options.update(kwargs)
    return SyntheticVideoDataset(**options)


def test_pairs_stay_in_their_sequence_with_gaps_1_to_5_both_ways() -> None:
    dataset = make(pairs_per_sequence=60)
    gaps = []
    for index in range(len(dataset)):
        where = dataset.pair_index(index)
        assert where.sequence == index // 60
        assert 0 <= where.first < 8 and 0 <= where.second < 8
        assert 1 <= abs(where.gap) <= 5
        gaps.append(where.gap)
    # Every gap size occurs, forwards and backwards.
    assert set(gaps) == {g for g in range(-5, 6) if g != 0}


def test_images_come_from_the_same_sequence() -> None:
    dataset = make(pairs_per_sequence=4)
    for index in (0, 5, 11):
        where = dataset.pair_index(index)
        sequence = dataset.sequence(where.sequence)
        sample = dataset[index]
        expected1 = torch.from_numpy(sequence.frames[where.first]).permute(2, 0, 1).float() / 255
        expected2 = torch.from_numpy(sequence.frames[where.second]).permute(2, 0, 1).float() / 255
        assert torch.equal(sample["image1"], expected1)
        assert torch.equal(sample["image2"], expected2)
        assert int(sample["frame_gap"]) == where.gap


def test_flow_and_occlusion_match_the_generator() -> None:
    dataset = make(pairs_per_sequence=4)
    for index in range(6):
        where = dataset.pair_index(index)
        sequence = dataset.sequence(where.sequence)
        sample = dataset[index]
        np.testing.assert_array_equal(sample["flow_fw"].permute(1, 2, 0).numpy(),
                                      sequence.flow(where.first, where.second))
        np.testing.assert_array_equal(sample["flow_bw"].permute(1, 2, 0).numpy(),
                                      sequence.flow(where.second, where.first))
        np.testing.assert_array_equal(sample["occ_fw"].numpy(), sequence.occlusion(where.first, where.second))
        np.testing.assert_array_equal(sample["occ_bw"].numpy(), sequence.occlusion(where.second, where.first))
        assert sample["flow_valid"].all() and bool(sample["has_flow"]) and bool(sample["has_occlusion"])
        assert sample["image1"].shape == (3, 32, 48) and sample["flow_fw"].shape == (2, 32, 48)
        assert sample["label1"].dtype == torch.int64 and sample["flow_fw"].dtype == torch.float32


def test_labels_hidden_on_unlabelled_frames() -> None:
    dataset = make(pairs_per_sequence=12)
    seen_hidden = seen_visible = 0
    for index in range(len(dataset)):
        where = dataset.pair_index(index)
        sequence = dataset.sequence(where.sequence)
        sample = dataset[index]
        for frame, label, flag in ((where.first, "label1", "has_label1"), (where.second, "label2", "has_label2")):
            if frame % 5 == 0:  # label_every=5: frames 0 and 5 are labelled
                assert bool(sample[flag])
                np.testing.assert_array_equal(sample[label].numpy(), sequence.labels[frame])
                seen_visible += 1
            else:
                assert not bool(sample[flag])
                assert (sample[label] == IGNORE_LABEL).all()
                seen_hidden += 1
    assert seen_hidden > 0 and seen_visible > 0
    # Held-out splits keep every label for evaluation.
    val = make(split="val", num_sequences=1)
    assert all(bool(val[i]["has_label1"]) for i in range(len(val)))


@pytest.mark.parametrize("fraction, expected", [(1.0, 1.0), (0.0, 2 / 8), (0.5, 0.5 + 0.5 * 2 / 8)])
def test_labelled_anchor_fraction(fraction: float, expected: float) -> None:
    dataset = make(pairs_per_sequence=400, num_sequences=1, labelled_anchor_fraction=fraction)
    labelled = dataset.sequence(0).labelled
    firsts = np.array([dataset.pair_index(i).first for i in range(len(dataset))])
    share = labelled[firsts].mean()
    assert share == pytest.approx(expected, abs=0.07)


def test_deterministic_per_index_and_seed() -> None:
    first, again, other_seed = make(), make(), make(seed=6)
    for index in (0, 7, 20):
        a, b = first[index], again[index]
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(first[i]["image1"], other_seed[i]["image1"]) for i in range(3))
    # Train and validation sequences are different scenes.
    val = make(split="val")
    assert not np.array_equal(first.sequence(0).frames, val.sequence(0).frames)


def test_consecutive_pairing_enumerates_every_neighbour_once() -> None:
    dataset = make(split="val", num_sequences=2)
    pairs = [dataset.pair_index(i) for i in range(len(dataset))]
    assert len(pairs) == 2 * 7
    assert {(p.sequence, p.first, p.second) for p in pairs} == {(s, i, i + 1) for s in range(2) for i in range(7)}


def test_bad_options_are_named() -> None:
    with pytest.raises(ValueError, match="heigth"):
        make(heigth=10)
    with pytest.raises(ValueError, match="max_gap"):
        make(min_gap=3, max_gap=2)
    with pytest.raises(ValueError, match="pairing"):
        make(pairing="shuffled")
