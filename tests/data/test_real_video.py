"""DAVIS, KITTI odometry and video-clip readers on tiny trees in the exact layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from efc_core.data.datasets import build_dataset
from efc_core.data.datasets.camvid import CamVidDataset
from efc_core.data.datasets.real_video import VideoClipsSource, scene_cut_score
from tests.data.fixtures import (
    textured_frame, write_camvid_tree, write_davis_tree, write_kitti_odometry_tree, write_video,
)


def _assert_unlabelled(sample: dict) -> None:
    assert not sample["has_label1"] and not sample["has_label2"] and not sample["has_flow"]
    assert (sample["label1"] == 255).all() and (sample["label2"] == 255).all()
    assert not sample["flow_valid"].any()


def test_camvid_jpeg_frames_with_png_labels(tmp_path) -> None:
    write_camvid_tree(tmp_path, "val", sequences={"0016E5": 3}, frame_suffix=".jpg", frame_step=2, digits=5)
    dataset = CamVidDataset(tmp_path, "val")
    assert dataset.sequences == [["0016E5_06690.jpg", "0016E5_06692.jpg", "0016E5_06694.jpg"]]
    assert dataset.num_labelled_pairs == len(dataset) == 4
    sample = dataset[0]
    assert sample["has_label1"] and sample["label1"].shape == (12, 20)
    assert set(np.unique(sample["label1"].numpy())) <= set(range(11)) | {255}


def test_camvid_class_table_is_segnet_order() -> None:
    assert CamVidDataset.class_names[:5] == ("sky", "building", "pole", "road", "pavement")
    assert CamVidDataset.class_names[-1] == "bicyclist" and CamVidDataset.palette.shape == (11, 3)


def test_davis_sequences_pairs_and_no_labels(tmp_path) -> None:
    write_davis_tree(tmp_path, sequences={"bear": 4, "car-shadow": 3})
    dataset = build_dataset("davis", str(tmp_path), "train", pairs={"min_gap": 1, "max_gap": 2, "directions": [1]})
    assert dataset.source.sequence_names == ["bear", "car-shadow"]
    # forward gaps 1 and 2: (3 + 2) + (2 + 1); masks are not read as frames
    assert len(dataset) == 8 and all(p.second > p.first for p in dataset.pairs)
    for index, pair in enumerate(dataset.pairs):
        sample = dataset[index]
        _assert_unlabelled(sample)
        expected = textured_frame(pair.second, pair.sequence, (24, 40)).astype(np.float32) / 255
        got = sample["image2"].permute(1, 2, 0).numpy()
        assert np.abs(got - expected).mean() < 0.03
        assert int(sample["frame_gap"]) == pair.gap


def test_davis_sequence_subset_and_unknown_name(tmp_path) -> None:
    write_davis_tree(tmp_path, sequences={"bear": 3, "car-shadow": 3})
    subset = build_dataset("davis", str(tmp_path), "train", sequences=["car-shadow"])
    assert subset.source.sequence_names == ["car-shadow"]
    with pytest.raises(ValueError, match="horse"):
        build_dataset("davis", str(tmp_path), "train", sequences=["horse"])


def test_davis_wrong_layout_names_the_expected_one(tmp_path) -> None:
    write_kitti_odometry_tree(tmp_path)  # frames directly in the sequence folders, no frames/
    with pytest.raises(FileNotFoundError, match="frames"):
        build_dataset("davis", str(tmp_path), "train")


def test_kitti_odometry_greyscale_becomes_three_channels(tmp_path) -> None:
    write_kitti_odometry_tree(tmp_path, sequences={"sequence_1": 3, "sequence_2": 4})
    dataset = build_dataset("kitti_odometry", str(tmp_path), "train", pairs={"max_gap": 1})
    assert dataset.source.sequence_names == ["sequence_1", "sequence_2"]
    assert len(dataset) == 2 * 2 + 2 * 3
    sample = dataset[0]
    _assert_unlabelled(sample)
    assert sample["image1"].shape == (3, 20, 64)
    assert torch.equal(sample["image1"][0], sample["image1"][1])
    assert torch.equal(sample["image1"][1], sample["image1"][2])


def test_video_pairs_never_cross_a_scene_cut(tmp_path) -> None:
    frames = write_video(tmp_path / "clips" / "a.avi", scenes=[4, 3, 5])
    write_video(tmp_path / "clips" / "b.avi", scenes=[3])
    (tmp_path / "clips" / "notes.txt").write_text("not a video")
    dataset = build_dataset("video", str(tmp_path / "clips"), "train", pairs={"max_gap": 3})
    source = dataset.source
    assert source.cuts == [[4, 7], []]
    assert [len(s) for s in source.sequences] == [4, 3, 5, 3]
    for pair in dataset.pairs:
        keys = source.sequences[pair.sequence]
        assert keys[pair.first][0] == keys[pair.second][0]
    # cached frames decode close to the written ones
    for index in (0, 5, 11):
        assert np.abs(source.read((0, index)).astype(int) - frames[index]).mean() < 6


def test_video_cut_detection_off_and_uncached_reads_agree(tmp_path) -> None:
    frames = write_video(tmp_path / "a.avi", scenes=[3, 3])
    uncut = VideoClipsSource(tmp_path / "a.avi", scene_cut_threshold=None, cache=False)
    cached = VideoClipsSource(tmp_path / "a.avi", scene_cut_threshold=None, cache=True)
    assert uncut.sequences == cached.sequences == [[(0, i) for i in range(6)]]
    for key in reversed(uncut.sequences[0]):  # out of order: exercises seeking
        for source in (uncut, cached):
            errors = [np.abs(source.read(key).astype(int) - frame).mean() for frame in frames]
            assert int(np.argmin(errors)) == key[1] and errors[key[1]] < 10


def test_scene_cut_score_ignores_exposure_and_small_motion() -> None:
    frame = textured_frame(0, 0, (72, 128))
    brighter = np.clip(frame.astype(int) + 30, 0, 255).astype(np.uint8)
    other_scene = textured_frame(0, 5, (72, 128))
    assert scene_cut_score(frame, textured_frame(1, 0, (72, 128))) < 10
    assert scene_cut_score(frame, brighter) < 10
    assert scene_cut_score(frame, other_scene) > 30


def test_video_errors_name_the_path(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        build_dataset("video", str(tmp_path / "missing.mp4"), "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no video files"):
        build_dataset("video", str(tmp_path / "empty"), "train")
    write_video(tmp_path / "x.avi", [3])
    with pytest.raises(ValueError, match="scene_cut_threshold"):
        VideoClipsSource(tmp_path / "x.avi", scene_cut_threshold=-1)
    with pytest.raises(ValueError, match="unknown option"):
        build_dataset("video", str(tmp_path / "x.avi"), "train", sequences=["a"])
