"""mmsegmentation's DeepLab heads (model.head_style: mmseg), rebuilt from their definitions: ASPPHead
(DeepLabV3), DepthwiseSeparableASPPHead (DeepLabV3+) and the FCN auxiliary head, with their init.

Against the torchvision-style heads of deeplab.py:
- ASPP: image pooling, a 1x1 branch and 3x3 branches at the rates (depthwise-separable in V3+), fused
  by a 3x3 conv; torchvision's ASPP fuses with a 1x1 conv followed by Dropout(0.5);
- the V3+ decoder fuses with two depthwise-separable 3x3 convs (torchvision style: full 3x3 convs);
- Dropout2d(0.1) right before the 1x1 classifier (torchvision style: none there);
- init: convs kaiming-normal (fan_out, relu: mmcv's ConvModule), BatchNorm 1 and 0, the classifier
  N(0, 0.01) with bias 0 (mmseg's BaseDecodeHead); torchvision style keeps PyTorch's default init.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(cin: int, cout: int, kernel: int, dilation: int = 1, groups: int = 1) -> nn.Sequential:
    """mmcv's ConvModule: conv without bias, BN, ReLU; the conv kaiming-normal with fan_out."""
    conv = nn.Conv2d(cin, cout, kernel, padding=dilation * (kernel // 2), dilation=dilation, groups=groups, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))  # BatchNorm2d starts at 1 and 0 already


def separable_conv(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    """mmcv's DepthwiseSeparableConvModule: depthwise 3x3 + BN + ReLU, then pointwise 1x1 + BN + ReLU."""
    return nn.Sequential(conv_bn_relu(cin, cin, 3, dilation, groups=cin), conv_bn_relu(cin, cout, 1))


def classifier(cin: int, num_classes: int) -> nn.Sequential:
    """mmseg's cls_seg: Dropout2d(0.1), then conv_seg initialised N(0, 0.01)."""
    conv = nn.Conv2d(cin, num_classes, 1)
    nn.init.normal_(conv.weight, 0.0, 0.01)
    nn.init.zeros_(conv.bias)
    return nn.Sequential(nn.Dropout2d(0.1), conv)


class MMSegASPP(nn.Module):
    """Image pooling, 1x1, and 3x3 at each rate; concatenated and fused by a 3x3 conv."""

    def __init__(self, in_channels: int, channels: int, rates: tuple[int, ...], separable: bool) -> None:
        super().__init__()
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), conv_bn_relu(in_channels, channels, 1))
        dilated = [separable_conv(in_channels, channels, r) if separable else conv_bn_relu(in_channels, channels, 3, r)
                   for r in rates]
        self.branches = nn.ModuleList([conv_bn_relu(in_channels, channels, 1), *dilated])
        self.bottleneck = conv_bn_relu((len(rates) + 2) * channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.interpolate(self.image_pool(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.bottleneck(torch.cat([pooled, *(branch(x) for branch in self.branches)], dim=1))  # (N, C, h, w)


class MMSegDeepLabV3Head(nn.Module):
    """mmseg's ASPPHead."""

    def __init__(self, in_channels: int, channels: int, rates: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        self.aspp = MMSegASPP(in_channels, channels, rates, separable=False)
        self.classifier = classifier(channels, num_classes)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.aspp(features["out"]))  # (N, K, H/OS, W/OS)


class MMSegDeepLabV3PlusHead(nn.Module):
    """mmseg's DepthwiseSeparableASPPHead (c1_channels 48)."""

    def __init__(self, in_channels: int, low_channels: int, channels: int, rates: tuple[int, int, int],
                 num_classes: int) -> None:
        super().__init__()
        self.aspp = MMSegASPP(in_channels, channels, rates, separable=True)
        self.project_low = conv_bn_relu(low_channels, 48, 1)
        self.fuse = nn.Sequential(separable_conv(channels + 48, channels), separable_conv(channels, channels))
        self.classifier = classifier(channels, num_classes)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        low = self.project_low(features["low"])  # (N, 48, H/4, W/4)
        context = F.interpolate(self.aspp(features["out"]), size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.fuse(torch.cat([context, low], dim=1)))  # (N, K, H/4, W/4)


def fcn_aux_head(in_channels: int, num_classes: int) -> nn.Sequential:
    """mmseg's FCNHead with one conv (num_convs=1, no input concat) of in/4 channels: 256 on ResNet-50's layer3."""
    return nn.Sequential(conv_bn_relu(in_channels, in_channels // 4, 3), *classifier(in_channels // 4, num_classes))
