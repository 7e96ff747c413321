"""train.grad_accum_steps through the project's own loop (`fit` / `train_one_epoch` over a `TrainingSetup`):
accumulating 2 micro-batches of b is one step of batch 2b, gradients and weights to float tolerance, for a
model without BatchNorm. With BatchNorm it is not (each micro-batch is normalised with its own statistics;
docs/RECIPE.md, Gradient accumulation), and a trailing micro-batch that cannot complete a step is dropped."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from citypipe.data.sampling import EpochSampler
from citypipe.distributed import DistInfo
from citypipe.runtime import Runtime
from citypipe.training.loop import LoopConfig, TrainingSetup, TrainState, fit
from citypipe.training.losses import SegmentationLoss
from citypipe.training.optim import build_optimizer
from citypipe.training.schedule import lr_factor

IMAGES, EPOCHS, SEED = 10, 2, 3


class Frames(Dataset):
    """(uint8 (3, 8, 8) image, (8, 8) trainIds) per index; the sampler's augmentation seed is unused.
    No ignored pixels: every micro-batch has the same pixel count, which batch equivalence needs."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(1)
        self.images = torch.randint(0, 256, (IMAGES, 3, 8, 8), dtype=torch.uint8, generator=generator)
        self.labels = torch.randint(0, 19, (IMAGES, 8, 8), generator=generator)

    def __len__(self) -> int:
        return IMAGES

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, _seed = item
        return self.images[index], self.labels[index]


class TinySegmenter(nn.Module):
    """backbone / head named as DeepLab's, so build_optimizer forms both groups."""

    def __init__(self, norm: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        layer = {"group": nn.GroupNorm(2, 8), "batch": nn.BatchNorm2d(8), "none": nn.Identity()}[norm]
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), layer, nn.ReLU())
        self.head = nn.Conv2d(8, 19, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.head(self.backbone(x))}  # (N, 19, 8, 8)


def train(norm: str, batch_size: int, accum: int) -> tuple[nn.Module, TrainState, list[torch.Tensor]]:
    """Two epochs of the project's loop; returns the model, the state and each optimizer step's gradient (P,)."""
    model = TinySegmenter(norm)
    sampler = EpochSampler(IMAGES, None, SEED)
    loader = DataLoader(Frames(), batch_size=batch_size, sampler=sampler, drop_last=True)
    optimizer = build_optimizer(model, "sgd", 0.05, 0.9, False, 5e-4, 0.5, 1.0)
    total = EPOCHS * (len(loader) // accum)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, total, "poly", 0.9, 0, 1.0))
    grads = []
    optimizer.register_step_pre_hook(
        lambda *_: grads.append(torch.cat([p.grad.flatten() for p in model.parameters()])))
    setup = TrainingSetup(model, model, loader, sampler, optimizer, scheduler, SegmentationLoss(None, False, 0.7, 1, 0.4),
                          torch.amp.GradScaler("cpu", enabled=False), Runtime(torch.device("cpu"), None, False),
                          DistInfo(0, 1, 0), LoopConfig(EPOCHS, SEED, accum, EPOCHS + 1))
    state = fit(setup, TrainState(), lambda: {"miou": 0.0, "pixel_acc": 0.0}, lambda *_: None)
    return model, state, grads


def plain_loop(batch_size: int) -> nn.Module:
    """The reference: a textbook loop, one optimizer step per batch of `batch_size`, same data order."""
    model = TinySegmenter("group")
    dataset, criterion = Frames(), SegmentationLoss(None, False, 0.7, 1, 0.4)
    optimizer = build_optimizer(model, "sgd", 0.05, 0.9, False, 5e-4, 0.5, 1.0)
    steps_per_epoch = IMAGES // batch_size
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, EPOCHS * steps_per_epoch, "poly", 0.9, 0, 1.0))
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
    for epoch in range(EPOCHS):
        sampler = EpochSampler(IMAGES, None, SEED)
        sampler.set_epoch(epoch)
        order = [index for index, _ in sampler]
        for step in range(steps_per_epoch):
            batch = order[step * batch_size:(step + 1) * batch_size]
            x = (dataset.images[batch].float() - mean) / std  # (B, 3, 8, 8)
            optimizer.zero_grad()
            criterion(model(x), dataset.labels[batch]).backward()
            optimizer.step()
            scheduler.step()
    return model


def weights(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])  # (P,)


def test_two_accumulated_micro_batches_are_one_step_of_the_double_batch():
    # 10 images: batch 2 x accum 2 uses 4 of 5 batches per epoch (the 5th cannot complete a step);
    # batch 4 drops its last 2 images: both see the same 8 images per epoch, in the same order
    accumulated, state_a, grads_a = train("group", batch_size=2, accum=2)
    full, state_f, grads_f = train("group", batch_size=4, accum=1)
    assert state_a.iteration == state_f.iteration == len(grads_a) == len(grads_f) == EPOCHS * 2
    for a, f in zip(grads_a, grads_f):
        torch.testing.assert_close(a, f, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weights(accumulated), weights(full), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(weights(accumulated), weights(plain_loop(4)), atol=1e-6, rtol=1e-5)
    for row_a, row_f in zip(state_a.history, state_f.history):
        assert abs(row_a["loss"] - row_f["loss"]) < 1e-5 and row_a["lr"] == row_f["lr"]


def test_without_accumulation_the_half_batch_trains_differently():
    accumulated, _, _ = train("group", batch_size=2, accum=2)
    half, state, _ = train("group", batch_size=2, accum=1)
    assert state.iteration == EPOCHS * 5
    assert not torch.allclose(weights(accumulated), weights(half), atol=1e-3)


def test_batch_norm_breaks_the_equivalence():
    _, _, grads_a = train("batch", batch_size=2, accum=2)
    _, _, grads_f = train("batch", batch_size=4, accum=1)
    first_a, first_f = grads_a[0], grads_f[0]
    assert not torch.allclose(first_a, first_f, atol=1e-3)
    assert float(nn.functional.cosine_similarity(first_a, first_f, dim=0)) < 0.999
