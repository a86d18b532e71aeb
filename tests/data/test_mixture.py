"""The mixture dataset: ratio, determinism, identical sample dicts, per-split sources."""

from __future__ import annotations

import pytest
from torch.utils.data import DataLoader

from efc_core.data.datasets import build_dataset, dataset_class_info
from efc_core.data.datasets.mixture import MixtureDataset
from tests.data.fixtures import write_camvid_tree, write_davis_tree, write_video


def _mixture_options(tmp_path, **extra):
    write_camvid_tree(tmp_path / "camvid", "train", sequences={"0001TP": 4}, size=(24, 40), frame_suffix=".jpg")
    write_camvid_tree(tmp_path / "camvid", "val", sequences={"0016E5": 3}, size=(24, 40), frame_suffix=".jpg")
    write_davis_tree(tmp_path / "davis", sequences={"bear": 6, "dog": 5}, size=(30, 48))
    write_video(tmp_path / "video" / "clip.avi", scenes=[5, 4], size=(36, 52))
    return {
        "augment": {"crop_size": [16, 32], "hflip_p": 0.5},
        "seed": 3,
        "sources": [
            {"name": "camvid", "root": str(tmp_path / "camvid"), "weight": 2,
             "pairs": {"max_gap": 1, "unlabelled_per_labelled": 0}},
            {"name": "davis", "root": str(tmp_path / "davis"), "weight": 1, "splits": ["train"]},
            {"name": "video", "root": str(tmp_path / "video"), "weight": 1, "splits": ["train"],
             "pairs": {"max_gap": 2}},
        ],
        **extra,
    }


def test_mixture_ratio_keys_and_crop_size(tmp_path) -> None:
    options = _mixture_options(tmp_path, length=200)
    dataset = build_dataset("mixture", None, "train", **options)
    assert len(dataset) == 200
    counts = list(dataset.source_counts.values())
    assert counts == [100, 50, 50]
    batch = next(iter(DataLoader(dataset, batch_size=16, shuffle=True)))  # default_collate: same keys and sizes
    assert batch["image1"].shape == (16, 3, 16, 32) and batch["label1"].shape == (16, 16, 32)
    labelled = batch["has_label1"].numpy()
    assert labelled.any() and not labelled.all()
    assert (batch["label1"][~batch["has_label1"]] == 255).all()


def test_mixture_is_deterministic_and_covers_small_sources(tmp_path) -> None:
    options = _mixture_options(tmp_path)
    first = build_dataset("mixture", None, "train", **options)
    second = build_dataset("mixture", None, "train", **options)
    assert [first.locate(i) for i in range(len(first))] == [second.locate(i) for i in range(len(second))]
    # default length: every source's share covers all of its samples at least once
    for source_index, source in enumerate(first.sources):
        drawn = {inner for s, inner in map(first.locate, range(len(first))) if s == source_index}
        assert drawn == set(range(len(source)))


def test_mixture_per_split_sources_and_class_info(tmp_path) -> None:
    options = _mixture_options(tmp_path)
    val = build_dataset("mixture", None, "val", **options)
    assert not isinstance(val, MixtureDataset) and len(val) == 4 and val.class_names[0] == "sky"
    assert dataset_class_info("mixture", options)[0][3] == "road"
    assert dataset_class_info("mixture", {"sources": [{"name": "davis"}]}) is None


def test_mixture_rejects_mismatched_sizes_naming_the_source(tmp_path) -> None:
    options = _mixture_options(tmp_path)
    options.pop("augment")
    with pytest.raises(ValueError, match="davis.*same resize"):
        build_dataset("mixture", None, "train", **options)
    options["resize"] = [24, 40]
    build_dataset("mixture", None, "train", **options)  # one resize for all: fine


def test_mixture_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="sources"):
        build_dataset("mixture", None, "train")
    with pytest.raises(ValueError, match="source #0.*needs a root"):
        build_dataset("mixture", None, "train", sources=[{"name": "davis"}])
    with pytest.raises(ValueError, match="weights"):
        MixtureDataset([[1], [2]], [0, 0])
    with pytest.raises(ValueError, match="no mixture source"):
        build_dataset("mixture", None, "val", sources=[{"name": "davis", "root": "x", "splits": ["train"]}])


def test_synthetic_source_without_labels_joins_a_labelled_mixture(tmp_path) -> None:
    options = _mixture_options(tmp_path, length=60)
    options["sources"].append({
        "name": "synthetic", "weight": 2, "splits": ["train"], "with_labels": False, "num_sequences": 2,
        "height": 16, "width": 32, "num_frames": 3, "max_gap": 2,
    })
    dataset = build_dataset("mixture", None, "train", **options)
    synthetic = [i for i in range(len(dataset)) if dataset.names[dataset._source_of[i]].startswith("synthetic")]
    assert len(synthetic) == 20
    sample = dataset[synthetic[0]]
    # Exact flow and occlusion of the generator, none of its (other) classes.
    assert bool(sample["has_flow"]) and bool(sample["has_occlusion"])
    assert not bool(sample["has_label1"]) and (sample["label1"] == 255).all() and (sample["label2"] == 255).all()
    # Checkpoints of such a run are named after the labelled source.
    assert dataset_class_info("mixture", options)[0][3] == "road"
    assert dataset_class_info("mixture", {"sources": [options["sources"][-1]]}) is None
