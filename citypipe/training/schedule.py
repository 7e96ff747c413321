"""Learning-rate schedules, stepped per iteration: linear warmup, then poly or cosine decay."""
from __future__ import annotations

import math


def lr_factor(iteration: int, total_iters: int, schedule: str, poly_power: float, warmup_iters: int,
              warmup_ratio: float, min_ratio: float = 0.0) -> float:
    """Multiplier of the base lr at `iteration` (0-based) of `total_iters`; decays to `min_ratio`
    (mmseg's PolyLR: (lr - min_lr) * (1 - progress) ** power + min_lr)."""
    if iteration < warmup_iters:
        return warmup_ratio + (1 - warmup_ratio) * iteration / warmup_iters
    progress = min(1.0, iteration / max(1, total_iters))
    if schedule == "poly":
        return min_ratio + (1 - min_ratio) * (1 - progress) ** poly_power
    if schedule == "cosine":
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {schedule!r}")
