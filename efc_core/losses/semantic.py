"""Segmentation terms: ``L_seg``, the semantic inconsistency ``O_seg``, the error mask ``E1`` and
the temporal consistency loss ``L_tc`` (docs/METHOD.md §3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from efc_core.model.warp import backward_warp, inside_mask, resize_flow

IGNORE_INDEX = 255


def segmentation_loss(logits: list[torch.Tensor], labels: list[torch.Tensor],
                      class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy pooled over every labelled pixel of the given frames.

    Args:
        logits: per frame (B, K, H, W) class logits.
        labels: per frame (B, H, W) int64 class ids, ``255`` = ignored (a frame without labels is
            all 255 and contributes nothing).
        class_weights: (K,) weight of each class (e.g. ENet's ``1 / ln(1.02 + frequency)``, so rare
            classes such as poles and signs are not drowned by road and sky), or None for 1 each.

    Returns:
        scalar: weighted mean cross-entropy (nats) over labelled pixels (the weights of the labelled
        pixels normalise it); exactly 0, still attached to the graph, when no pixel is labelled (not NaN).
    """
    if len(logits) != len(labels):
        raise ValueError(f"{len(logits)} logits tensors but {len(labels)} label tensors")
    if class_weights is not None and class_weights.shape != (logits[0].shape[1],):
        raise ValueError(f"class_weights must have shape ({logits[0].shape[1]},), got {tuple(class_weights.shape)}")
    total = logits[0].new_zeros((), dtype=torch.float32)
    # The count stays a tensor: no device sync in the training loop.
    count = torch.zeros((), dtype=torch.float32, device=logits[0].device)
    weights = None if class_weights is None else class_weights.to(device=logits[0].device, dtype=torch.float32)
    for frame_logits, frame_labels in zip(logits, labels):
        if frame_logits.shape[-2:] != frame_labels.shape[-2:]:
            raise ValueError(f"logits size {tuple(frame_logits.shape[-2:])} != labels size "
                             f"{tuple(frame_labels.shape[-2:])}")
        total = total + F.cross_entropy(frame_logits.float(), frame_labels.long(), weight=weights,
                                        ignore_index=IGNORE_INDEX, reduction="sum")
        labelled = frame_labels != IGNORE_INDEX
        if weights is None:
            count = count + labelled.sum()
        else:
            count = count + weights[frame_labels[labelled].long()].sum()
    return total / count.clamp(min=1e-6)


@torch.no_grad()
def seg_occlusion(logits1: torch.Tensor, logits2: torch.Tensor, flow_fw: torch.Tensor) -> torch.Tensor:
    """``O_seg = 1[argmax P1 ≠ argmax W(softmax P2, flow_fw)]``, stop-gradient.

    Args:
        logits1, logits2: (B, K, H, W) class logits of frames 1 and 2.
        flow_fw: (B, 2, H, W) flow 1 -> 2 in pixels of this resolution.

    Returns:
        (B, 1, H, W) float {0, 1} on frame 1's grid. Pixels whose flow leaves the image are 0:
        there is no label to disagree with (the occlusion target covers them).
    """
    if logits1.shape != logits2.shape:
        raise ValueError(f"logits1 shape {tuple(logits1.shape)} != logits2 shape {tuple(logits2.shape)}")
    # Warp probabilities, not labels or logits: bilinear mixing of probabilities is meaningful.
    warped_prob2 = backward_warp(torch.softmax(logits2.float(), dim=1), flow_fw.float())
    disagree = logits1.argmax(dim=1, keepdim=True) != warped_prob2.argmax(dim=1, keepdim=True)
    return disagree.to(flow_fw.dtype) * inside_mask(flow_fw)


def error_mask(occlusion_target: torch.Tensor, seg_mask: torch.Tensor | None, gamma: float = 1.0) -> torch.Tensor:
    """Soft union ``E1 = 1 − (1 − Ô1)(1 − γ·O_seg)`` of unreliable photometric pixels.

    Args:
        occlusion_target: (B, 1, H, W) ``Ô1`` in [0, 1].
        seg_mask: (B, 1, H, W) ``O_seg`` in [0, 1], or ``None`` (= no semantic term).
        gamma: in [0, 1]; 0 disables the semantic term.

    Returns:
        (B, 1, H, W) in [0, 1], detached.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"seg mask gamma must be in [0, 1], got {gamma}")
    reliable = 1.0 - occlusion_target.detach()
    if seg_mask is not None and gamma > 0:
        reliable = reliable * (1.0 - gamma * seg_mask.detach())
    return 1.0 - reliable


def temporal_consistency_loss(
    maps1: torch.Tensor,
    maps2: torch.Tensor,
    flow_fw: torch.Tensor,
    occ_fw: torch.Tensor,
    flow_gradient: bool = False,
    eps: float = 1e-6,
) -> torch.Tensor:
    """``L_tc = Σ (1 − O1)·‖S1 − W(S2, flow_fw)‖₁ / Σ (1 − O1)``.

    Args:
        maps1, maps2: (B, C, h, w) segmentation probabilities or features of frames 1 and 2.
        flow_fw: (B, 2, H, W) flow 1 -> 2 in pixels of its grid; resized (vectors rescaled) to
            (h, w) when the sizes differ.
        occ_fw: (B, 1, H', W') occlusion probability of frame 1, any size (area-resized);
            always detached here.
        flow_gradient: whether the flow receives this loss's gradient (docs/METHOD.md: a flag).

    Returns:
        scalar: weighted mean over visible pixels of the L1 norm over channels (units of ``maps``).
        Pixels whose flow leaves the image are excluded too.
    """
    if maps1.shape != maps2.shape:
        raise ValueError(f"maps1 shape {tuple(maps1.shape)} != maps2 shape {tuple(maps2.shape)}")
    size = maps1.shape[-2:]
    if not flow_gradient:
        flow_fw = flow_fw.detach()
    if flow_fw.shape[-2:] != size:
        flow_fw = resize_flow(flow_fw, tuple(size))
    visible = 1.0 - occ_fw.detach()
    if visible.shape[-2:] != size:
        visible = F.interpolate(visible, size=size, mode="area")
    visible = visible * inside_mask(flow_fw.detach())
    difference = (maps1 - backward_warp(maps2, flow_fw.to(maps2.dtype))).abs().sum(dim=1, keepdim=True)
    return (visible * difference).sum() / (visible.sum() + eps)
