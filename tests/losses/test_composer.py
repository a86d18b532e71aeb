"""The loss composer: which terms it computes, their weighted sum, gradients, ground-truth hygiene."""

from __future__ import annotations

import math

import pytest
import torch

from efc_core.losses.composer import LossConfig, LossWeights, compute_losses
from efc_core.losses.occlusion import range_map_occlusion
from efc_core.losses.photometric import photometric_loss
from efc_core.model.outputs import EFCOutput, FlowPrediction

torch.set_num_threads(1)
BATCH, CLASSES, HEIGHT, WIDTH = 2, 3, 64, 128
STRIDES = (16, 8, 4)  # flow blocks, coarsest first, like the network
TERMS = ("seg", "photometric", "smoothness", "occlusion", "temporal")


def leaf(generator: torch.Generator, *shape: int, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    return (low + (high - low) * torch.rand(*shape, generator=generator)).requires_grad_(True)


def make_prediction(generator: torch.Generator) -> FlowPrediction:
    """Random leaf tensors shaped like a network's prediction (flows in pixels of their level)."""
    sizes = [(HEIGHT // s, WIDTH // s) for s in STRIDES]
    return FlowPrediction(
        flows=[leaf(generator, BATCH, 2, h, w, low=-1.5, high=1.5) for h, w in sizes],
        occlusions=[leaf(generator, BATCH, 1, h, w, low=0.1, high=0.9) for h, w in sizes],
        flow=leaf(generator, BATCH, 2, HEIGHT, WIDTH, low=-3.0, high=3.0),
        occlusion=leaf(generator, BATCH, 1, HEIGHT, WIDTH, low=0.1, high=0.9),
    )


def make_output(seed: int = 0) -> EFCOutput:
    generator = torch.Generator().manual_seed(seed)
    return EFCOutput(
        seg_logits1=leaf(generator, BATCH, CLASSES, HEIGHT, WIDTH, low=-2, high=2),
        seg_logits2=leaf(generator, BATCH, CLASSES, HEIGHT, WIDTH, low=-2, high=2),
        seg_features1=leaf(generator, BATCH, 8, HEIGHT // 8, WIDTH // 8),
        seg_features2=leaf(generator, BATCH, 8, HEIGHT // 8, WIDTH // 8),
        forward=make_prediction(generator),
        backward=make_prediction(generator),
    )


def make_batch(seed: int = 1, labelled: bool = True) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    image1 = torch.rand(BATCH, 3, HEIGHT, WIDTH, generator=generator)
    image2 = torch.rand(BATCH, 3, HEIGHT, WIDTH, generator=generator)
    label1 = torch.randint(0, CLASSES, (BATCH, HEIGHT, WIDTH), generator=generator)
    label2 = torch.full_like(label1, 255)  # the neighbour frame is unlabelled, as in EFC
    if not labelled:
        label1 = torch.full_like(label1, 255)
    return image1, image2, label1, label2


def test_all_terms_and_diagnostics_with_default_weights() -> None:
    losses = compute_losses(make_output(), *make_batch(), LossWeights(), LossConfig())
    assert set(TERMS) | {"total", "occ_fraction", "occ_pred_mean", "seg_mask_fraction"} == set(losses)
    assert all(torch.isfinite(value) for value in losses.values())
    assert not any(losses[name].requires_grad for name in ("occ_fraction", "occ_pred_mean", "seg_mask_fraction"))


@pytest.mark.parametrize("disabled", TERMS)
def test_a_zero_weight_term_is_not_computed(disabled: str) -> None:
    weights = LossWeights(**{disabled: 0.0})
    losses = compute_losses(make_output(), *make_batch(), weights, LossConfig())
    assert disabled not in losses
    assert set(TERMS) - {disabled} <= set(losses)


def test_segmentation_only_needs_no_flow() -> None:
    output = make_output()
    output.forward = output.backward = None
    weights = LossWeights(photometric=0, smoothness=0, occlusion=0, temporal=0)
    losses = compute_losses(output, *make_batch(), weights, LossConfig())
    assert set(losses) == {"seg", "total"}
    with pytest.raises(ValueError, match="forward"):
        compute_losses(output, *make_batch(), LossWeights(), LossConfig())


def test_total_is_the_weighted_sum() -> None:
    weights = LossWeights(seg=0.7, photometric=1.3, smoothness=2.5, occlusion=0.4, temporal=0.9)
    losses = compute_losses(make_output(), *make_batch(), weights, LossConfig())
    expected = sum(getattr(weights, name) * losses[name] for name in TERMS)
    assert losses["total"].item() == pytest.approx(expected.item(), rel=1e-6)


# SSIM + L1 here: a 7x7 census window (plus its border band) leaves no valid pixel on the 4x8 and
# 8x16 maps of the coarse blocks of this small test image, so census would not train them.
@pytest.mark.parametrize("photometric", ("census", "ssim_l1"))
def test_gradients_reach_flow_occlusion_and_segmentation_outputs(photometric: str) -> None:
    output = make_output()
    compute_losses(output, *make_batch(), LossWeights(), LossConfig(photometric=photometric))["total"].backward()
    tensors = {
        "seg_logits1": output.seg_logits1,
        "seg_logits2": output.seg_logits2,
        "forward.flow": output.forward.flow,
        "forward.flows[-1]": output.forward.flows[-1],  # smoothness acts on the stride-4 block
        "forward.occlusion": output.forward.occlusion,
        "forward.occlusions[0]": output.forward.occlusions[0],
        "forward.occlusions[1]": output.forward.occlusions[1],
        "backward.flow": output.backward.flow,
        "backward.occlusion": output.backward.occlusion,
    }
    if photometric == "ssim_l1":
        tensors["forward.flows[0]"] = output.forward.flows[0]
        tensors["forward.flows[1]"] = output.forward.flows[1]
    for name, tensor in tensors.items():
        assert tensor.grad is not None and tensor.grad.abs().sum().item() > 0, name


def test_nothing_labelled_gives_zero_seg_and_finite_total() -> None:
    output = make_output()
    losses = compute_losses(output, *make_batch(labelled=False), LossWeights(), LossConfig())
    assert losses["seg"].item() == 0.0
    assert torch.isfinite(losses["total"])
    losses["total"].backward()
    assert torch.isfinite(output.seg_logits1.grad).all()


def test_flow_ground_truth_never_enters_unless_supervised() -> None:
    output = make_output()
    batch = make_batch()
    poisoned = torch.full((BATCH, 2, HEIGHT, WIDTH), float("nan"))
    plain = compute_losses(output, *batch, LossWeights(), LossConfig())
    with_gt = compute_losses(output, *batch, LossWeights(), LossConfig(), flow_gt_fw=poisoned, flow_gt_bw=poisoned)
    assert "supervised_flow" not in with_gt
    assert {k: v.item() for k, v in with_gt.items()} == {k: v.item() for k, v in plain.items()}


def test_supervised_epe_is_exact_on_constant_flows() -> None:
    output = make_output()
    with torch.no_grad():  # constant flow (2, -1) input pixels at every level, in that level's pixels
        output.forward.flow.copy_(torch.tensor([2.0, -1.0]).view(1, 2, 1, 1).expand_as(output.forward.flow))
        for stride, flow in zip(STRIDES, output.forward.flows):
            flow.copy_(torch.tensor([2.0 / stride, -1.0 / stride]).view(1, 2, 1, 1).expand_as(flow))
    gt = torch.tensor([2.0 + 3.0, -1.0 + 4.0]).view(1, 2, 1, 1).expand(BATCH, 2, HEIGHT, WIDTH)
    weights = LossWeights(seg=0, photometric=0, smoothness=0, occlusion=0, temporal=0, supervised_flow=1.0)
    config = LossConfig(supervised_flow=True, both_directions=False, level_weights=(1.0, 0.5, 0.25))
    losses = compute_losses(output, *make_batch(), weights, config, flow_gt_fw=gt)
    # Every level is off by (3, 4): EPE 5, times the level weights (1 + 0.5 + 0.25).
    assert losses["supervised_flow"].item() == pytest.approx(5.0 * 1.75, rel=1e-5)


def test_backward_supervision_counts_only_pixels_where_the_backward_flow_is_known() -> None:
    """Forward-only ground truth (KITTI, Sintel) and the DIS teacher's inconsistent pixels must not
    pull the backward flow towards the zero placeholder: ``flow_valid_bw`` masks that direction.
    """
    output = make_output()
    with torch.no_grad():  # backward flow (2, -1) input pixels at every level, in that level's pixels
        output.backward.flow.copy_(torch.tensor([2.0, -1.0]).view(1, 2, 1, 1).expand_as(output.backward.flow))
        for stride, flow in zip(STRIDES, output.backward.flows):
            flow.copy_(torch.tensor([2.0 / stride, -1.0 / stride]).view(1, 2, 1, 1).expand_as(flow))
        output.forward.flow.zero_()
        for flow in output.forward.flows:
            flow.zero_()
    zero = torch.zeros(BATCH, 2, HEIGHT, WIDTH)
    gt_bw = torch.tensor([2.0 + 3.0, -1.0 + 4.0]).view(1, 2, 1, 1).expand(BATCH, 2, HEIGHT, WIDTH).clone()
    gt_bw[:, :, :, WIDTH // 2:] = 0.0  # right half: a placeholder, 5.39 px from the prediction
    right_unknown = torch.ones(BATCH, HEIGHT, WIDTH, dtype=torch.bool)
    right_unknown[:, :, WIDTH // 2:] = False
    weights = LossWeights(seg=0, photometric=0, smoothness=0, occlusion=0, temporal=0, supervised_flow=1.0)
    config = LossConfig(supervised_flow=True, level_weights=(1.0,))

    def supervised(valid_bw: torch.Tensor | None) -> float:
        return compute_losses(output, *make_batch(), weights, config, flow_gt_fw=zero, flow_gt_bw=gt_bw,
                              flow_valid_bw=valid_bw)["supervised_flow"].item()

    # Forward exact (EPE 0); backward off by (3, 4) = 5 px on the known left half only.
    assert supervised(right_unknown) == pytest.approx(5.0, rel=1e-5)
    assert supervised(None) == pytest.approx((5.0 + math.hypot(2.0, 1.0)) / 2, rel=1e-5)
    assert supervised(torch.zeros(BATCH, HEIGHT, WIDTH, dtype=torch.bool)) == pytest.approx(0.0, abs=1e-6)


def test_full_resolution_level_matches_the_pure_functions() -> None:
    output = make_output()
    image1, image2, label1, label2 = make_batch()
    weights = LossWeights(seg=0, smoothness=0, occlusion=0, temporal=0)
    config = LossConfig(level_weights=(1.0,), use_seg_mask=False, both_directions=False)
    losses = compute_losses(output, image1, image2, label1, label2, weights, config)
    visible = 1.0 - range_map_occlusion(output.backward.flow.detach(), config.range_map_threshold)
    expected = photometric_loss(image1, image2, output.forward.flow, visible, kind="census")
    assert losses["photometric"].item() == pytest.approx(expected.item(), rel=1e-6)


def swapped(output: EFCOutput) -> EFCOutput:
    return EFCOutput(output.seg_logits2, output.seg_logits1, output.seg_features2, output.seg_features1,
                     forward=output.backward, backward=output.forward)


def test_both_directions_are_summed() -> None:
    output = make_output()
    image1, image2, label1, label2 = make_batch()
    both = compute_losses(output, image1, image2, label1, label2, LossWeights(), LossConfig())
    one_way = LossConfig(both_directions=False)
    losses_fw = compute_losses(output, image1, image2, label1, label2, LossWeights(), one_way)
    losses_bw = compute_losses(swapped(output), image2, image1, label2, label1, LossWeights(), one_way)
    for name in ("photometric", "smoothness", "occlusion", "temporal"):
        assert both[name].item() == pytest.approx(losses_fw[name].item() + losses_bw[name].item(), rel=1e-5), name


def test_invalid_configuration_is_rejected_by_value() -> None:
    with pytest.raises(ValueError, match="charbonnier"):
        LossConfig(photometric="charbonnier")
    with pytest.raises(ValueError, match="3"):
        LossConfig(smoothness_order=3)
    with pytest.raises(ValueError, match="-1"):
        LossWeights(temporal=-1.0)
    with pytest.raises(ValueError, match="flow_gt_fw"):
        compute_losses(make_output(), *make_batch(), LossWeights(), LossConfig(supervised_flow=True))


def test_level_weights_from_yaml_lists_become_tuples() -> None:
    assert LossConfig(level_weights=[1, 0.5]).level_weights == (1.0, 0.5)


@pytest.mark.parametrize("size", ((64, 64), (48, 80)))  # 48x80 is padded to 64x128 by the network
def test_real_tiny_network_trains_through_every_term(size: tuple[int, int]) -> None:
    from efc_core.model.efc_net import build_model

    torch.manual_seed(0)
    model = build_model("tiny", num_classes=CLASSES)
    generator = torch.Generator().manual_seed(2)
    image1 = torch.rand(1, 3, *size, generator=generator)
    image2 = torch.roll(image1, shifts=2, dims=-1)
    label1 = torch.randint(0, CLASSES, (1, *size), generator=generator)
    output = model(image1, image2)
    for temporal_on in ("probabilities", "features"):
        losses = compute_losses(output, image1, image2, label1, torch.full_like(label1, 255), LossWeights(),
                                LossConfig(temporal_on=temporal_on, temporal_flow_gradient=True))
        assert set(TERMS) <= set(losses) and all(math.isfinite(v.item()) for v in losses.values())
    model.zero_grad()
    losses["total"].backward()
    # Every occlusion head (one per flow block) is trained, not only the finest.
    heads = [f"flow_decoder.occlusion_heads.{i}." for i in range(len(model.flow_strides))]
    for prefix in ("flow_decoder", "segmentation", "encoder", *heads):
        grads = [p.grad for name, p in model.named_parameters() if name.startswith(prefix) and p.grad is not None]
        assert grads and sum(g.abs().sum().item() for g in grads) > 0, prefix


def test_supervised_occlusion_targets_the_ground_truth_only_where_it_is_known() -> None:
    output = make_output()
    gt = torch.zeros(BATCH, HEIGHT, WIDTH, dtype=torch.bool)
    gt[:, :, :16] = True
    weights = LossWeights(seg=0, photometric=0, smoothness=0, temporal=0, occlusion=1.0)
    config = LossConfig(supervised_occlusion=True, level_weights=(1.0,))
    with torch.no_grad():
        for prediction in (output.forward, output.backward):
            prediction.occlusion.copy_(torch.where(gt.unsqueeze(1), 0.99, 0.01))
    known = compute_losses(output, *make_batch(), weights, config, occ_gt_fw=gt, occ_gt_bw=gt,
                           occ_known=torch.ones(BATCH, dtype=torch.bool))
    flipped = compute_losses(output, *make_batch(), weights, config, occ_gt_fw=~gt, occ_gt_bw=~gt,
                             occ_known=torch.ones(BATCH, dtype=torch.bool))
    unknown = compute_losses(output, *make_batch(), weights, config, occ_gt_fw=~gt, occ_gt_bw=~gt,
                             occ_known=torch.zeros(BATCH, dtype=torch.bool))
    # Matching the ground truth costs little, the flipped ground truth a lot; samples flagged as
    # unknown ignore it and fall back to the self-supervised target (another value altogether).
    assert known["occlusion"].item() < 0.1
    assert flipped["occlusion"].item() > 2.0
    assert unknown["occlusion"].item() != pytest.approx(flipped["occlusion"].item(), rel=1e-3)
    assert known["occ_fraction"].item() == pytest.approx(gt.float().mean().item(), abs=1e-6)


def test_coarse_levels_take_the_area_average_of_the_full_resolution_target() -> None:
    output = make_output()
    gt = torch.zeros(BATCH, HEIGHT, WIDTH, dtype=torch.bool)
    gt[:, :8, :8] = True  # exactly half of the first stride-16 cell
    weights = LossWeights(seg=0, photometric=0, smoothness=0, temporal=0, occlusion=1.0)
    coarse_only = LossConfig(supervised_occlusion=True, level_weights=(0.0, 0.0, 1.0), occlusion_balanced=False,
                             both_directions=False)
    with torch.no_grad():
        output.forward.occlusions[0].fill_(0.5)
    losses = compute_losses(output, *make_batch(), weights, coarse_only, occ_gt_fw=gt, occ_gt_bw=gt)
    # Every coarse cell predicts 0.5: BCE is log 2 whatever the (soft) target.
    assert losses["occlusion"].item() == pytest.approx(math.log(2.0), rel=1e-5)
    with torch.no_grad():
        output.forward.occlusions[0].fill_(1e-3)
        output.forward.occlusions[0][:, :, 0, 0] = 0.5
    losses = compute_losses(output, *make_batch(), weights, coarse_only, occ_gt_fw=gt, occ_gt_bw=gt)
    cells = (HEIGHT // 16) * (WIDTH // 16)
    expected = (math.log(2.0) - (cells - 1) * math.log1p(-1e-3)) / cells  # target 0.5 in cell (0, 0), 0 elsewhere
    assert losses["occlusion"].item() == pytest.approx(expected, rel=1e-4)
