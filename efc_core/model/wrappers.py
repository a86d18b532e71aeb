"""Fixed-signature inference modules for export (docs/DEPLOY.md: "export an inference wrapper, not the
training model with flags").

All three take / return plain tensors in the layout of ``efc_core.contract``: images (N, 3, H, W)
ImageNet-normalised RGB with H, W multiples of ``PAD_MULTIPLE`` (no padding inside, so the traced
graph holds no shape-dependent Python logic); outputs ``seg_logits`` (N, K, H, W) for ``image2``,
``flow`` (N, 2, H, W) in pixels and ``occlusion`` (N, 1, H, W) probability.

The exported graphs name their inputs after the stream (``contract.INPUT_PREV`` = ``prev`` for
``image1``, the previous frame; ``INPUT_CUR`` = ``cur`` for ``image2``, the current one); the
exporter sets those names, the arguments here follow the glossary.

Direction (docs/METHOD.md §6): ``FORWARD`` = ``flow_fw`` (image1 -> image2 on image1's grid) with
``occ_fw``; ``BACKWARD`` = ``flow_bw`` (image2 -> image1 on image2's grid) with ``occ_bw``. Only
that direction is computed.
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
    """Shared tail: segmentation of ``image2`` and flow / occlusion in the chosen direction."""

    def __init__(self, model: EFCNet, direction: FlowDirection | str = FlowDirection.FORWARD) -> None:
        super().__init__()
        self.model = model
        self.direction = FlowDirection.parse(direction)

    def _decode(self, features1: EncoderFeatures,
                features2: EncoderFeatures) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        seg_logits = self.model.segment(features2, None).logits
        if self.direction is FlowDirection.FORWARD:
            flow = self.model.estimate_flow(features1, features2, None)
        else:
            flow = self.model.estimate_flow(features2, features1, None)
        return seg_logits, flow.flow, flow.occlusion


class InferenceWrapper(_PairDecoding):
    """``(image1, image2) -> (seg_logits, flow, occlusion)``: the single-graph export (inputs ``prev``, ``cur``)."""

    def forward(self, image1: torch.Tensor, image2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """image1, image2: (N, 3, H, W). Returns seg_logits (N, K, H, W), flow (N, 2, H, W), occlusion (N, 1, H, W)."""
        # Errors name the graph inputs (contract.INPUT_PREV / INPUT_CUR), as the exported model would.
        _check_input("prev", image1)
        _check_input("cur", image2)
        batch = image1.shape[0]
        # Both frames through the encoder in one batch: one set of kernel launches.
        feats = self.model.encode(torch.cat((image1, image2), dim=0))
        features1 = EncoderFeatures(*(f[:batch] for f in feats.as_tuple()))
        features2 = EncoderFeatures(*(f[batch:] for f in feats.as_tuple()))
        return self._decode(features1, features2)


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
    """Encoder features of image1 and image2 -> ``(seg_logits, flow, occlusion)``: the streaming decoder.

    Equals :class:`InferenceWrapper` on the same images (the encoder runs once per frame instead of
    twice per pair). The exported graph names the inputs ``prev_feat4`` ... ``cur_feat16``
    (``contract.decoder_input_name``).
    """

    def forward(self, image1_feat4: torch.Tensor, image1_feat8: torch.Tensor, image1_feat16: torch.Tensor,
                image2_feat4: torch.Tensor, image2_feat8: torch.Tensor,
                image2_feat16: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Features as produced by :class:`EncoderWrapper`. Returns the three outputs at 4x feat4's size."""
        features1 = EncoderFeatures(image1_feat4, image1_feat8, image1_feat16)
        features2 = EncoderFeatures(image2_feat4, image2_feat8, image2_feat16)
        return self._decode(features1, features2)
