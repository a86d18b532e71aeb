"""The EFC loss composer: typed weights and options, one call that returns named terms.

``L = λ_seg L_seg + λ_ph L_ph + λ_sm L_sm + λ_occ L_occ + λ_tc L_tc (+ λ_sup EPE)`` (docs/METHOD.md §3).
A term whose weight is 0 is not computed at all and has no key in the result (UFlow style).

Flow levels, **finest first** (this is the order of ``LossConfig.level_weights``):
level 0 is the network's full-resolution output (``FlowPrediction.flow`` / ``.occlusion``, the
finest block upsampled, as ARFlow replaces its finest pyramid level), level ``k >= 1`` is
``flows[-1 - k]`` / ``occlusions[-1 - k]`` (the finest block itself is represented by level 0).
Levels beyond ``len(level_weights)`` and levels of weight 0 are skipped. Per direction, the
photometric, occlusion and supervised terms are ``Σ_l w_l · term_l``; both directions are summed.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from efc_core.losses.occlusion import OCCLUSION_TARGETS, occlusion_loss, occlusion_target
from efc_core.losses.photometric import PHOTOMETRIC_KINDS, photometric_loss
from efc_core.losses.semantic import error_mask, seg_occlusion, segmentation_loss, temporal_consistency_loss
from efc_core.losses.smoothness import SMOOTHNESS_ORDERS, smoothness_loss
from efc_core.contract import PAD_MULTIPLE
from efc_core.model.outputs import EFCOutput, FlowPrediction
from efc_core.model.warp import resize_flow


@dataclass
class LossWeights:
    """Per-term weights ``λ``; 0 disables a term (it is then not computed).

    Defaults are a starting point [ours]: smoothness 4.0 is UFlow's first-order KITTI weight;
    ``supervised_flow`` only acts when ``LossConfig.supervised_flow`` is True.
    """

    seg: float = 1.0
    photometric: float = 1.0
    smoothness: float = 4.0
    occlusion: float = 0.5
    temporal: float = 1.0
    supervised_flow: float = 1.0

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if value < 0:
                raise ValueError(f"loss weight {item.name} must be >= 0, got {value}")


@dataclass
class LossConfig:
    """Every option of the loss reconstruction (docs/METHOD.md §3); defaults UFlow/ARFlow-like.

    photometric: ``"census"`` | ``"ssim_l1"`` | ``"census+ssim_l1"``; census_size: odd window;
    ssim_weight: SSIM share of ``ssim_l1`` (0.85, Monodepth). smoothness_order 1 | 2 on the
    finest (stride-4) flow block, edge constant ``smoothness_edge_alpha`` for images in [0, 1]
    (150, UFlow). occlusion_target ``"range_map"`` | ``"fb_check"``; range_map_threshold ``τ`` in
    splatted pixels; fb_alpha1/fb_alpha2 (UnFlow). occlusion_penalty ``λ_pen`` (0: the head's
    target is detached, so a penalty only biases it towards "visible"); occlusion_balanced:
    class-balanced BCE (see ``occlusion_loss``). The target is built once at full resolution and
    area-averaged onto the coarser levels (a range map of a 2x4 stride-32 flow says nothing about
    occlusion, and it would splat from the padding). use_seg_mask /
    seg_mask_gamma: ``O_seg`` in the error mask (``γ``). temporal_on ``"probabilities"`` |
    ``"features"``; temporal_flow_gradient: whether ``L_tc`` trains the flow. level_weights:
    finest first (see the module docstring). both_directions: add the backward-direction terms.
    supervised_flow: add an EPE term against flow ground truth (off: ground truth never enters).
    supervised_occlusion: samples with ground-truth occlusion (synthetic data) use it as the
    occlusion target, for the head and for the photometric mask; the others keep the
    self-supervised target. seg_class_weights: one cross-entropy weight per class (None: equal).
    """

    photometric: str = "census"
    census_size: int = 7
    ssim_weight: float = 0.85
    smoothness_order: int = 1
    smoothness_edge_alpha: float = 150.0
    occlusion_target: str = "range_map"
    range_map_threshold: float = 0.5
    fb_alpha1: float = 0.01
    fb_alpha2: float = 0.5
    occlusion_penalty: float = 0.0
    occlusion_balanced: bool = True
    use_seg_mask: bool = True
    seg_mask_gamma: float = 1.0
    temporal_on: str = "probabilities"
    temporal_flow_gradient: bool = False
    level_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    both_directions: bool = True
    supervised_flow: bool = False
    supervised_occlusion: bool = False
    seg_class_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        self.level_weights = tuple(float(w) for w in self.level_weights)
        if self.photometric not in PHOTOMETRIC_KINDS:
            raise ValueError(f"photometric must be one of {PHOTOMETRIC_KINDS}, got {self.photometric!r}")
        if self.census_size < 1 or self.census_size % 2 == 0:
            raise ValueError(f"census_size must be odd and positive, got {self.census_size}")
        if self.smoothness_order not in SMOOTHNESS_ORDERS:
            raise ValueError(f"smoothness_order must be 1 or 2, got {self.smoothness_order}")
        if self.occlusion_target not in OCCLUSION_TARGETS:
            raise ValueError(f"occlusion_target must be one of {OCCLUSION_TARGETS}, got {self.occlusion_target!r}")
        if self.temporal_on not in ("probabilities", "features"):
            raise ValueError(f"temporal_on must be 'probabilities' or 'features', got {self.temporal_on!r}")
        if not 0.0 <= self.seg_mask_gamma <= 1.0:
            raise ValueError(f"seg_mask_gamma must be in [0, 1], got {self.seg_mask_gamma}")
        if not self.level_weights or any(w < 0 for w in self.level_weights):
            raise ValueError(f"level_weights must be non-empty and >= 0, got {self.level_weights}")


@dataclass
class _Direction:
    """One direction with everything its terms need, numbered as the loss functions number it.

    ``prediction`` is the flow image1 -> image2 on image1's grid. For the backward direction the
    composer swaps the pair: its ``image1`` is the batch's ``image2``, so every term is written
    once, for the forward case.
    """

    prediction: FlowPrediction
    other: FlowPrediction | None
    image1: torch.Tensor
    image2: torch.Tensor
    logits1: torch.Tensor
    logits2: torch.Tensor
    features1: torch.Tensor
    features2: torch.Tensor
    flow_gt: torch.Tensor | None
    flow_valid: torch.Tensor | None = None  # (B, 1, H, W) float, None = all valid
    occ_gt: torch.Tensor | None = None      # (B, 1, H, W) float {0, 1}, occlusion of this direction's image1
    occ_known: torch.Tensor | None = None   # (B, 1, 1, 1) float, 1 = occ_gt is ground truth


def _levels(prediction: FlowPrediction) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(flow, occlusion) pairs finest first: full resolution, then the blocks above the finest."""
    coarser = list(zip(prediction.flows[:-1], prediction.occlusions[:-1]))[::-1]
    return [(prediction.flow, prediction.occlusion)] + coarser


class _Grid:
    """Maps full-resolution tensors (H, W) to flow levels and back.

    EFCNet computes its flow blocks and segmentation features on the padded grid (H, W rounded
    up to ``PAD_MULTIPLE``, padding right and bottom), so a level of size (h, w) covers
    (Hp, Wp), not (H, W). A level that does not divide the padded grid is taken to cover (H, W).
    """

    def __init__(self, height: int, width: int) -> None:
        self.size = (height, width)
        self.padded = (-(-height // PAD_MULTIPLE) * PAD_MULTIPLE, -(-width // PAD_MULTIPLE) * PAD_MULTIPLE)

    def _cover(self, size: tuple[int, int]) -> tuple[int, int]:
        (padded_h, padded_w), (h, w) = self.padded, size
        if (h, w) == self.size:
            return self.size
        if padded_h % h == 0 and padded_w % w == 0 and padded_h // h == padded_w // w:
            return self.padded
        return self.size

    def pad(self, x: torch.Tensor, size: tuple[int, int], value: float | None = None) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, *cover(size)); ``value`` None = replicate the border."""
        cover_h, cover_w = self._cover(size)
        extra = (0, cover_w - x.shape[-1], 0, cover_h - x.shape[-2])
        if extra == (0, 0, 0, 0):
            return x
        return F.pad(x, extra, mode="replicate") if value is None else F.pad(x, extra, value=value)

    def down(self, x: torch.Tensor, size: tuple[int, int], value: float | None = None) -> torch.Tensor:
        """(B, C, H, W) full-resolution map -> (B, C, h, w) on the level grid (area average)."""
        if tuple(x.shape[-2:]) == tuple(size):
            return x
        return F.interpolate(self.pad(x, size, value), size=size, mode="area")

    def content(self, size: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
        """(1, 1, h, w): fraction of each level pixel that lies in the image, not the padding."""
        ones = torch.ones(1, 1, *self.size, dtype=like.dtype, device=like.device)
        return self.down(ones, size, value=0.0)

    def up_flow(self, flow: torch.Tensor) -> torch.Tensor:
        """(B, 2, h, w) level flow in level pixels -> (B, 2, H, W) in input pixels."""
        if tuple(flow.shape[-2:]) == self.size:
            return flow
        cover = self._cover(tuple(flow.shape[-2:]))
        return resize_flow(flow, cover)[..., : self.size[0], : self.size[1]]


def _direction_terms(
    direction: _Direction, weights: LossWeights, config: LossConfig
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Flow terms of one direction and its detached diagnostics."""
    terms: dict[str, torch.Tensor] = {}
    diagnostics: dict[str, torch.Tensor] = {}
    prediction = direction.prediction
    levels = _levels(prediction)
    grid = _Grid(*prediction.flow.shape[-2:])

    seg_mask = None
    if weights.photometric > 0 and config.use_seg_mask and config.seg_mask_gamma > 0:
        seg_mask = seg_occlusion(direction.logits1, direction.logits2, prediction.flow)
        diagnostics["seg_mask_fraction"] = seg_mask.mean()

    full_target = None
    if weights.photometric > 0 or weights.occlusion > 0:
        # Built once, at full resolution, then area-averaged onto coarser levels (soft targets).
        full_target = occlusion_target(
            prediction.flow,
            direction.other.flow if direction.other is not None else None,
            config.occlusion_target,
            config.range_map_threshold,
            config.fb_alpha1,
            config.fb_alpha2,
        )
        if config.supervised_occlusion and direction.occ_gt is not None and direction.occ_known is not None:
            known = direction.occ_known
            full_target = known * direction.occ_gt + (1.0 - known) * full_target
        diagnostics["occ_fraction"] = full_target.mean()
        diagnostics["occ_pred_mean"] = prediction.occlusion.detach().float().mean()

    for index, level_weight in enumerate(config.level_weights[: len(levels)]):
        if level_weight == 0:
            continue
        flow, occlusion = levels[index]
        size = tuple(flow.shape[-2:])
        if full_target is not None:
            # Padding counts as visible; its weight is 0 below in any case.
            target = grid.down(full_target, size, value=0.0)
            content = grid.content(size, flow)
        if weights.photometric > 0:
            level_seg_mask = grid.down(seg_mask, size, value=0.0) if seg_mask is not None else None
            unreliable = error_mask(target, level_seg_mask, config.seg_mask_gamma)
            value = photometric_loss(
                grid.down(direction.image1, size),
                grid.down(direction.image2, size),
                flow,
                (1.0 - unreliable) * content,
                config.photometric,
                config.census_size,
                config.ssim_weight,
            )
            terms["photometric"] = terms.get("photometric", 0.0) + level_weight * value
        if weights.occlusion > 0:
            value = occlusion_loss(occlusion, target, config.occlusion_penalty, config.occlusion_balanced,
                                   weight=(content > 0.5).to(content.dtype))
            terms["occlusion"] = terms.get("occlusion", 0.0) + level_weight * value
        if weights.supervised_flow > 0 and config.supervised_flow:
            # Compare at full resolution so the ground truth is never interpolated.
            epe = torch.linalg.vector_norm(grid.up_flow(flow) - direction.flow_gt, dim=1)
            valid = direction.flow_valid
            value = epe.mean() if valid is None else (epe * valid[:, 0]).sum() / (valid.sum() + 1e-6)
            terms["supervised_flow"] = terms.get("supervised_flow", 0.0) + level_weight * value

    if weights.smoothness > 0:
        # docs/METHOD.md: on the stride-4 flow, i.e. the finest block in its own pixels.
        finest = prediction.flows[-1] if prediction.flows else prediction.flow
        image = grid.down(direction.image1, tuple(finest.shape[-2:]))
        terms["smoothness"] = smoothness_loss(finest, image, config.smoothness_order, config.smoothness_edge_alpha)

    if weights.temporal > 0:
        if config.temporal_on == "probabilities":
            maps1 = torch.softmax(direction.logits1.float(), dim=1)
            maps2 = torch.softmax(direction.logits2.float(), dim=1)
        else:
            maps1, maps2 = direction.features1, direction.features2
        # Features live on the padded grid: pad the flow with zeros and the occlusion with ones
        # (the padding is never "visible") before they are resized to the feature size.
        map_size = tuple(maps1.shape[-2:])
        terms["temporal"] = temporal_consistency_loss(
            maps1,
            maps2,
            grid.pad(prediction.flow, map_size, value=0.0),
            grid.pad(prediction.occlusion, map_size, value=1.0),
            config.temporal_flow_gradient,
        )
    return terms, diagnostics


def compute_losses(
    output: EFCOutput,
    image1: torch.Tensor,
    image2: torch.Tensor,
    label1: torch.Tensor,
    label2: torch.Tensor,
    weights: LossWeights,
    config: LossConfig,
    flow_gt_fw: torch.Tensor | None = None,
    flow_gt_bw: torch.Tensor | None = None,
    flow_valid: torch.Tensor | None = None,
    flow_valid_bw: torch.Tensor | None = None,
    occ_gt_fw: torch.Tensor | None = None,
    occ_gt_bw: torch.Tensor | None = None,
    occ_known: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """All EFC losses of one batch of pairs.

    Args:
        output: the network's :class:`EFCOutput` for ``(image1, image2)``.
        image1, image2: (B, 3, H, W) RGB in [0, 1] (not normalised).
        label1, label2: (B, H, W) int64 class ids, 255 = ignored / frame without labels.
        weights, config: see :class:`LossWeights`, :class:`LossConfig`.
        flow_gt_fw, flow_gt_bw: (B, 2, H, W) ground-truth flow in pixels; used only when
            ``config.supervised_flow`` (then ``flow_gt_fw`` is required).
        flow_valid: (B, H, W) bool, pixels of frame 1 where ``flow_gt_fw`` is valid (``None`` = all).
        flow_valid_bw: (B, H, W) bool, pixels of frame 2 where ``flow_gt_bw`` is valid (``None`` =
            all): forward-only ground truth (KITTI, Sintel) and the DIS teacher's inconsistent
            pixels are invalid here, so the backward flow is never pulled towards a placeholder.
        occ_gt_fw, occ_gt_bw: (B, H, W) bool ground-truth occlusion of frame 1 (resp. 2); used only
            when ``config.supervised_occlusion``.
        occ_known: (B,) bool, samples whose ``occ_gt_*`` is ground truth (``None`` = all).

    Returns:
        named unweighted terms among ``seg``, ``photometric``, ``smoothness``, ``occlusion``,
        ``temporal``, ``supervised_flow`` (only those with a non-zero weight), ``total`` (the
        weighted sum, carries gradients), and detached diagnostics ``occ_fraction`` (occlusion
        target), ``occ_pred_mean`` (predicted occlusion), ``seg_mask_fraction`` (``O_seg``), each
        averaged over directions.
    """
    if image1.shape != image2.shape or image1.dim() != 4 or image1.shape[1] != 3:
        raise ValueError(f"images must both be (B, 3, H, W), got {tuple(image1.shape)} and {tuple(image2.shape)}")
    if config.supervised_flow and weights.supervised_flow > 0 and flow_gt_fw is None:
        raise ValueError("config.supervised_flow is True but flow_gt_fw is None")
    occ_maps: list[torch.Tensor | None] = [None, None]
    known = None
    if config.supervised_occlusion and occ_gt_fw is not None:
        if occ_gt_bw is None:
            raise ValueError("supervised_occlusion needs both occ_gt_fw and occ_gt_bw")
        occ_maps = [m.unsqueeze(1).to(image1.dtype) for m in (occ_gt_fw, occ_gt_bw)]
        known = (torch.ones(image1.shape[0], device=image1.device) if occ_known is None
                 else occ_known.to(image1.dtype)).view(-1, 1, 1, 1)
    terms: dict[str, torch.Tensor] = {}
    if weights.seg > 0:
        class_weights = None if config.seg_class_weights is None else torch.tensor(config.seg_class_weights)
        terms["seg"] = segmentation_loss([output.seg_logits1, output.seg_logits2], [label1, label2], class_weights)

    directions: list[_Direction] = []
    wants_flow = any(w > 0 for w in (weights.photometric, weights.smoothness, weights.occlusion, weights.temporal))
    wants_flow = wants_flow or (config.supervised_flow and weights.supervised_flow > 0)
    if wants_flow:
        if output.forward is None:
            raise ValueError("flow terms have non-zero weights but output.forward is None")
        directions.append(
            _Direction(output.forward, output.backward, image1, image2, output.seg_logits1, output.seg_logits2,
                       output.seg_features1, output.seg_features2, flow_gt_fw,
                       flow_valid.unsqueeze(1).float() if flow_valid is not None else None,
                       occ_maps[0], known)
        )
        if config.both_directions and output.backward is not None:
            supervised_backward = config.supervised_flow and weights.supervised_flow > 0
            if supervised_backward and flow_gt_bw is None:
                raise ValueError("both_directions with supervised_flow needs flow_gt_bw")
            directions.append(
                _Direction(output.backward, output.forward, image2, image1, output.seg_logits2, output.seg_logits1,
                           output.seg_features2, output.seg_features1, flow_gt_bw,
                           flow_valid_bw.unsqueeze(1).float() if flow_valid_bw is not None else None,
                           occ_maps[1], known)
            )

    diagnostics: dict[str, list[torch.Tensor]] = {}
    for direction in directions:
        direction_terms, direction_diagnostics = _direction_terms(direction, weights, config)
        for name, value in direction_terms.items():
            terms[name] = terms[name] + value if name in terms else value
        for name, value in direction_diagnostics.items():
            diagnostics.setdefault(name, []).append(value.detach())

    total = image1.new_zeros((), dtype=torch.float32)
    for name, value in terms.items():
        total = total + getattr(weights, name) * value
    result = dict(terms)
    result["total"] = total
    for name, values in diagnostics.items():
        result[name] = torch.stack(values).mean()
    return result
