"""The training sampler: weighted (rare-class images more often) or uniform, split across ranks.

Each epoch draws one global sequence from (seed, epoch), so every rank sees its own slice of the
same draw, and the draw, with each item's augmentation seed, does not depend on the world size.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler):
    """Yields (sample index, augmentation seed) pairs for this rank."""

    def __init__(self, num_samples: int, weights: torch.Tensor | None, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.num_samples, self.weights, self.seed = num_samples, weights, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(M,) indices and (M,) seeds, M = num_samples rounded up to a multiple of world_size."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        seeds = torch.randint(0, 2**62, (self.num_samples,), generator=generator)
        if self.weights is None:
            indices = torch.randperm(self.num_samples, generator=generator)
        else:
            indices = torch.multinomial(self.weights.double(), self.num_samples, replacement=True, generator=generator)
        pad = -(-self.num_samples // self.world_size) * self.world_size - self.num_samples
        # the same draw for every world size; ranks pad it by wrapping around, as DistributedSampler does
        return torch.cat([indices, indices[:pad]]), torch.cat([seeds, seeds[:pad]])

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices, seeds = self.global_draw()
        for i in range(self.rank, len(indices), self.world_size):
            yield int(indices[i]), int(seeds[i])

    def __len__(self) -> int:
        return -(-self.num_samples // self.world_size)
