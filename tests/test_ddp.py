"""Two CPU processes with the gloo backend: ranks stay in sync and match single-process math."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from citypipe.data.sampling import EpochSampler
from citypipe.distributed import DistInfo
from citypipe.evaluation.confusion import ConfusionMatrix
from citypipe.runtime import Runtime
from citypipe.training.loop import (
    LoopConfig,
    TrainingSetup,
    TrainState,
    train_one_epoch,
)
from citypipe.training.losses import SegmentationLoss

PER_RANK_BATCH, WORLD = 2, 2


class Frames(Dataset):
    """Deterministic images and labels (no ignored pixels, so every sample weighs the same)."""

    def __len__(self):
        return 16

    def __getitem__(self, key):
        index, _seed = key
        g = torch.Generator().manual_seed(index)
        return torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8, generator=g), torch.randint(0, 19, (8, 8), generator=g).to(torch.uint8)


class TinySegmenter(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 19, 3, padding=1)

    def forward(self, x):
        return {"out": self.conv(x)}


def _train(model, rank, world, batch):
    sampler = EpochSampler(len(Frames()), torch.linspace(1, 2, 16), seed=1, rank=rank, world_size=world)
    loader = DataLoader(Frames(), batch_size=batch, sampler=sampler, drop_last=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1.0)
    runtime = Runtime(torch.device("cpu"), None, False)
    info = DistInfo(rank, world, rank)
    setup = TrainingSetup(model, model, loader, sampler, optimizer, scheduler, SegmentationLoss(None, False, 0.7, 1, 0.0),
                          torch.amp.GradScaler("cpu", enabled=False), runtime, info, LoopConfig(2, 1, 1, 1))
    for epoch in range(2):
        sampler.set_epoch(epoch)
        train_one_epoch(setup, epoch, TrainState())


def _worker(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    model = TinySegmenter()
    _train(DistributedDataParallel(model), rank, WORLD, PER_RANK_BATCH)
    torch.save(model.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    cm = ConfusionMatrix()
    target = torch.arange(64).remainder(19).view(8, 8)
    cm.update(target[rank::WORLD], target[rank::WORLD].roll(1, 0))
    cm.all_reduce()
    torch.save(cm.mat, os.path.join(out_dir, f"cm{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes that import torch and train
def test_ddp_gloo_ranks_in_sync_and_equal_to_single_process(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    single = TinySegmenter()
    _train(single, 0, 1, PER_RANK_BATCH * WORLD)
    for key, value in single.state_dict().items():
        torch.testing.assert_close(rank0[key], value, rtol=1e-5, atol=1e-6)
    assert not torch.equal(rank0["conv.weight"], TinySegmenter().state_dict()["conv.weight"])  # it trained
    full = ConfusionMatrix()
    target = torch.arange(64).remainder(19).view(8, 8)
    for r in range(WORLD):
        full.update(target[r::WORLD], target[r::WORLD].roll(1, 0))
    for r in range(WORLD):
        assert torch.equal(torch.load(tmp_path / f"cm{r}.pt", weights_only=True), full.mat)
