"""DeepLabV3 and DeepLabV3+ heads on ResNet features, built from a plain dict of builders.

ASPP rates are (6, 12, 18) at output stride 16 and doubled at 8; the V3+ decoder projects layer1
to 48 channels and fuses with two 3x3 convs of 256 (Chen et al. 2018).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.deeplabv3 import ASPP
from torchvision.models.segmentation.fcn import FCNHead

from citypipe.labels import NUM_CLASSES
from citypipe.models.backbone import BACKBONES, ResNetFeatures
from citypipe.params import ModelParams


@dataclass(frozen=True)
class ModelConfig:
    """What defines a model's architecture; stored in every checkpoint and checked on load."""

    arch: str
    backbone: str
    output_stride: int
    aux_head: bool
    num_classes: int = NUM_CLASSES

    @classmethod
    def from_params(cls, model: ModelParams) -> ModelConfig:
        return cls(model.arch, model.backbone, model.output_stride, model.aux_head)


def _conv_bn_relu(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DeepLabV3Head(nn.Module):
    def __init__(self, in_channels: int, rates: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        self.aspp = ASPP(in_channels, rates, 256)
        self.fuse = _conv_bn_relu(256, 256, 3)
        self.classifier = nn.Conv2d(256, num_classes, 1)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.fuse(self.aspp(features["out"])))  # (N, K, H/OS, W/OS)


class DeepLabV3PlusHead(nn.Module):
    def __init__(self, in_channels: int, low_channels: int, rates: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        self.aspp = ASPP(in_channels, rates, 256)
        self.project_low = _conv_bn_relu(low_channels, 48, 1)
        self.fuse = nn.Sequential(_conv_bn_relu(256 + 48, 256, 3), _conv_bn_relu(256, 256, 3))
        self.classifier = nn.Conv2d(256, num_classes, 1)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        low = self.project_low(features["low"])  # (N, 48, H/4, W/4)
        context = F.interpolate(self.aspp(features["out"]), size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.fuse(torch.cat([context, low], dim=1)))  # (N, K, H/4, W/4)


class DeepLab(nn.Module):
    """Returns {"out": (N, K, H, W) logits at the input size, "aux": same (when the aux head is on)}."""

    def __init__(self, config: ModelConfig, backbone: ResNetFeatures, head: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.head = head
        aux_channels = BACKBONES[config.backbone].aux_channels
        self.aux_head = FCNHead(aux_channels, config.num_classes) if config.aux_head else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        features = self.backbone(x)
        result = {"out": F.interpolate(self.head(features), size=size, mode="bilinear", align_corners=False)}
        if self.aux_head is not None and self.training:
            result["aux"] = F.interpolate(self.aux_head(features["aux"]), size=size, mode="bilinear", align_corners=False)
        return result


def aspp_rates(output_stride: int) -> tuple[int, int, int]:
    return (6, 12, 18) if output_stride == 16 else (12, 24, 36)


def _deeplabv3(config: ModelConfig) -> nn.Module:
    return DeepLabV3Head(BACKBONES[config.backbone].out_channels, aspp_rates(config.output_stride), config.num_classes)


def _deeplabv3plus(config: ModelConfig) -> nn.Module:
    spec = BACKBONES[config.backbone]
    return DeepLabV3PlusHead(spec.out_channels, spec.low_channels, aspp_rates(config.output_stride),
                             config.num_classes)


HEAD_BUILDERS = {"deeplabv3": _deeplabv3, "deeplabv3plus": _deeplabv3plus}


def build_model(config: ModelConfig, pretrained: str = "none", weights_file: str = "") -> DeepLab:
    """pretrained: model.pretrained, 'none' | 'IMAGENET1K_V1' | 'IMAGENET1K_V2' (checkpoints load without)."""
    backbone = ResNetFeatures(config.backbone, config.output_stride, pretrained, weights_file)
    return DeepLab(config, backbone, HEAD_BUILDERS[config.arch](config))
