"""The training loop: one epoch at a time, a checkpoint after each, resumable from `last`.

Every epoch's randomness (sample draw, augmentation seeds, dropout) derives from (seed, epoch), so
a run killed at any point and restarted from `last` ends with the same weights as one that was
never interrupted (CPU, same seed).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from citypipe.data.dataset import normalize
from citypipe.data.sampling import EpochSampler
from citypipe.distributed import DistInfo, all_reduce_mean, broadcast_buffers
from citypipe.errors import CitypipeError
from citypipe.runtime import Runtime
from citypipe.training.outputs import TIMINGS


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    iteration: int = 0  # optimizer steps taken
    history: list[dict] = field(default_factory=list)  # one row per epoch
    best_miou: float = -1.0
    best_epoch: int = 0


@dataclass(frozen=True)
class LoopConfig:
    epochs: int
    seed: int
    grad_accum_steps: int
    val_every: int


@dataclass(frozen=True)
class TrainingSetup:
    """Everything one optimisation step touches, built once by the trainer."""

    model: nn.Module  # the bare module: what checkpoints and validation use
    train_model: nn.Module  # `model`, or its DDP / compiled wrapper: what the step calls
    loader: DataLoader
    sampler: EpochSampler
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    criterion: nn.Module
    scaler: torch.amp.GradScaler
    runtime: Runtime
    dist_info: DistInfo
    config: LoopConfig


# Batches between the host's reads of the loss. Between reads the host only queues work, so a GPU is
# never idle waiting for a Python-side check; the non-finite check still stops the run within this many
# batches, always before the epoch's checkpoint is written.
READ_EVERY = 10


def _check_finite(first_bad: torch.Tensor, bad_loss: torch.Tensor, epoch: int, read_from: int, read_to: int) -> None:
    """Host read of the device-side record of the first non-finite loss (batch number, 1-based; -1: none)."""
    batch = int(first_bad)
    if batch >= 0:
        raise CitypipeError(f"train: non-finite loss ({float(bad_loss)}) at epoch {epoch + 1}, batch {batch} "
                            f"(read with batches {read_from}-{read_to}); lower train.lr, or use device.amp: bf16 "
                            "instead of fp16")


def train_one_epoch(setup: TrainingSetup, epoch: int, state: TrainState) -> dict:
    runtime, dist_info, accum = setup.runtime, setup.dist_info, setup.config.grad_accum_steps
    model, optimizer, scaler = setup.train_model, setup.optimizer, setup.scaler
    model.train()
    device = runtime.device
    # device-side running figures: () sum of the batch losses; the first non-finite batch and its loss
    total_loss = torch.zeros((), device=device)
    first_bad = torch.full((), -1, dtype=torch.int64, device=device)
    bad_loss = torch.zeros((), device=device)
    batches, images_seen, read_to = 0, 0, 0
    first_step, first_images = 0.0, 0
    started = time.perf_counter()
    steps_per_epoch = len(setup.loader) // accum
    # a bar on a terminal only (disable=None): logs (dvc queue logs, CI) get the per-epoch line instead
    progress = tqdm(total=steps_per_epoch * accum, desc=f"epoch {epoch + 1}/{setup.config.epochs}", unit="batch",
                    disable=None if dist_info.is_main else True, leave=False)
    for step, (images, labels) in enumerate(setup.loader):
        if step >= steps_per_epoch * accum:
            break  # a trailing partial accumulation would change the effective batch
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True).long()  # (N, h, w)
        x = normalize(images)  # (N, 3, h, w)
        if runtime.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        last_micro_step = (step + 1) % accum == 0
        sync = last_micro_step or not isinstance(model, DistributedDataParallel)
        with (model.no_sync() if not sync else contextlib.nullcontext()), runtime.autocast():
            loss = setup.criterion(model(x), labels) / accum
        scaler.scale(loss).backward() if scaler.is_enabled() else loss.backward()
        step_loss = all_reduce_mean(loss.detach() * accum, dist_info)  # () on the device, the same on every rank
        newly_bad = (first_bad < 0) & ~torch.isfinite(step_loss)  # no host read: the device keeps the record
        first_bad = torch.where(newly_bad, step + 1, first_bad)
        bad_loss = torch.where(newly_bad, step_loss.float(), bad_loss)
        if last_micro_step:
            if scaler.is_enabled():
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            setup.scheduler.step()
            state.iteration += 1
        total_loss += step_loss
        batches += 1
        images_seen += images.shape[0] * dist_info.world_size
        if batches == 1:  # one wait per epoch: the first step's time, compiling included on epoch 1
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            first_step, first_images = time.perf_counter() - started, images_seen
        if batches % READ_EVERY == 0:
            _check_finite(first_bad, bad_loss, epoch, read_to + 1, batches)
            read_to = batches
            if not progress.disable:  # a terminal is watching: the running mean, read with the check
                progress.set_postfix(loss=f"{float(total_loss) / batches:.3f}",
                                     img_s=f"{images_seen / (time.perf_counter() - started):.1f}")
        progress.update()
    _check_finite(first_bad, bad_loss, epoch, read_to + 1, batches)
    progress.close()
    broadcast_buffers(setup.model, dist_info)  # every rank validates and rank 0 saves the same model
    seconds = time.perf_counter() - started
    steady = images_seen - first_images
    return {"loss": float(total_loss) / max(1, batches), "lr": optimizer.param_groups[-1]["lr"],
            "seconds": seconds, "images_per_second": images_seen / seconds, "first_step_seconds": first_step,
            "steady_images_per_second": steady / max(seconds - first_step, 1e-9) if steady else 0.0}


def fit(setup: TrainingSetup, state: TrainState, validate: Callable[[], dict],
        on_epoch_end: Callable[[TrainState, bool, dict], None]) -> TrainState:
    """Train from `state.epoch` to `setup.config.epochs`.

    `validate()` returns scores ({"miou", "pixel_acc", ...}); `on_epoch_end(state, is_best, timings)` saves
    and logs (timings: {"seconds", "images_per_second"} of the epoch, for the text log only).
    """
    config = setup.config
    for epoch in range(state.epoch, config.epochs):
        setup.sampler.set_epoch(epoch)
        # dropout draws from the global torch stream; nothing else in the loop does (the loaders have
        # their own generators), so it is a function of (seed, epoch) wherever a run was resumed
        torch.manual_seed(config.seed * 1_000_003 + epoch)
        stats = train_one_epoch(setup, epoch, state)
        # timings go to the log only: what DVC hashes (checkpoints, series) must depend on deps and params alone
        timings = {key: stats.pop(key) for key in TIMINGS}
        row = {"epoch": epoch + 1, **stats}
        is_best = False
        if (epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs:
            scores = validate()
            row["val_miou"], row["val_pixel_acc"] = scores["miou"], scores["pixel_acc"]
            miou = -1.0 if math.isnan(scores["miou"]) else scores["miou"]
            if miou > state.best_miou:
                state.best_miou, state.best_epoch, is_best = miou, epoch + 1, True
        state.epoch = epoch + 1
        state.history.append(row)
        on_epoch_end(state, is_best, timings)
    return state
