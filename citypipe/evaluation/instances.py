"""Small objects: recall of ground-truth instances by size, from the official instanceIds.

An instance (a gtFine instanceIds value labelId*1000+k of an evaluated class; caravan and trailer are
ignoreInEval) is found when at least half of its pixels are predicted as its class. Sizes are binned
by pixel area in a 1024x2048 frame: an instance of area a in an HxW frame counts as a * 1024*2048 / (H*W),
so the bins mean the same on CitySynth's small frames as on Cityscapes.
"""
from __future__ import annotations

import torch

from citypipe.labels import IGNORE_INDEX

REFERENCE_PIXELS = 1024 * 2048
# lower edges of the size bins, in pixels of a 1024x2048 frame: below 16^2, 16^2-32^2, ..., 256^2 and up
SIZE_EDGES = (0, 16 ** 2, 32 ** 2, 64 ** 2, 128 ** 2, 256 ** 2)
SIZE_LABELS = ("<16^2", "16^2-32^2", "32^2-64^2", "64^2-128^2", "128^2-256^2", ">=256^2")
NUM_BINS = len(SIZE_EDGES)


def size_bins(area: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(I,) int64 pixel areas in an HxW frame -> (I,) int64 bin index, compared exactly in integers:
    a * REFERENCE_PIXELS >= edge * H * W."""
    edges = torch.tensor(SIZE_EDGES, dtype=torch.int64, device=area.device) * (height * width)
    return torch.searchsorted(edges, area.long() * REFERENCE_PIXELS, right=True) - 1


def instance_outcomes(instances: torch.Tensor, prediction: torch.Tensor, train_id_of: torch.Tensor,
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """instances: (H, W) int instanceIds; prediction: (H, W) trainIds; train_id_of: (256,) labelId -> trainId LUT.

    Returns (trainId, area, found), each (I,), one entry per instance of an evaluated class."""
    ids = instances.reshape(-1).long()  # (P,) values below 1000 are labelIds of regions without instances
    if ids.numel() == 0 or int(ids.max()) < 1000:
        empty = torch.zeros(0, dtype=torch.int64, device=instances.device)
        return empty, empty, empty.bool()
    # ids are at most 33999 (labelId * 1000 + k): counting by id needs no sort, unlike torch.unique
    size = int(ids.max()) + 1
    area = torch.bincount(ids, minlength=size)  # (size,)
    correct = prediction.reshape(-1).long() == train_id_of[torch.div(ids, 1000, rounding_mode="floor")]
    hits = torch.bincount(ids[correct], minlength=size)  # pixels predicted as the id's class
    unique = torch.nonzero(area[1000:]).squeeze(1) + 1000  # (I,) instance ids present
    train_id = train_id_of[torch.div(unique, 1000, rounding_mode="floor")].long()
    keep = train_id != IGNORE_INDEX
    area, hits = area[unique], hits[unique]
    return train_id[keep], area[keep], (2 * hits >= area)[keep]


class InstanceRecall:
    """Found and total instance counts per (trainId, size bin), accumulated on the device."""

    def __init__(self, device: torch.device, num_classes: int, train_id_of: torch.Tensor) -> None:
        self.total = torch.zeros(num_classes, NUM_BINS, dtype=torch.int64, device=device)
        self.found = torch.zeros_like(self.total)
        self._train_id_of = train_id_of.to(device)

    @torch.no_grad()
    def update(self, instances: torch.Tensor, prediction: torch.Tensor) -> None:
        """instances, prediction: (H, W) of one frame."""
        train_id, area, found = instance_outcomes(instances, prediction, self._train_id_of)
        cell = train_id * NUM_BINS + size_bins(area, *instances.shape)
        size = self.total.numel()
        self.total += torch.bincount(cell, minlength=size).view_as(self.total)
        self.found += torch.bincount(cell[found], minlength=size).view_as(self.found)
