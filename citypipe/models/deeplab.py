"""DeepLabV3 and DeepLabV3+ heads on ResNet features, built from a plain dict of builders.

ASPP rates are (6, 12, 18) at output stride 16 and doubled at 8; the V3+ decoder projects layer1
to 48 channels and fuses with two 3x3 convs of `head_channels` (256 in Chen et al. 2018). Two head
styles: torchvision's (its ASPP and FCNHead, PyTorch's init) and mmseg's (mmseg_head.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.deeplabv3 import ASPP
from torchvision.models.segmentation.fcn import FCNHead

from citypipe.labels import NUM_CLASSES
from citypipe.models import mmseg_head
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
    head_channels: int = 256  # the demo's and torchvision's; from_params always passes model.head_channels
    head_style: str = "torchvision"  # "torchvision" | "mmseg"

    @classmethod
    def from_params(cls, model: ModelParams) -> ModelConfig:
        return cls(model.arch, model.backbone, model.output_stride, model.aux_head,
                   head_channels=model.head_channels, head_style=model.head_style)


def _conv_bn_relu(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DeepLabV3Head(nn.Module):
    def __init__(self, in_channels: int, channels: int, rates: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        self.aspp = ASPP(in_channels, rates, channels)  # fused by a 1x1 conv + Dropout(0.5)
        self.fuse = _conv_bn_relu(channels, channels, 3)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.fuse(self.aspp(features["out"])))  # (N, K, H/OS, W/OS)


class DeepLabV3PlusHead(nn.Module):
    def __init__(self, in_channels: int, low_channels: int, channels: int, rates: tuple[int, int, int],
                 num_classes: int) -> None:
        super().__init__()
        self.aspp = ASPP(in_channels, rates, channels)  # fused by a 1x1 conv + Dropout(0.5)
        self.project_low = _conv_bn_relu(low_channels, 48, 1)
        self.fuse = nn.Sequential(_conv_bn_relu(channels + 48, channels, 3), _conv_bn_relu(channels, channels, 3))
        self.classifier = nn.Conv2d(channels, num_classes, 1)

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
        aux_builder = mmseg_head.fcn_aux_head if config.head_style == "mmseg" else FCNHead
        self.aux_head = aux_builder(aux_channels, config.num_classes) if config.aux_head else None

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
    head = mmseg_head.MMSegDeepLabV3Head if config.head_style == "mmseg" else DeepLabV3Head
    return head(BACKBONES[config.backbone].out_channels, config.head_channels, aspp_rates(config.output_stride),
                config.num_classes)


def _deeplabv3plus(config: ModelConfig) -> nn.Module:
    spec = BACKBONES[config.backbone]
    head = mmseg_head.MMSegDeepLabV3PlusHead if config.head_style == "mmseg" else DeepLabV3PlusHead
    return head(spec.out_channels, spec.low_channels, config.head_channels, aspp_rates(config.output_stride),
                config.num_classes)


HEAD_BUILDERS = {"deeplabv3": _deeplabv3, "deeplabv3plus": _deeplabv3plus}


def build_model(config: ModelConfig, pretrained: str = "none", weights_file: str = "") -> DeepLab:
    """pretrained: model.pretrained, 'none' | 'IMAGENET1K_V1' | 'IMAGENET1K_V2' (checkpoints load without)."""
    backbone = ResNetFeatures(config.backbone, config.output_stride, pretrained, weights_file)
    return DeepLab(config, backbone, HEAD_BUILDERS[config.arch](config))
