"""Shared encoder: torchvision ResNet ``conv1 ... layer3`` (docs/METHOD.md §2, [paper] "ResNet layers 1-3").

The backbone is built once by torchvision; its ``layer4`` is handed to the segmentation branch
(it belongs to that branch only), everything up to ``layer3`` is the shared encoder.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models
from torchvision.models.resnet import BasicBlock, ResNet

from efc_core.model.config import ModelConfig
from efc_core.model.outputs import EncoderFeatures

_BUILDERS = {
    "resnet18": (models.resnet18, models.ResNet18_Weights),
    "resnet34": (models.resnet34, models.ResNet34_Weights),
    "resnet50": (models.resnet50, models.ResNet50_Weights),
    "resnet101": (models.resnet101, models.ResNet101_Weights),
}


class ResNetEncoder(nn.Module):
    """ResNet stem + ``layer1..layer3``.

    Input: (B, 3, H, W) ImageNet-normalised RGB (``contract.IMAGENET_MEAN`` / ``IMAGENET_STD`` on
    [0, 1] values), H and W multiples of 16 (the model pads to ``contract.PAD_MULTIPLE``).
    Output: :class:`EncoderFeatures` at strides 4, 8, 16 with ``channels`` channels.
    """

    def __init__(self, backbone: ResNet) -> None:
        super().__init__()
        self.stem = nn.Sequential(backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool)
        self.layer1 = backbone.layer1
        self.layer2 = backbone.layer2
        self.layer3 = backbone.layer3
        self.channels: tuple[int, int, int] = (
            _out_channels(self.layer1),
            _out_channels(self.layer2),
            _out_channels(self.layer3),
        )

    def forward(self, image: torch.Tensor) -> EncoderFeatures:
        feat4 = self.layer1(self.stem(image))
        feat8 = self.layer2(feat4)
        feat16 = self.layer3(feat8)
        return EncoderFeatures(feat4=feat4, feat8=feat8, feat16=feat16)


def _out_channels(layer: nn.Sequential) -> int:
    """Output channels of a ResNet layer (last BatchNorm of its last block)."""
    norms = [m for m in layer[-1].modules() if isinstance(m, nn.BatchNorm2d)]
    return norms[-1].num_features


def _make_resnet(config: ModelConfig, pretrained: bool) -> ResNet:
    """The torchvision ResNet for ``config.backbone``, optionally with ImageNet weights."""
    if config.backbone == "resnet10":
        if pretrained:
            raise ValueError("backbone 'resnet10' (tiny preset) has no pretrained ImageNet weights")
        return ResNet(BasicBlock, [1, 1, 1, 1])
    builder, weights_enum = _BUILDERS[config.backbone]
    weights = weights_enum.DEFAULT if pretrained else None
    dilate_layer4 = config.segmentation_stride == 16 and config.layer4_channels is None
    is_bottleneck = config.backbone in ("resnet50", "resnet101")
    if dilate_layer4 and is_bottleneck:
        return builder(weights=weights, replace_stride_with_dilation=[False, False, True])
    backbone = builder(weights=weights)
    if dilate_layer4:
        # torchvision's BasicBlock refuses dilation > 1 (NotImplementedError), so the stride of
        # ResNet-18/34's layer4 is removed here by hand; weight shapes, hence weights, are unchanged.
        _dilate_in_place(backbone.layer4, dilation=2)
    return backbone


def _dilate_in_place(layer: nn.Sequential, dilation: int) -> None:
    """Turn a stride-2 ResNet layer into a stride-1 layer with dilated 3x3 convs."""
    for module in layer.modules():
        if not isinstance(module, nn.Conv2d):
            continue
        if module.stride == (2, 2):
            module.stride = (1, 1)  # the first conv keeps dilation 1, as torchvision does
        elif module.kernel_size == (3, 3):
            module.dilation = (dilation, dilation)
            module.padding = (dilation, dilation)


def _light_layer4(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """One BasicBlock ``in -> out`` channels: a cheap layer4 for the tiny preset."""
    downsample = nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
    )
    return nn.Sequential(BasicBlock(in_channels, out_channels, stride=stride, downsample=downsample))


def build_backbone(config: ModelConfig, pretrained: bool = False) -> tuple[ResNetEncoder, nn.Sequential, int]:
    """Split a torchvision ResNet into the shared encoder and the segmentation branch's layer4.

    Args:
        config: architecture; ``backbone``, ``segmentation_stride`` and ``layer4_channels`` are used.
        pretrained: load torchvision's ``<Backbone>_Weights.DEFAULT`` (downloads on first use).

    Returns:
        (encoder, layer4, layer4 output channels); layer4 maps stride-16 features to stride
        ``config.segmentation_stride``.
    """
    backbone = _make_resnet(config, pretrained)
    encoder = ResNetEncoder(backbone)
    if config.layer4_channels is None:
        layer4 = backbone.layer4
        return encoder, layer4, _out_channels(layer4)
    layer4_stride = config.segmentation_stride // 16
    layer4 = _light_layer4(encoder.channels[2], config.layer4_channels, layer4_stride)
    return encoder, layer4, config.layer4_channels
