"""Corrupted evaluation frames, made on the fly in the DataLoader's workers (no copy of val on disk)."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from citypipe.data.dataset import EvalFrames
from citypipe.corruptions.corrupt import corrupt

CLEAN = ("clean", 0)  # the set of uncorrupted frames, scored in the same run


def spread_frames(count: int, wanted: int) -> list[int]:
    """Indices of `wanted` frames spread evenly over `count` sorted ones (all of them when wanted is 0 or more)."""
    if wanted == 0 or wanted >= count:
        return list(range(count))
    return [i * count // wanted for i in range(wanted)]


class CorruptedFrames(Dataset):
    """Item i: frame i % F of `frames` under set i // F of `sets` ((corruption, severity), CLEAN for none), as
    EvalFrames gives it, plus "set" (the set's index). The corruption depends only on (seed, frame id,
    corruption, severity): any worker count, any order, the same pixels."""

    def __init__(self, frames: EvalFrames, sets: list[tuple[str, int]], seed: int) -> None:
        self.frames, self.sets, self.seed = frames, sets, seed

    def __len__(self) -> int:
        return len(self.sets) * len(self.frames)

    def __getitem__(self, index: int) -> dict:
        set_index, frame = divmod(index, len(self.frames))
        item = self.frames[frame]
        name, severity = self.sets[set_index]
        if (name, severity) != CLEAN:
            image = item["image"].permute(1, 2, 0).numpy()  # (H, W, 3) uint8
            corrupted = corrupt(np.ascontiguousarray(image), name, severity, self.seed, item["frame_id"])
            item["image"] = torch.from_numpy(corrupted).permute(2, 0, 1).contiguous()
        item["set"] = set_index
        return item
