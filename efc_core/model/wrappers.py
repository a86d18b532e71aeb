"""Fixed-signature inference modules for export (docs/DEPLOY.md: "export an inference wrapper, not the
training model with flags").

All three take / return plain tensors in the layout of ``efc_core.contract``: images (N, 3, H, W)
ImageNet-normalised RGB with H, W multiples of ``PAD_MULTIPLE`` (no padding inside, so the traced
graph holds no shape-dependent Python logic); outputs ``seg_logits`` (N, K, H, W) for ``cur``,
``flow`` (N, 2, H, W) in pixels and ``occlusion`` (N, 1, H, W) probability.

Direction (docs/METHOD.md §6): ``FORWARD`` = flow prev -> cur on prev's grid with prev's occlusion;
``BACKWARD`` = flow cur -> prev on cur's grid with cur's occlusion. Only that direction is computed.
"""

from __future__ import annotations

import torch
from torch import nn

from efc_core.contract import FlowDirection, check_padded_size
from efc_core.model.efc_net import EFCNet
from efc_core.model.outputs import EncoderFeatures


def _check_input(name: str, image: torch.Tensor) -> None:
    # Skipped while tracing: the check is a guard for eager callers, not part of the graph.
    if torch.jit.is_tracing():
        return
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"{name} must be (N, 3, H, W), got shape {tuple(image.shape)}")
    height, width = image.shape[-2:]
    check_padded_size(int(height), int(width), name=name)


class _PairDecoding(nn.Module):
    """Shared tail: segmentation of ``cur`` and flow / occlusion in the chosen direction."""

    def __init__(self, model: EFCNet, direction: FlowDirection | str = FlowDirection.FORWARD) -> None:
        super().__init__()
        self.model = model
        self.direction = FlowDirection.parse(direction)

    def _decode(self, prev: EncoderFeatures, cur: EncoderFeatures) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        seg_logits = self.model.segment(cur, None).logits
        if self.direction is FlowDirection.FORWARD:
            flow = self.model.estimate_flow(prev, cur, None)
        else:
            flow = self.model.estimate_flow(cur, prev, None)
        return seg_logits, flow.flow, flow.occlusion


class InferenceWrapper(_PairDecoding):
    """``(prev, cur) -> (seg_logits, flow, occlusion)``: the single-graph export."""

    def forward(self, prev: torch.Tensor, cur: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """prev, cur: (N, 3, H, W). Returns seg_logits (N, K, H, W), flow (N, 2, H, W), occlusion (N, 1, H, W)."""
        _check_input("prev", prev)
        _check_input("cur", cur)
        batch = prev.shape[0]
        # Both frames through the encoder in one batch: one set of kernel launches.
        feats = self.model.encode(torch.cat((prev, cur), dim=0))
        prev_feats = EncoderFeatures(*(f[:batch] for f in feats.as_tuple()))
        cur_feats = EncoderFeatures(*(f[batch:] for f in feats.as_tuple()))
        return self._decode(prev_feats, cur_feats)


class EncoderWrapper(nn.Module):
    """``image -> (feat4, feat8, feat16)``: the per-frame half of the streaming export."""

    def __init__(self, model: EFCNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """image: (N, 3, H, W). Returns features at strides 4, 8, 16 (``contract.ENCODER_FEATURES``)."""
        _check_input("image", image)
        return self.model.encode(image).as_tuple()


class PairDecoderWrapper(_PairDecoding):
    """Encoder features of prev and cur -> ``(seg_logits, flow, occlusion)``: the streaming decoder.

    Equals :class:`InferenceWrapper` on the same images (the encoder runs once per frame instead of
    twice per pair).
    """

    def forward(self, prev_feat4: torch.Tensor, prev_feat8: torch.Tensor, prev_feat16: torch.Tensor,
                cur_feat4: torch.Tensor, cur_feat8: torch.Tensor,
                cur_feat16: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Features as produced by :class:`EncoderWrapper`. Returns the three outputs at 4x feat4's size."""
        prev = EncoderFeatures(prev_feat4, prev_feat8, prev_feat16)
        cur = EncoderFeatures(cur_feat4, cur_feat8, cur_feat16)
        return self._decode(prev, cur)
