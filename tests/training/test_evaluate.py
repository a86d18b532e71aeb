"""``evaluate_model`` on hand-made pairs with known answers, and the evaluation CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from efc_core.contract import IGNORE_LABEL
from efc_core.model.outputs import EFCOutput, FlowPrediction
from efc_core.flow_refinement import VariationalFlowRefiner
from training.evaluate import baseline_metrics, evaluate_model

torch.set_num_threads(1)
HEIGHT, WIDTH, SHIFT = 16, 24, 4.0


class ThresholdModel(nn.Module):
    """Class 1 where the red channel is bright, a constant flow and occlusion probability.

    Not a stand-in for the real network: an analytic oracle whose metrics are known exactly.
    """

    def __init__(self, flow: tuple[float, float], occlusion: float, size: tuple[int, int] = (HEIGHT, WIDTH)) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("flow_value", torch.tensor(flow).view(1, 2, 1, 1))
        self.occlusion_value = occlusion

    def forward(self, image1, image2, with_flow=True, both_directions=True) -> EFCOutput:
        def logits(image: torch.Tensor) -> torch.Tensor:
            red = image[:, 0]  # normalised: > 0 means brighter than the ImageNet mean
            return torch.stack((-red, red), dim=1)

        batch = image1.shape[0]
        flow = self.flow_value.expand(batch, 2, *self.size)
        occlusion = torch.full((batch, 1, *self.size), self.occlusion_value)
        prediction = FlowPrediction(flows=[flow], occlusions=[occlusion], flow=flow, occlusion=occlusion)
        features = torch.zeros(batch, 1, self.size[0] // 8, self.size[1] // 8)
        return EFCOutput(logits(image1), logits(image2), features, features, forward=prediction)


def shifted_pair(has_label1: bool = True) -> dict[str, torch.Tensor]:
    """A red square that moves SHIFT px right; labels 1 on the square, 0 elsewhere."""
    labels1 = np.zeros((HEIGHT, WIDTH), np.int64)
    labels1[4:12, 4:10] = 1
    labels2 = np.roll(labels1, int(SHIFT), axis=1)
    image1 = np.zeros((3, HEIGHT, WIDTH), np.float32)
    image1[0] = labels1
    image2 = np.zeros_like(image1)
    image2[0] = labels2
    occ = np.zeros((HEIGHT, WIDTH), bool)
    occ[:, -int(SHIFT):] = True  # these pixels leave the image
    label1 = torch.from_numpy(labels1) if has_label1 else torch.full((HEIGHT, WIDTH), IGNORE_LABEL)
    flow = np.zeros((2, HEIGHT, WIDTH), np.float32)
    flow[0] = SHIFT
    return {
        "image1": torch.from_numpy(image1), "image2": torch.from_numpy(image2),
        "label1": label1, "label2": torch.from_numpy(labels2),
        "flow_fw": torch.from_numpy(flow), "flow_bw": torch.from_numpy(-flow),
        "flow_valid": torch.ones(HEIGHT, WIDTH, dtype=torch.bool),
        "occ_fw": torch.from_numpy(occ), "occ_bw": torch.from_numpy(occ[:, ::-1].copy()),
        "has_flow": torch.tensor(True), "has_occlusion": torch.tensor(True),
        "has_label1": torch.tensor(has_label1), "has_label2": torch.tensor(True),
        "frame_gap": torch.tensor(1),
    }


def test_perfect_flow_and_segmentation() -> None:
    pairs = [shifted_pair(), shifted_pair(), shifted_pair(has_label1=False)]
    metrics = evaluate_model(ThresholdModel((SHIFT, 0.0), 0.9), pairs, batch_size=2, num_classes=2)
    assert metrics["pairs"] == 3
    assert metrics["epe"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["fl_all"] == pytest.approx(0.0)
    assert metrics["zero_flow_epe"] == pytest.approx(SHIFT)
    assert metrics["miou"] == pytest.approx(1.0)
    assert metrics["tc_gt_flow"] == pytest.approx(1.0)
    # TC with the model's own flow trusts only pixels it predicts visible: here none.
    assert metrics["tc_own_flow"] is None
    # Everything predicted occluded: recall 1, precision = occluded share (SHIFT / WIDTH columns).
    assert metrics["occlusion_recall"] == pytest.approx(1.0)
    assert metrics["occlusion_precision"] == pytest.approx(SHIFT / WIDTH)


def test_zero_flow_model_scores_the_zero_flow_baseline() -> None:
    metrics = evaluate_model(ThresholdModel((0.0, 0.0), 0.1), [shifted_pair()], batch_size=1, num_classes=2)
    assert metrics["epe"] == pytest.approx(SHIFT) == pytest.approx(metrics["zero_flow_epe"])
    # EPE 4 > 3 px and > 5 % of |gt| = 4: every pixel is an outlier.
    assert metrics["fl_all"] == pytest.approx(1.0)
    assert metrics["occlusion_recall"] == pytest.approx(0.0)
    # Zero flow compares the square at t with the shifted square at t+1: not consistent.
    assert metrics["tc_own_flow"] < 0.8


def textured_shift_pair(shift: int = 3, height: int = 64, width: int = 96) -> dict[str, torch.Tensor]:
    """A smooth random texture and its copy rolled ``shift`` px right (wrapped columns: occluded)."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.uniform(0, 1, (height, width + shift, 3)).astype(np.float32), (0, 0), 1.5)
    texture = (texture - texture.min()) / (texture.max() - texture.min())
    image1 = texture[:, shift:]
    image2 = texture[:, :width]  # image2(x + shift) = image1(x)
    flow = np.zeros((2, height, width), np.float32)
    flow[0] = shift
    occ = np.zeros((height, width), bool)
    occ[:, width - shift:] = True
    chw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))  # noqa: E731
    return {"image1": chw(image1), "image2": chw(image2), "flow_fw": torch.from_numpy(flow),
            "flow_valid": torch.ones(height, width, dtype=torch.bool), "occ_fw": torch.from_numpy(occ),
            "has_flow": torch.tensor(True), "has_occlusion": torch.tensor(True)}


def test_flow_refinement_scores_the_refined_flow_and_leaves_the_rest() -> None:
    pair = textured_shift_pair(shift=3)
    height, width = pair["image1"].shape[1:]
    labels = torch.zeros(height, width, dtype=torch.long)
    pair.update(label1=labels, label2=labels, has_label1=torch.tensor(True), has_label2=torch.tensor(True))
    model = ThresholdModel((2.5, 0.0), 0.1, size=(height, width))   # half a pixel short of the shift
    plain = evaluate_model(model, [pair], num_classes=2)
    refined = evaluate_model(model, [pair], num_classes=2,
                             flow_refiner=VariationalFlowRefiner(iterations=10, max_pixels=1 << 20))
    assert plain["epe"] == pytest.approx(0.5, abs=1e-6)
    assert refined["epe"] < 0.8 * plain["epe"], refined["epe"]   # measured 0.50 -> 0.32
    for key in ("miou", "occlusion_f1", "occlusion_recall", "zero_flow_epe", "pairs"):
        assert refined[key] == plain[key], key


def test_baselines_score_the_same_pairs() -> None:
    pair = textured_shift_pair()
    results = baseline_metrics([pair], ["zero", "dis-medium"])
    assert results["zero"]["epe"] == pytest.approx(3.0) and results["zero"]["occlusion_f1"] is None
    assert results["dis-medium"]["epe"] < 0.3 * results["zero"]["epe"], results
    assert results["dis-medium"]["pairs"] == 1 and results["dis-medium"]["ms_per_pair"] > 0
    with pytest.raises(ValueError, match="'raft'"):
        baseline_metrics([pair], ["raft"])


@pytest.mark.slow
def test_cli_writes_the_metrics_of_a_checkpoint(tmp_path: Path) -> None:
    from efc_core.data.synthetic import SYNTHETIC_CLASS_NAMES, SYNTHETIC_PALETTE
    from efc_core.data.video_dataset import SyntheticVideoDataset
    from efc_core.model import build_model
    from efc_core.model.checkpoint import save_checkpoint
    from training.config import load_config, to_dict
    from training.evaluate import main

    torch.manual_seed(0)
    model = build_model("tiny", 4)
    config = load_config(None, ["model.num_classes=4", "data.synthetic.height=64", "data.synthetic.width=64",
                                "data.synthetic.num_frames=3", "seed=2", "data.synthetic.texture_source=photo",
                                "data.synthetic.object_tint=0.8", "data.synthetic.max_rotation_deg=2.0"])
    checkpoint = save_checkpoint(tmp_path / "model.pt", model, train_config=to_dict(config), step=0, metrics={},
                                 class_names=SYNTHETIC_CLASS_NAMES[:4], palette=SYNTHETIC_PALETTE[:4])
    output = tmp_path / "metrics.json"
    shipped = tmp_path / "shipped.pt"
    assert main([str(checkpoint), "--dataset", "synthetic", "--num-sequences", "1", "--output", str(output),
                 "--num-threads", "1", "--ship", str(shipped)]) == 0
    written = json.loads(output.read_text())
    # The CLI evaluates the generator settings the checkpoint was trained with.
    # Photo textures, tint and rotation included: the held-out set is the training run's own.
    dataset = SyntheticVideoDataset(split="val", num_sequences=1, seed=2, height=64, width=64, num_frames=3,
                                    label_every=5, num_classes=4, texture_source="photo", object_tint=0.8,
                                    max_rotation_deg=2.0)
    expected = evaluate_model(model.eval(), dataset, class_names=list(SYNTHETIC_CLASS_NAMES[:4]))
    assert written["pairs"] == 2
    for key in ("miou", "epe", "epe_noc", "fl_all", "zero_flow_epe", "occlusion_f1", "tc_own_flow", "tc_gt_flow"):
        assert written[key] == pytest.approx(expected[key], rel=1e-5), key
    assert set(written["iou"]) == set(SYNTHETIC_CLASS_NAMES[:4])
    # The shipped copy: same weights, the metrics just measured, no optimiser state.
    from efc_core.model.checkpoint import load_model

    reloaded, state = load_model(shipped)
    assert state["optimizer_state"] is None and state["metrics"]["miou"] == written["miou"]
    assert all(torch.equal(a, b) for a, b in zip(reloaded.state_dict().values(), model.state_dict().values()))


def test_a_shipped_checkpoints_texture_folders_are_found_under_the_data_root(tmp_path: Path) -> None:
    from training.config import load_config, to_dict
    from training.evaluate import build_eval_dataset
    from training.evaluate import without_workplace_paths

    config = load_config(None, ["data.synthetic.texture_source=photo", "data.synthetic.height=32",
                                "data.synthetic.width=32", "data.synthetic.num_frames=2"])
    config.data.synthetic.texture_dirs = ["../shared/data/real/textures"]
    shipped = {"train_config": without_workplace_paths(to_dict(config)), "model_config": {"num_classes": 6}}
    assert shipped["train_config"]["data"]["synthetic"]["texture_dirs"] == ["<data root>/real/textures"]
    dataset = build_eval_dataset(shipped, "synthetic", None, "val", 1, data_root=str(tmp_path))
    assert dataset.config.texture_dirs == (str(tmp_path / "real" / "textures"),)


def test_a_stage_trained_on_a_mixture_is_scored_on_the_held_out_set_of_the_synthetic_run(tmp_path: Path) -> None:
    from efc_core.data.synthetic import SYNTHETIC_CLASS_NAMES, SYNTHETIC_PALETTE
    from efc_core.model import build_model
    from efc_core.model.checkpoint import save_checkpoint
    from training.config import load_config, to_dict
    from training.evaluate import main

    torch.manual_seed(0)
    model = build_model("tiny", 4)
    names, palette = SYNTHETIC_CLASS_NAMES[:4], SYNTHETIC_PALETTE[:4]
    synthetic_run = load_config(None, ["model.num_classes=4", "data.synthetic.height=64", "data.synthetic.width=64",
                                       "data.synthetic.num_frames=3", "seed=2"])
    mixture_run = load_config(None, ["model.num_classes=4", "data.dataset=mixture"])
    first = save_checkpoint(tmp_path / "synthetic.pt", model, train_config=to_dict(synthetic_run), step=0,
                            metrics={}, class_names=names, palette=palette)
    later = save_checkpoint(tmp_path / "mixture.pt", model, train_config=to_dict(mixture_run), step=0,
                            metrics={}, class_names=names, palette=palette)
    with pytest.raises(ValueError, match="trained on 'mixture', not on synthetic data"):
        main([str(later), "--num-sequences", "1", "--num-threads", "1"])
    direct, borrowed = tmp_path / "direct.json", tmp_path / "borrowed.json"
    assert main([str(first), "--num-sequences", "1", "--num-threads", "1", "--output", str(direct)]) == 0
    assert main([str(later), "--num-sequences", "1", "--num-threads", "1", "--output", str(borrowed),
                 "--synthetic-from", str(first)]) == 0
    direct_metrics, borrowed_metrics = (json.loads(p.read_text()) for p in (direct, borrowed))
    # Same weights on the same generated pairs: the same numbers, and the file says whose set it was.
    assert borrowed_metrics["held_out_set_of"] == str(first) and "held_out_set_of" not in direct_metrics
    for key in ("pairs", "miou", "epe", "occlusion_f1"):
        assert borrowed_metrics[key] == direct_metrics[key], key
