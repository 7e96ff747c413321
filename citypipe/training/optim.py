"""Optimizer with separate learning-rate multipliers for the backbone and the heads."""
from __future__ import annotations

import torch
from torch import nn


def build_optimizer(model: nn.Module, name: str, lr: float, momentum: float, nesterov: bool,
                    weight_decay: float, backbone_lr_mult: float, head_lr_mult: float) -> torch.optim.Optimizer:
    backbone = [p for n, p in model.named_parameters() if n.startswith("backbone.") and p.requires_grad]
    heads = [p for n, p in model.named_parameters() if not n.startswith("backbone.") and p.requires_grad]
    groups = [{"params": backbone, "lr": lr * backbone_lr_mult, "initial_lr": lr * backbone_lr_mult},
              {"params": heads, "lr": lr * head_lr_mult, "initial_lr": lr * head_lr_mult}]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0,
                               weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}")
