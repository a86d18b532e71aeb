"""Segmentation terms: cross-entropy with ignored pixels, O_seg, the error mask and L_tc."""

from __future__ import annotations

import math

import pytest
import torch

from efc_core.losses.semantic import error_mask, seg_occlusion, segmentation_loss, temporal_consistency_loss

torch.set_num_threads(1)
HEIGHT, WIDTH, CLASSES = 16, 20, 4
SHIFT = (2, 1)  # (dx, dy): a pixel p of frame 1 is at p + SHIFT in frame 2


def one_hot_logits(labels: torch.Tensor, scale: float = 6.0) -> torch.Tensor:
    """(B, H, W) labels -> (B, K, H, W) logits whose argmax is the label."""
    return torch.nn.functional.one_hot(labels, CLASSES).permute(0, 3, 1, 2).float() * scale


def shifted_frames() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """labels1, labels2 with labels2(p + SHIFT) = labels1(p), and the flow 1 -> 2."""
    generator = torch.Generator().manual_seed(0)
    labels2 = torch.randint(0, CLASSES, (1, HEIGHT, WIDTH), generator=generator)
    dx, dy = SHIFT
    labels1 = torch.randint(0, CLASSES, (1, HEIGHT, WIDTH), generator=generator)
    labels1[:, : HEIGHT - dy, : WIDTH - dx] = labels2[:, dy:, dx:]
    flow = torch.zeros(1, 2, HEIGHT, WIDTH)
    flow[:, 0], flow[:, 1] = dx, dy
    return labels1, labels2, flow


def test_seg_occlusion_is_zero_for_identical_frames() -> None:
    logits = torch.randn(2, CLASSES, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(1))
    assert seg_occlusion(logits, logits.clone(), torch.zeros(2, 2, HEIGHT, WIDTH)).sum().item() == 0.0


def test_seg_occlusion_flags_exactly_the_pixels_whose_warped_label_differs() -> None:
    labels1, labels2, flow = shifted_frames()
    assert seg_occlusion(one_hot_logits(labels1), one_hot_logits(labels2), flow).sum().item() == 0.0
    changed = [(3, 5), (10, 7), (12, 15)]  # (row, column) of frame 2
    for row, col in changed:
        labels2[0, row, col] = (labels2[0, row, col] + 1) % CLASSES
    expected = torch.zeros(1, 1, HEIGHT, WIDTH)
    for row, col in changed:
        expected[0, 0, row - SHIFT[1], col - SHIFT[0]] = 1.0
    assert torch.equal(seg_occlusion(one_hot_logits(labels1), one_hot_logits(labels2), flow), expected)


def test_seg_occlusion_ignores_pixels_leaving_the_image() -> None:
    labels1, labels2, flow = shifted_frames()
    labels1[:, HEIGHT - 1, :] = (labels1[:, HEIGHT - 1, :] + 1) % CLASSES  # the last row leaves (dy = 1)
    assert seg_occlusion(one_hot_logits(labels1), one_hot_logits(labels2), flow).sum().item() == 0.0


def test_error_mask_is_the_soft_union() -> None:
    target = torch.tensor([0.0, 1.0, 0.0, 1.0]).view(1, 1, 2, 2)
    seg_mask = torch.tensor([0.0, 0.0, 1.0, 1.0]).view(1, 1, 2, 2)
    assert error_mask(target, seg_mask, 1.0).flatten().tolist() == [0.0, 1.0, 1.0, 1.0]
    assert error_mask(target, seg_mask, 0.5).flatten().tolist() == [0.0, 1.0, 0.5, 1.0]
    assert torch.equal(error_mask(target, seg_mask, 0.0), target)
    assert torch.equal(error_mask(target, None), target)


def test_segmentation_loss_counts_only_labelled_pixels() -> None:
    labels = torch.randint(0, CLASSES, (1, HEIGHT, WIDTH), generator=torch.Generator().manual_seed(2))
    logits = one_hot_logits(labels, scale=20.0)
    ignored = labels.clone()
    ignored[:, :, : WIDTH // 2] = 255
    wrong_logits = logits.clone()
    wrong_logits[..., : WIDTH // 2] = -logits[..., : WIDTH // 2]  # badly wrong, but only where ignored
    assert segmentation_loss([wrong_logits], [ignored]).item() < 1e-6
    assert segmentation_loss([wrong_logits], [labels]).item() > 1.0
    # Uniform logits cost log K per labelled pixel; an unlabelled frame adds nothing.
    uniform = torch.zeros(1, CLASSES, HEIGHT, WIDTH)
    unlabelled = torch.full_like(labels, 255)
    assert segmentation_loss([uniform, uniform], [ignored, unlabelled]).item() == pytest.approx(math.log(CLASSES),
                                                                                                rel=1e-5)


def test_segmentation_loss_is_zero_not_nan_without_labels() -> None:
    logits = torch.randn(2, CLASSES, HEIGHT, WIDTH, requires_grad=True)
    unlabelled = torch.full((2, HEIGHT, WIDTH), 255, dtype=torch.long)
    loss = segmentation_loss([logits], [unlabelled])
    loss.backward()
    assert loss.item() == 0.0
    assert torch.all(logits.grad == 0)


def probabilities_from(labels: torch.Tensor) -> torch.Tensor:
    return torch.softmax(one_hot_logits(labels), dim=1)


def test_temporal_loss_is_zero_for_consistent_frames_and_counts_visible_pixels_only() -> None:
    labels1, labels2, flow = shifted_frames()
    no_occlusion = torch.zeros(1, 1, HEIGHT, WIDTH)
    probs1, probs2 = probabilities_from(labels1), probabilities_from(labels2)
    assert temporal_consistency_loss(probs1, probs2, flow, no_occlusion).item() < 1e-6
    labels2[0, 5, 6] = (labels2[0, 5, 6] + 1) % CLASSES
    probs2 = probabilities_from(labels2)
    assert temporal_consistency_loss(probs1, probs2, flow, no_occlusion).item() > 1e-3
    occlusion = no_occlusion.clone()
    occlusion[0, 0, 5 - SHIFT[1], 6 - SHIFT[0]] = 1.0  # the pixel of frame 1 that lands there
    assert temporal_consistency_loss(probs1, probs2, flow, occlusion).item() < 1e-6


def test_temporal_loss_on_coarser_features_rescales_the_flow() -> None:
    generator = torch.Generator().manual_seed(3)
    features2 = torch.randn(1, 8, HEIGHT // 2, WIDTH // 2, generator=generator)
    features1 = torch.zeros_like(features2)
    features1[..., :, :-1] = features2[..., :, 1:]  # one feature pixel = two input pixels
    flow = torch.zeros(1, 2, HEIGHT, WIDTH)
    flow[:, 0] = 2.0
    occlusion = torch.zeros(1, 1, HEIGHT, WIDTH)
    assert temporal_consistency_loss(features1, features2, flow, occlusion).item() < 1e-5
    assert temporal_consistency_loss(features1, features2, flow * 0, occlusion).item() > 0.5


@pytest.mark.parametrize("flow_gradient", (False, True))
def test_temporal_flow_gradient_flag(flow_gradient: bool) -> None:
    generator = torch.Generator().manual_seed(4)
    maps1 = torch.rand(1, 3, HEIGHT, WIDTH, generator=generator, requires_grad=True)
    maps2 = torch.rand(1, 3, HEIGHT, WIDTH, generator=generator)
    flow = torch.full((1, 2, HEIGHT, WIDTH), 0.3, requires_grad=True)
    occlusion = torch.full((1, 1, HEIGHT, WIDTH), 0.2, requires_grad=True)
    temporal_consistency_loss(maps1, maps2, flow, occlusion, flow_gradient=flow_gradient).backward()
    assert maps1.grad is not None and maps1.grad.abs().sum().item() > 0
    assert occlusion.grad is None  # the occlusion is always detached here
    assert (flow.grad is not None and flow.grad.abs().sum().item() > 0) == flow_gradient


def test_class_weights_weigh_each_pixel_and_normalise_by_the_labelled_weight() -> None:
    logits = torch.zeros(1, 2, 1, 3)   # uniform prediction: every labelled pixel costs ln 2
    logits[0, 0, 0, 2] = math.log(3.0)  # third pixel: p(class 0) = 3/4
    labels = torch.tensor([[[0, 1, 0]]])
    weights = torch.tensor([1.0, 3.0])
    loss = segmentation_loss([logits], [labels], weights)
    expected = (1.0 * math.log(2) + 3.0 * math.log(2) + 1.0 * -math.log(0.75)) / (1.0 + 3.0 + 1.0)
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert float(segmentation_loss([logits], [labels])) == pytest.approx((2 * math.log(2) - math.log(0.75)) / 3,
                                                                         rel=1e-6)
    with pytest.raises(ValueError, match="class_weights"):
        segmentation_loss([logits], [labels], torch.ones(3))
