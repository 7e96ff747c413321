"""Inference at the ground truth's full resolution: whole image or sliding window, with optional
horizontal flip and multi-scale averaging. Logits are always upsampled to the original size."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from citypipe.data.dataset import normalize
from citypipe.errors import CitypipeError
from citypipe.params import InferenceParams


@dataclass(frozen=True)
class InferenceConfig:
    mode: str  # whole | slide
    size: tuple[int, int]  # whole: network input size (H, W) at scale 1.0
    crop_size: tuple[int, int]  # slide: window (H, W) at the original resolution
    stride: tuple[int, int]
    flip: bool
    scales: tuple[float, ...]

    @classmethod
    def from_params(cls, inference: InferenceParams) -> InferenceConfig:
        return cls(inference.mode, inference.size, inference.crop_size, inference.stride, inference.flip,
                   inference.scales)

    @classmethod
    def whole(cls, size: tuple[int, int]) -> InferenceConfig:
        """Whole images at one network input size, no flip, one scale: training's validation."""
        return cls("whole", size, size, size, False, (1.0,))


def _forward(network: nn.Module, x: torch.Tensor, flip: bool) -> torch.Tensor:
    """(N, 3, h, w) normalised -> (N, K, h, w) logits (flip-averaged softmax when flip)."""
    logits = network(x)["out"].float()
    if not flip:
        return logits
    flipped = network(x.flip(-1))["out"].float().flip(-1)
    return (logits.softmax(1) + flipped.softmax(1)) / 2


def _slide(network: nn.Module, x: torch.Tensor, crop: tuple[int, int], stride: tuple[int, int], flip: bool,
           num_classes: int) -> torch.Tensor:
    """Average overlapping windows (mmseg's slide inference); pads images smaller than the window."""
    n, _, h, w = x.shape
    pad_h, pad_w = max(crop[0] - h, 0), max(crop[1] - w, 0)
    x = F.pad(x, (0, pad_w, 0, pad_h))
    H, W = x.shape[-2:]
    rows = list(range(0, max(H - crop[0], 0) + 1, stride[0]))
    cols = list(range(0, max(W - crop[1], 0) + 1, stride[1]))
    rows += [H - crop[0]] if rows[-1] != H - crop[0] else []
    cols += [W - crop[1]] if cols[-1] != W - crop[1] else []
    total = x.new_zeros((n, num_classes, H, W))
    count = x.new_zeros((1, 1, H, W))
    for y in rows:
        for x0 in cols:
            total[:, :, y:y + crop[0], x0:x0 + crop[1]] += _forward(network, x[:, :, y:y + crop[0], x0:x0 + crop[1]], flip)
            count[:, :, y:y + crop[0], x0:x0 + crop[1]] += 1
    return (total / count)[:, :, :h, :w]


@torch.no_grad()
def predict(network: nn.Module, images: torch.Tensor, config: InferenceConfig, num_classes: int,
            autocast: torch.autocast | None = None) -> torch.Tensor:
    """(N, 3, H, W) uint8 images on the network's device -> (N, H, W) uint8 trainIds at (H, W)."""
    height, width = images.shape[-2:]
    x = normalize(images)
    if autocast is None:
        autocast = torch.autocast(device_type=images.device.type, enabled=False)
    scores = None
    for scale in config.scales:
        if config.mode == "whole":
            size = (round(config.size[0] * scale), round(config.size[1] * scale))
        else:
            size = (round(height * scale), round(width * scale))
        if min(size) < 1:  # whole mode is checked at params load; in slide the image's size is known only here
            raise CitypipeError(f"inference.scales {scale}: a {height}x{width} image would be {size[0]}x{size[1]} "
                                "pixels (expected scales that keep at least 1 pixel)")
        scaled = x if size == (height, width) else F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        with autocast:
            if config.mode == "whole":
                out = _forward(network, scaled, config.flip)
            else:
                out = _slide(network, scaled, config.crop_size, config.stride, config.flip, num_classes)
        out = F.interpolate(out.float(), size=(height, width), mode="bilinear", align_corners=False)
        if len(config.scales) > 1 and not config.flip:
            out = out.softmax(1)
        scores = out if scores is None else scores + out
    return scores.argmax(1).to(torch.uint8)
