"""Occlusion targets against analytic occlusion, and the occlusion loss with its penalty."""

from __future__ import annotations

import math

import pytest
import torch

from efc_core.losses.occlusion import (
    forward_backward_occlusion,
    occlusion_loss,
    occlusion_target,
    range_map,
    range_map_occlusion,
)
from efc_core.model.warp import inside_mask

torch.set_num_threads(1)
HEIGHT, WIDTH = 24, 32
# A 8x8 square at rows 8..15, columns 10..17 of frame 1 moves by (+4, 0) over a static background.
TOP, LEFT, SIZE, SHIFT = 8, 10, 8, 4


def constant_flow(dx: float, dy: float) -> torch.Tensor:
    return torch.tensor([dx, dy]).view(1, 2, 1, 1).expand(1, 2, HEIGHT, WIDTH).clone()


def square_flows() -> tuple[torch.Tensor, torch.Tensor]:
    """Exact flows of the moving square: flow_fw on frame 1's grid, flow_bw on frame 2's grid."""
    flow_fw = torch.zeros(1, 2, HEIGHT, WIDTH)
    flow_fw[:, 0, TOP : TOP + SIZE, LEFT : LEFT + SIZE] = SHIFT
    flow_bw = torch.zeros(1, 2, HEIGHT, WIDTH)
    flow_bw[:, 0, TOP : TOP + SIZE, LEFT + SHIFT : LEFT + SIZE + SHIFT] = -SHIFT
    return flow_fw, flow_bw


def test_range_map_equals_the_analytic_occlusion_of_a_moving_square() -> None:
    flow_fw, flow_bw = square_flows()
    # Frame 1: the background strip just right of the square is covered in frame 2.
    expected1 = torch.zeros(1, 1, HEIGHT, WIDTH)
    expected1[..., TOP : TOP + SIZE, LEFT + SIZE : LEFT + SIZE + SHIFT] = 1.0
    # Frame 2: the background strip the square uncovered (its old left part) was hidden in frame 1.
    expected2 = torch.zeros(1, 1, HEIGHT, WIDTH)
    expected2[..., TOP : TOP + SIZE, LEFT : LEFT + SHIFT] = 1.0
    assert torch.equal(range_map_occlusion(flow_bw), expected1)
    assert torch.equal(range_map_occlusion(flow_fw), expected2)
    assert torch.equal(occlusion_target(flow_fw, flow_bw, "range_map"), expected1)


def test_range_map_counts_the_pixels_landing_twice() -> None:
    _, flow_bw = square_flows()
    mass = range_map(flow_bw)
    # Frame 1's old square columns receive the square and the uncovered background of frame 2.
    assert torch.all(mass[..., TOP : TOP + SIZE, LEFT : LEFT + SHIFT] == 2.0)
    assert mass.sum().item() == HEIGHT * WIDTH  # nothing leaves the image: mass is conserved


def test_range_map_conserves_mass_for_subpixel_flows_inside_the_image() -> None:
    generator = torch.Generator().manual_seed(0)
    flow_bw = (torch.rand(1, 2, HEIGHT, WIDTH, generator=generator) - 0.5) * 3.0
    flow_bw[..., :2, :] = 0.0  # keep the border rows / columns from leaving the image
    flow_bw[..., -2:, :] = 0.0
    flow_bw[..., :, :2] = 0.0
    flow_bw[..., :, -2:] = 0.0
    assert range_map(flow_bw).sum().item() == pytest.approx(HEIGHT * WIDTH, rel=1e-5)


def test_range_map_marks_pixels_leaving_the_image() -> None:
    flow_fw = constant_flow(3.0, 0.0)
    occluded = range_map_occlusion(-flow_fw)
    expected = torch.zeros(1, 1, HEIGHT, WIDTH)
    expected[..., WIDTH - 3 :] = 1.0
    assert torch.equal(occluded, expected)


def test_fb_check_with_perfect_flows_marks_only_pixels_leaving_the_image() -> None:
    flow_fw = constant_flow(3.0, -2.0)
    occluded = forward_backward_occlusion(flow_fw, -flow_fw)
    assert torch.equal(occluded, 1.0 - inside_mask(flow_fw))
    assert occluded[..., 2:, : WIDTH - 3].sum().item() == 0.0  # every pixel landing inside is visible


def test_fb_check_tolerates_small_and_flags_large_inconsistency() -> None:
    flow_fw = constant_flow(3.0, -2.0)
    # |flow_fw + W(flow_bw)|² = 0.3² + 0.3² = 0.18 < 0.01 (13 + 13.4) + 0.5: consistent.
    assert forward_backward_occlusion(flow_fw, -flow_fw + 0.3)[..., 2:, : WIDTH - 3].sum().item() == 0.0
    # A flow_bw of 0 disagrees by |flow_fw|² = 13 > 0.01 · 13 + 0.5 everywhere.
    assert torch.all(forward_backward_occlusion(flow_fw, torch.zeros_like(flow_fw)) == 1.0)


def test_fb_check_finds_the_square_occlusion() -> None:
    flow_fw, flow_bw = square_flows()
    expected1 = torch.zeros(1, 1, HEIGHT, WIDTH)
    expected1[..., TOP : TOP + SIZE, LEFT + SIZE : LEFT + SIZE + SHIFT] = 1.0
    assert torch.equal(occlusion_target(flow_fw, flow_bw, "fb_check"), expected1)


def test_target_without_the_other_direction_is_the_outside_mask() -> None:
    flow_fw = constant_flow(-2.0, 1.0)
    assert torch.equal(occlusion_target(flow_fw, None), 1.0 - inside_mask(flow_fw))


def test_occlusion_loss_value_and_saturation() -> None:
    probability = torch.full((1, 1, 2, 2), 0.25)
    target = torch.tensor([1.0, 0.0, 0.0, 0.0]).view(1, 1, 2, 2)
    expected = (-math.log(0.25) - 3 * math.log(0.75)) / 4 + 0.5 * 0.25
    assert occlusion_loss(probability, target, penalty=0.5).item() == pytest.approx(expected, rel=1e-5)
    saturated_wrong = occlusion_loss(1.0 - target, target, penalty=0.0)
    assert torch.isfinite(saturated_wrong)


def fit_occlusion(target: torch.Tensor, penalty: float, per_pixel: bool, steps: int = 300) -> float:
    """Optimise occlusion logits on ``L_occ`` alone; return the final mean probability."""
    shape = target.shape if per_pixel else (1, 1, 1, 1)
    logits = torch.zeros(shape, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=0.1)
    for _ in range(steps):
        optimizer.zero_grad()
        occlusion_loss(torch.sigmoid(logits).expand_as(target), target, penalty).backward()
        optimizer.step()
    return torch.sigmoid(logits).mean().item()


def twenty_percent_target() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return (torch.rand(1, 1, 16, 16, generator=generator) < 0.2).float()


def test_penalty_keeps_per_pixel_occlusion_far_from_all_occluded() -> None:
    target = twenty_percent_target()
    fraction = target.mean().item()
    with_penalty = fit_occlusion(target, penalty=0.5, per_pixel=True)
    without_penalty = fit_occlusion(target, penalty=0.0, per_pixel=True)
    assert abs(with_penalty - fraction) < 0.1 and with_penalty < 0.4
    assert with_penalty < without_penalty


def test_penalty_lowers_the_optimal_constant_occlusion_to_the_analytic_value() -> None:
    # A constant prediction o (a head that cannot yet localise): BCE is minimised at o = p, the
    # occluded fraction; with the penalty λ, d/do = -p/o + (1 - p)/(1 - o) + λ = 0, i.e.
    # λ o² - (1 + λ) o + p = 0.
    target = twenty_percent_target()
    fraction = target.mean().item()
    penalty = 0.5
    optimum = ((1 + penalty) - math.sqrt((1 + penalty) ** 2 - 4 * penalty * fraction)) / (2 * penalty)
    assert fit_occlusion(target, 0.0, per_pixel=False) == pytest.approx(fraction, abs=0.01)
    assert fit_occlusion(target, penalty, per_pixel=False) == pytest.approx(optimum, abs=0.01)
    assert optimum < fraction - 0.03


def test_invalid_options_are_rejected() -> None:
    flow = constant_flow(1.0, 0.0)
    with pytest.raises(ValueError, match="census"):
        occlusion_target(flow, -flow, method="census")
    with pytest.raises(ValueError, match="-0.1"):
        occlusion_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), penalty=-0.1)
    with pytest.raises(ValueError, match="0"):
        range_map_occlusion(flow, threshold=0.0)


def fit_linear_head(balanced: bool, steps: int = 400) -> tuple[float, float]:
    """Logistic head on one feature: occluded pixels (5 %) at x ~ N(1.5, 1), visible at N(-1.5, 1).

    Returns recall and precision of ``p > 0.5`` on the same pixels.
    """
    generator = torch.Generator().manual_seed(0)
    target = (torch.rand(1, 1, 64, 64, generator=generator) < 0.05).float()
    feature = torch.randn(1, 1, 64, 64, generator=generator) + 3.0 * target - 1.5
    scale = torch.zeros(1, requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.Adam([scale, bias], lr=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        occlusion_loss(torch.sigmoid(scale * feature + bias), target, balanced=balanced).backward()
        optimizer.step()
    predicted = torch.sigmoid(scale * feature + bias) > 0.5
    true_positive = (predicted & target.bool()).sum().item()
    return true_positive / target.sum().item(), true_positive / max(predicted.sum().item(), 1)


def test_balanced_loss_puts_the_decision_boundary_at_one_half() -> None:
    # Two classes 3 sigma apart: the balanced optimum thresholds at the midpoint (recall ~93 %);
    # a plain BCE on 5 % positives moves the boundary towards them and loses recall.
    recall_plain, _ = fit_linear_head(balanced=False)
    recall_balanced, precision_balanced = fit_linear_head(balanced=True)
    assert recall_balanced > 0.85
    assert recall_balanced > recall_plain + 0.1
    assert precision_balanced > 0.3


def test_balanced_constant_optimum_is_one_half_for_any_occluded_fraction() -> None:
    target = torch.zeros(1, 1, 20, 20)
    target[..., :2, :] = 1.0  # 10 % occluded
    logit = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.Adam([logit], lr=0.05)
    for _ in range(300):
        optimizer.zero_grad()
        occlusion_loss(torch.sigmoid(logit).expand_as(target), target, balanced=True).backward()
        optimizer.step()
    assert torch.sigmoid(logit).item() == pytest.approx(0.5, abs=0.02)


def test_zero_weight_pixels_do_not_count() -> None:
    probability = torch.tensor([0.9, 0.1, 0.5, 0.5]).view(1, 1, 2, 2)
    target = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 1, 2, 2)
    weight = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 2, 2)
    expected = -math.log(0.9)
    assert occlusion_loss(probability, target, weight=weight).item() == pytest.approx(expected, rel=1e-5)
