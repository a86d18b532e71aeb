"""KITTI 2015/2012, Sintel and FlyingChairs on tiny trees in their exact layouts and formats."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from efc_core.data.datasets import build_dataset
from efc_core.data.datasets.flow_datasets import KittiFlowDataset
from efc_core.data.formats import read_flo, read_kitti_flow, write_flo, write_kitti_flow
from tests.data.fixtures import (
    smooth_flow, write_flyingchairs_tree, write_kitti_tree, write_sintel_tree,
)


def test_kitti_png_and_flo_round_trips_are_exact(tmp_path) -> None:
    flow = smooth_flow((9, 13), seed=3, magnitude=40.0)  # quarter pixels: exact at 1/64 px
    valid = np.random.default_rng(0).random((9, 13)) < 0.6
    write_kitti_flow(tmp_path / "f.png", flow, valid)
    read, read_valid = read_kitti_flow(tmp_path / "f.png")
    np.testing.assert_array_equal(read_valid, valid)
    np.testing.assert_array_equal(read[valid], flow[valid])
    dense = np.random.default_rng(1).normal(0, 10, (7, 5, 2)).astype(np.float32)
    write_flo(tmp_path / "f.flo", dense)
    np.testing.assert_array_equal(read_flo(tmp_path / "f.flo"), dense)


@pytest.mark.parametrize("version, name", [(2015, "KittiFlow"), (2015, "data_scene_flow"), (2012, "kitti2012")])
def test_kitti_flow_valid_and_occlusion(tmp_path, version: int, name: str) -> None:
    root = tmp_path / name
    written = write_kitti_tree(root, version=version, pairs=2)
    dataset = build_dataset(f"kitti{version}", str(root), "train")
    assert len(dataset) == 2
    for index, truth in enumerate(written):
        sample = dataset[index]
        assert round(sample["image1"][0, 0, 0].item() * 255) == 10 and round(sample["image2"][0, 0,
                                                                                              0].item() * 255) == 11
        assert round(sample["image1"][1, 0, 0].item() * 255) == index
        valid = truth["valid_occ"]
        np.testing.assert_array_equal(sample["flow_valid"].numpy(), valid)
        assert not sample["flow_valid_bw"].any()  # KITTI has no backward flow: never supervised
        flow = sample["flow_fw"].permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(flow[valid], truth["flow"][valid])
        assert np.all(flow[~valid] == 0)
        # occluded = valid in flow_occ but not in flow_noc
        np.testing.assert_array_equal(sample["occ_fw"].numpy(), valid & ~truth["valid_noc"])
        assert sample["has_flow"] and sample["has_occlusion"] and not sample["has_label1"]


def test_kitti_parent_folder_and_errors(tmp_path) -> None:
    write_kitti_tree(tmp_path / "KittiFlow", pairs=1)
    assert len(KittiFlowDataset(tmp_path, "train")) == 1  # the parent of KittiFlow/, as torchvision
    with pytest.raises(ValueError, match="2013"):
        KittiFlowDataset(tmp_path, version=2013)
    with pytest.raises(FileNotFoundError):
        KittiFlowDataset(tmp_path / "missing", "train")


def test_kitti_sparse_flow_survives_resize(tmp_path) -> None:
    write_kitti_tree(tmp_path / "KittiFlow", pairs=1, size=(10, 24))
    plain = build_dataset("kitti2015", str(tmp_path), "train")[0]
    half = build_dataset("kitti2015", str(tmp_path), "train", resize=[5, 12])[0]
    assert half["flow_valid"].shape == (5, 12) and half["flow_valid"].any()
    # every valid vector after resizing is half of some valid vector before (no blending with invalid zeros)
    before = {tuple(v) for v in (plain["flow_fw"].permute(1, 2, 0)[plain["flow_valid"]] / 2).tolist()}
    after = {tuple(v) for v in half["flow_fw"].permute(1, 2, 0)[half["flow_valid"]].tolist()}
    assert after <= before


@pytest.mark.parametrize("pass_name", ["clean", "final"])
def test_sintel_flow_and_occlusions(tmp_path, pass_name: str) -> None:
    truth = write_sintel_tree(tmp_path, scenes={"alley_1": 3, "market_2": 2})
    dataset = build_dataset("sintel", str(tmp_path / "Sintel"), "train", pass_name=pass_name)
    assert len(dataset) == 3
    seen = set()
    for index in range(len(dataset)):
        sample = dataset[index]
        frame = round(sample["image1"][0, 0, 0].item() * 255)
        scene = ["alley_1", "market_2"][round(sample["image1"][1, 0, 0].item() * 255)]
        assert round(sample["image1"][2, 0, 0].item() * 255) == ("clean", "final").index(pass_name)
        assert round(sample["image2"][0, 0, 0].item() * 255) == frame + 1
        flow, occlusion = truth[(scene, frame)]
        np.testing.assert_array_equal(sample["flow_fw"].permute(1, 2, 0).numpy(), flow)
        np.testing.assert_array_equal(sample["occ_fw"].numpy(), occlusion)
        assert torch.all(sample["flow_valid"]) and sample["has_occlusion"]
        seen.add((scene, frame))
    assert seen == set(truth)


def test_flyingchairs_split_and_flow(tmp_path) -> None:
    flows = write_flyingchairs_tree(tmp_path, split_ids=(1, 2, 1))
    train = build_dataset("flyingchairs", str(tmp_path), "train")
    val = build_dataset("flyingchairs", str(tmp_path), "val")
    assert len(train) == 2 and len(val) == 1
    sample = val[0]
    assert round(sample["image1"][1, 0, 0].item() * 255) == 1  # the pair with index 1 is the val one
    np.testing.assert_array_equal(sample["flow_fw"].permute(1, 2, 0).numpy(), flows[1])
    assert sample["has_flow"] and not sample["has_occlusion"] and torch.all(sample["flow_valid"])
    assert not sample["flow_valid_bw"].any()  # forward-only ground truth


def test_fixed_pair_datasets_reject_pair_options(tmp_path) -> None:
    write_flyingchairs_tree(tmp_path)
    with pytest.raises(ValueError, match="fixed pairs"):
        build_dataset("flyingchairs", str(tmp_path), "train", pairs={"max_gap": 2})


def test_kitti_multiview_sequences_skip_benchmark_frames(tmp_path) -> None:
    from tests.data.fixtures import coded_frame, write_rgb

    for scene in range(2):
        for frame in range(21):
            write_rgb(tmp_path / "training" / "image_2" / f"{scene:06d}_{frame:02d}.png",
                      coded_frame(frame, scene, 0, (6, 8)))
    dataset = build_dataset("kitti2015", str(tmp_path), "multiview", pairs={"max_gap": 2})
    # frames 0-8 and 13-20 of each scene are two sequences
    assert [len(frames) for _, frames in dataset.sequences] == [9, 8, 9, 8]
    for index, pair in enumerate(dataset.pairs):
        scene, frames = dataset.sequences[pair.sequence]
        sample = dataset[index]
        first, second = round(sample["image1"][0, 0, 0].item() * 255), round(sample["image2"][0, 0, 0].item() * 255)
        assert (first, second) == (frames[pair.first], frames[pair.second])
        assert first not in (9, 10, 11, 12) and second not in (9, 10, 11, 12)
        assert 1 <= abs(second - first) <= 2 and not sample["has_flow"]
    with pytest.raises(ValueError, match="fixed pairs"):
        build_dataset("kitti2015", str(tmp_path), "train", pairs={"max_gap": 2})
