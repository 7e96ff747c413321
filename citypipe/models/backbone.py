"""torchvision ResNet backbones at output stride 16 or 8, with ImageNet weights on request."""
from __future__ import annotations

import urllib.error
from pathlib import Path
from typing import Callable, NamedTuple

import torch
from torch import nn
from torchvision import models

from citypipe.errors import CitypipeError, first_line


class Backbone(NamedTuple):
    builder: Callable[..., models.ResNet]
    weights_enum_class: type[models.WeightsEnum]  # torchvision's ResNetXX_Weights, looked up by name
    low_channels: int  # layer1, the V3+ decoder's input
    aux_channels: int  # layer3, the aux head's input
    out_channels: int  # layer4, ASPP's input


BACKBONES = {
    "resnet18": Backbone(models.resnet18, models.ResNet18_Weights, 64, 256, 512),
    "resnet34": Backbone(models.resnet34, models.ResNet34_Weights, 64, 256, 512),
    "resnet50": Backbone(models.resnet50, models.ResNet50_Weights, 256, 1024, 2048),
    "resnet101": Backbone(models.resnet101, models.ResNet101_Weights, 256, 1024, 2048),
}


def imagenet_weights(name: str, pretrained: str) -> models.WeightsEnum | None:
    """model.pretrained ('none', 'IMAGENET1K_V1', 'IMAGENET1K_V2') -> torchvision's weights enum.

    ResNet-18/34 have only V1; ResNet-50/101 have V1 (the recipe's, mmseg's torchvision run) and V2.
    """
    if pretrained == "none":
        return None
    enum_class = BACKBONES[name].weights_enum_class
    available = [weights.name for weights in enum_class]  # iterating skips the DEFAULT alias
    if pretrained not in available:
        raise CitypipeError(f"model.pretrained: {pretrained} does not exist for {name} "
                            f"(torchvision's {enum_class.__name__} has {', '.join(available)})")
    return enum_class[pretrained]


def dilate_layer(layer: nn.Sequential, dilation: int, first_dilation: int) -> None:
    """Trade a ResNet stage's stride 2 for dilation, so the output stride stays put.

    Contracted, as torchvision's replace_stride_with_dilation and mmseg's contract_dilation=True: the
    stage's first block keeps `first_dilation`, the previous stage's rate (output stride 8: layer3
    1,2,2,..., layer4 2,4,4), so a dilated network with ImageNet weights computes what the undilated one
    did, on a denser grid. Bottleneck (ResNet-50/101): its 3x3 conv2 carries the stride, so the
    dilation, as in torchvision. BasicBlock (ResNet-18/34), which torchvision cannot dilate: mmseg's
    rule, conv1 (the strided 3x3) takes the rate and conv2 stays undilated.
    """
    for index, block in enumerate(layer):
        rate = first_dilation if index == 0 else dilation
        conv = block.conv2 if isinstance(block, models.resnet.Bottleneck) else block.conv1
        conv.stride, conv.dilation, conv.padding = (1, 1), (rate, rate), (rate, rate)
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)  # the 1x1 projection of the shortcut


def load_backbone_weights(resnet: nn.Module, name: str, pretrained: str, weights_file: str) -> None:
    """ImageNet weights from a local file (torchvision's keys) or through torchvision's weights API."""
    weights = imagenet_weights(name, pretrained)  # checked first, also when weights_file wins
    if weights_file:
        path = Path(weights_file)
        if not path.is_file():
            raise CitypipeError(f"model.weights_file: {path} not found (expected a {name} state dict with torchvision's keys)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # truncated, foreign or pickled-code files alike: one line, the file named
            raise CitypipeError(f"model.weights_file: {path}: cannot load ({first_line(error)})") from None
        if not isinstance(state, dict):
            raise CitypipeError(f"model.weights_file: {path} holds a {type(state).__name__}, expected a state dict")
    elif weights is not None:
        try:
            state = weights.get_state_dict(progress=True, check_hash=True)
        except (urllib.error.URLError, OSError, RuntimeError) as error:
            raise CitypipeError(
                f"cannot fetch ImageNet weights {weights} ({error}); set model.pretrained: none "
                f"(or --no-pretrained), or point model.weights_file to a local {name} state dict") from None
    else:
        return
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = resnet.state_dict()
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            raise CitypipeError(f"backbone weights for {name} do not fit: {key} has shape {tuple(value.shape)}, "
                                f"expected {tuple(own[key].shape)} (weights of another backbone?)")
    missing, unexpected = resnet.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        first = (missing or unexpected)[0]
        raise CitypipeError(f"backbone weights for {name} do not fit: {'missing' if missing else 'unexpected'} key {first}")


class ResNetFeatures(nn.Module):
    """A ResNet without pooling/fc that returns layer1 (stride 4), layer3 and layer4 features."""

    def __init__(self, name: str, output_stride: int, pretrained: str, weights_file: str) -> None:
        super().__init__()
        resnet = BACKBONES[name].builder(weights=None)
        load_backbone_weights(resnet, name, pretrained, weights_file)
        if output_stride == 8:
            dilate_layer(resnet.layer3, 2, 1)
            dilate_layer(resnet.layer4, 4, 2)
        else:
            dilate_layer(resnet.layer4, 2, 1)
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        low = self.layer1(self.stem(x))  # (N, C1, H/4, W/4)
        mid = self.layer3(self.layer2(low))  # (N, C3, H/OS, W/OS)
        return {"low": low, "aux": mid, "out": self.layer4(mid)}  # out: (N, C4, H/OS, W/OS)
