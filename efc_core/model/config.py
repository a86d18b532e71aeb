"""Every hyperparameter of the EFC network, and the three presets (docs/METHOD.md §2).

A checkpoint stores ``dataclasses.asdict(config)``; :meth:`ModelConfig.from_dict` rebuilds it, so
a model can always be recreated from its checkpoint alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from efc_core.contract import PAD_MODES, PAD_MULTIPLE

#: Backbones the encoder understands. ``resnet10`` is torchvision's ``ResNet(BasicBlock,
#: [1, 1, 1, 1])``: it has no published ImageNet weights and exists for the tiny preset.
BACKBONES: tuple[str, ...] = ("resnet10", "resnet18", "resnet34", "resnet50", "resnet101")
CONTEXT_MODULES: tuple[str, ...] = ("aspp", "psp")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one EFC network. Sizes are channels unless named otherwise.

    Segmentation branch: ``layer4`` (at ``segmentation_stride`` 16 = dilated, or 32) -> ASPP / PSP
    context module (``seg_head_channels``) -> fusion with ``layer2`` at stride 8 giving
    ``seg_decoder_channels`` features (``EFCOutput.seg_features``) -> optional fusion with
    ``layer1`` at stride 4 -> 1x1 classifier -> bilinear upsampling to the input size.

    Flow branch (PWC-Net style): one pyramid level per entry of ``flow_strides`` (coarsest first,
    consecutive powers of two ending at 4); strides above 16 come from extra stride-2 conv stages
    on ``layer3``. Each level: features projected to ``flow_feature_channels``, cost volume of
    radius ``max_displacement``, estimator convs ``estimator_channels`` -> flow residual, and an
    occlusion head (two convs + sigmoid). A dilated context network refines the stride-4 flow.
    """

    preset: str = "custom"
    backbone: str = "resnet18"
    num_classes: int = 19
    # --- segmentation branch ---
    segmentation_stride: int = 32
    #: None: the backbone's own layer4; an int: one light BasicBlock of that width instead.
    layer4_channels: int | None = None
    context_module: str = "aspp"
    seg_head_channels: int = 128
    aspp_rates: tuple[int, ...] = (2, 4, 6)
    psp_bins: tuple[int, ...] = (1, 2, 4)
    seg_decoder_channels: int = 64
    fuse_stride4: bool = True
    stride4_reduce_channels: int = 32
    aux_head: bool = False
    seg_dropout: float = 0.1
    # --- flow branch ---
    flow_strides: tuple[int, ...] = (64, 32, 16, 8, 4)
    extra_stage_channels: int = 96
    flow_feature_channels: int = 48
    max_displacement: int = 4
    #: Standardise features before the cost volume. Spelt the American way because the name is a
    #: key of every stored checkpoint's ``model_config`` (renaming it would orphan them).
    normalize_correlation: bool = True
    estimator_channels: tuple[int, ...] = (96, 64, 48, 32)
    shared_estimator: bool = False
    occlusion_hidden_channels: int = 16
    #: The occlusion heads read the estimator features detached: the occlusion loss trains the
    #: heads only, so its noisy self-supervised target (range map, forward-backward check) and
    #: its class balancing cannot pull the flow estimator away from matching. Inference is
    #: unchanged (exports are identical).
    occlusion_head_detached: bool = False
    context_channels: tuple[int, ...] = (64, 64, 48, 32)
    context_dilations: tuple[int, ...] = (1, 2, 4, 8)
    # --- input handling ---
    pad_mode: str = "replicate"

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; expected one of {BACKBONES}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if self.segmentation_stride not in (16, 32):
            raise ValueError(f"segmentation_stride must be 16 or 32, got {self.segmentation_stride}")
        if self.context_module not in CONTEXT_MODULES:
            raise ValueError(f"unknown context_module {self.context_module!r}; expected {CONTEXT_MODULES}")
        if self.pad_mode not in PAD_MODES:
            raise ValueError(f"unknown pad_mode {self.pad_mode!r}; expected one of {PAD_MODES}")
        strides = tuple(self.flow_strides)
        expected = tuple(strides[0] // 2**i for i in range(len(strides)))
        if not strides or strides[-1] != 4 or strides != expected or strides[0] > PAD_MULTIPLE:
            # The decoder upsamples x2 between consecutive levels and the context network
            # refines stride 4, so the pyramid must halve down to exactly 4.
            raise ValueError(
                f"flow_strides must halve from at most {PAD_MULTIPLE} down to 4, got {self.flow_strides}"
            )
        if not 1 <= self.max_displacement <= 8:
            raise ValueError(f"max_displacement must be in 1..8, got {self.max_displacement}")
        if not self.estimator_channels or not self.context_channels:
            raise ValueError("estimator_channels and context_channels must not be empty")
        if len(self.context_channels) != len(self.context_dilations):
            raise ValueError(
                f"context_channels {self.context_channels} and context_dilations "
                f"{self.context_dilations} must have the same length"
            )

    @property
    def num_extra_stages(self) -> int:
        """Number of extra stride-2 stages above layer3 (strides 32, 64) the flow branch needs."""
        return sum(1 for stride in self.flow_strides if stride > 16)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON / ``torch.load(weights_only=True)`` safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        """Inverse of :meth:`to_dict`; lists become tuples; unknown keys raise ``ValueError``."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s): {unknown}")
        converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**converted)

    def replace(self, **overrides: Any) -> "ModelConfig":
        """Copy with ``overrides``; an unknown field raises ``ValueError`` naming it."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown model option(s) {unknown}; known: {sorted(known)}")
        return dataclasses.replace(self, **overrides)


PRESETS: dict[str, ModelConfig] = {
    # Fast on a 2-core CPU: CI training, tests, the CPU demo.
    "tiny": ModelConfig(
        preset="tiny",
        backbone="resnet10",
        segmentation_stride=32,
        layer4_channels=128,
        seg_head_channels=64,
        aspp_rates=(1, 2),
        seg_decoder_channels=32,
        stride4_reduce_channels=16,
        flow_strides=(32, 16, 8, 4),
        extra_stage_channels=64,
        flow_feature_channels=32,
        estimator_channels=(64, 48, 32),
        occlusion_hidden_channels=16,
        context_channels=(32, 32, 32),
        context_dilations=(1, 2, 4),
    ),
    # ResNet-18 class, the design point for TensorRT FP16 on a Jetson Orin at 1024x512.
    "realtime": ModelConfig(preset="realtime", backbone="resnet18"),
    # Paper-scale: ResNet-101, dilated layer4 so the segmentation branch stays at stride 16.
    "paper": ModelConfig(
        preset="paper",
        backbone="resnet101",
        segmentation_stride=16,
        seg_head_channels=256,
        aspp_rates=(6, 12, 18),
        seg_decoder_channels=128,
        stride4_reduce_channels=48,
        extra_stage_channels=128,
        flow_feature_channels=64,
        estimator_channels=(128, 128, 96, 64, 32),
        context_channels=(128, 128, 96, 64, 32),
        context_dilations=(1, 2, 4, 8, 16),
        aux_head=True,
    ),
}


def preset_config(preset: str, num_classes: int, **overrides: Any) -> ModelConfig:
    """The preset's config with ``num_classes`` and ``overrides``; ``ValueError`` naming an unknown one."""
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[preset].replace(num_classes=num_classes, **overrides)
