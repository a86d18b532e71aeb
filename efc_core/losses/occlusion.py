"""Occlusion targets and the occlusion loss ``L_occ`` (docs/METHOD.md §3).

Targets (stop-gradient, 1 = occluded: the pixel of frame 1 has no correspondence in frame 2):

- range map (OAFlow, Wang et al. 2018): splat a unit mass from every pixel of frame 2 along
  ``flow_bw`` onto frame 1's grid with bilinear weights; pixels of frame 1 that receive less than
  ``τ`` are not seen from frame 2. Works with the flow of an untrained network, so training warms
  up with it.
- forward-backward check (UnFlow, Meister et al. 2018): ``|flow_fw + W(flow_bw, flow_fw)|² >
  α1 (|flow_fw|² + |W(flow_bw, flow_fw)|²) + α2``. Collapses at initialisation (random flows disagree
  everywhere), hence a stage-2 option.

Both also mark pixels whose flow leaves the image.
"""

from __future__ import annotations

import torch

from efc_core.model.warp import backward_warp, inside_mask, pixel_grid

OCCLUSION_TARGETS = ("range_map", "fb_check")
# Probabilities are clamped before the logarithm so a saturated head gives a finite loss.
_PROBABILITY_EPS = 1e-6


@torch.no_grad()
def range_map(flow_bw: torch.Tensor) -> torch.Tensor:
    """How much of frame 2 lands on each pixel of frame 1 when splatted along ``flow_bw``.

    Args:
        flow_bw: (B, 2, H, W) flow 2 -> 1 on frame 2's grid, pixels.

    Returns:
        (B, 1, H, W) non-negative mass on frame 1's grid (1 for a pixel hit once exactly, 0 for a
        pixel no frame-2 pixel maps to). Mass landing outside the image is dropped.
    """
    batch, _, height, width = flow_bw.shape
    target = pixel_grid(height, width, flow_bw) + flow_bw
    x = target[:, 0].reshape(batch, -1)
    y = target[:, 1].reshape(batch, -1)
    x0 = torch.floor(x)
    y0 = torch.floor(y)
    mass = torch.zeros(batch, height * width, dtype=flow_bw.dtype, device=flow_bw.device)
    # Bilinear splatting: each source pixel gives (1-fx)(1-fy), fx(1-fy), ... to its 4 neighbours.
    for dx in (0, 1):
        for dy in (0, 1):
            corner_x = x0 + dx
            corner_y = y0 + dy
            weight = (1 - (x - corner_x).abs()) * (1 - (y - corner_y).abs())
            inside = (corner_x >= 0) & (corner_x <= width - 1) & (corner_y >= 0) & (corner_y <= height - 1)
            index = (corner_y.clamp(0, height - 1) * width + corner_x.clamp(0, width - 1)).long()
            mass.scatter_add_(1, index, torch.where(inside, weight, torch.zeros_like(weight)))
    return mass.view(batch, 1, height, width)


@torch.no_grad()
def range_map_occlusion(flow_bw: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Occlusion target of frame 1 from the range map, ``Ô1 = 1[R1 < τ]``.

    Args:
        flow_bw: (B, 2, H, W) flow 2 -> 1 on frame 2's grid, pixels.
        threshold: ``τ`` > 0, in splatted pixels (0.5: at least half a pixel of frame 2 maps here).

    Returns:
        (B, 1, H, W) float {0, 1}, detached, on frame 1's grid.
    """
    if threshold <= 0:
        raise ValueError(f"range map threshold must be > 0, got {threshold}")
    return (range_map(flow_bw) < threshold).to(flow_bw.dtype)


@torch.no_grad()
def forward_backward_occlusion(
    flow_fw: torch.Tensor, flow_bw: torch.Tensor, alpha1: float = 0.01, alpha2: float = 0.5
) -> torch.Tensor:
    """Occlusion target of frame 1 from the forward-backward consistency check.

    Args:
        flow_fw: (B, 2, H, W) flow 1 -> 2 on frame 1's grid, pixels.
        flow_bw: (B, 2, H, W) flow 2 -> 1 on frame 2's grid, pixels.
        alpha1: relative tolerance (dimensionless), alpha2: absolute tolerance in pixels².

    Returns:
        (B, 1, H, W) float {0, 1}, detached: inconsistent pixels and pixels whose flow leaves
        the image.
    """
    if alpha1 < 0 or alpha2 < 0:
        raise ValueError(f"fb check tolerances must be >= 0, got alpha1={alpha1}, alpha2={alpha2}")
    # Border padding: a pixel leaving the image is handled by the inside mask, not by comparing
    # against zeros that grid_sample would invent.
    flow_bw_warped = backward_warp(flow_bw, flow_fw, padding_mode="border")
    squared_error = (flow_fw + flow_bw_warped).square().sum(dim=1, keepdim=True)
    bound = alpha1 * (flow_fw.square().sum(dim=1, keepdim=True) + flow_bw_warped.square().sum(dim=1, keepdim=True))
    inconsistent = squared_error > bound + alpha2
    leaving = inside_mask(flow_fw) < 0.5
    return (inconsistent | leaving).to(flow_fw.dtype)


def occlusion_target(
    flow_fw: torch.Tensor,
    flow_bw: torch.Tensor | None,
    method: str = "range_map",
    range_map_threshold: float = 0.5,
    fb_alpha1: float = 0.01,
    fb_alpha2: float = 0.5,
) -> torch.Tensor:
    """Occlusion target ``Ô1`` of frame 1 by the configured method.

    Args:
        flow_fw: (B, 2, H, W) flow 1 -> 2, pixels of this resolution.
        flow_bw: (B, 2, H, W) flow 2 -> 1 at the same resolution, or ``None`` when the other
            direction was not computed: then only pixels leaving the image are marked.
        method: ``"range_map"`` or ``"fb_check"``.

    Returns:
        (B, 1, H, W) float {0, 1}, detached.
    """
    if method not in OCCLUSION_TARGETS:
        raise ValueError(f"occlusion target must be one of {OCCLUSION_TARGETS}, got {method!r}")
    flow_fw = flow_fw.detach()
    if flow_bw is None:
        return 1.0 - inside_mask(flow_fw)
    flow_bw = flow_bw.detach()
    if flow_bw.shape != flow_fw.shape:
        raise ValueError(f"flow_bw shape {tuple(flow_bw.shape)} != flow_fw shape {tuple(flow_fw.shape)}")
    if method == "range_map":
        return range_map_occlusion(flow_bw, range_map_threshold)
    return forward_backward_occlusion(flow_fw, flow_bw, fb_alpha1, fb_alpha2)


def occlusion_loss(
    probability: torch.Tensor,
    target: torch.Tensor,
    penalty: float = 0.0,
    balanced: bool = False,
    weight: torch.Tensor | None = None,
    max_positive_weight: float = 10.0,
) -> torch.Tensor:
    """``L_occ = BCE(O1, Ô1) + λ_pen · mean(O1)``, optionally class-balanced.

    Occluded pixels are rare (2-10 % of a pair), so a plain BCE is minimised by a head that stays
    well below 0.5 everywhere: it ranks occluded pixels higher but never crosses the export
    threshold (measured on the old demo model: mean probability 0.11 on occluded pixels, 0.02
    elsewhere). ``balanced`` weighs each class by half its inverse frequency in the batch, so the
    decision boundary of the trained head sits at 0.5, where the runtime thresholds it.

    Args:
        probability: (B, 1, H, W) predicted occlusion probability ``O1`` in [0, 1].
        target: (B, 1, H, W) target ``Ô1`` in [0, 1] (detached here in any case; soft targets,
            e.g. the occluded fraction of a coarse cell, are allowed).
        penalty: ``λ_pen`` >= 0, a pull of every pixel towards "visible".
        balanced: weigh occluded and visible pixels equally (see above).
        weight: (B, 1, H, W) or broadcastable per-pixel weights in [0, 1] (e.g. pixels where the
            target is defined); ``None`` = all ones.
        max_positive_weight: cap on the balancing factor of the occluded class, so a batch with a
            handful of occluded pixels does not dominate the gradient.

    Returns:
        scalar: weighted mean binary cross-entropy (nats) plus the penalty term.
    """
    if penalty < 0:
        raise ValueError(f"occlusion penalty must be >= 0, got {penalty}")
    if max_positive_weight < 1:
        raise ValueError(f"max_positive_weight must be >= 1, got {max_positive_weight}")
    if probability.shape != target.shape:
        raise ValueError(f"occlusion shape {tuple(probability.shape)} != target shape {tuple(target.shape)}")
    # Written out (not F.binary_cross_entropy) so it also runs under autocast, in float32.
    prob = probability.float().clamp(_PROBABILITY_EPS, 1 - _PROBABILITY_EPS)
    target = target.detach().float()
    pixel_weight = torch.ones_like(prob) if weight is None else weight.detach().float().expand_as(prob)
    positive = target
    negative = 1.0 - target
    if balanced:
        total = pixel_weight.sum().clamp_min(1.0)
        positive_share = ((pixel_weight * target).sum() / total).clamp(1e-6, 1 - 1e-6)
        positive_factor = (0.5 / positive_share).clamp(max=max_positive_weight)
        negative_factor = 0.5 / (1.0 - positive_share)
        positive = positive * positive_factor
        negative = negative * negative_factor
    bce = -(positive * torch.log(prob) + negative * torch.log1p(-prob))
    value = (pixel_weight * bce).sum() / pixel_weight.sum().clamp_min(1.0)
    return value + penalty * probability.float().mean()
