"""torchrun / DDP: the process group from the environment torchrun sets, each rank's share of the frames,
and the collectives that keep multi-process results equal to a one-process run's.

Used by every stage that runs under device.processes (citypipe/launch.py starts the workers): train,
evaluate and robustness. Without torchrun (WORLD_SIZE unset or 1) every helper is a no-op.
"""
from __future__ import annotations

import atexit
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from citypipe.errors import CitypipeError

T = TypeVar("T")

# CITYPIPE_RANK_DIGESTS=FOLDER: after each training epoch every rank appends '<epoch> <sha256 of its
# state_dict>' to FOLDER/rank<R>.txt; tests/test_launch.py checks that the ranks hold the same weights.
DIGEST_VARIABLE = "CITYPIPE_RANK_DIGESTS"


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistInfo(0, 1, 0)


def init_distributed(device_type: str) -> DistInfo:
    """One process per device under torchrun (NCCL on CUDA, gloo on CPU); a no-op otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return SINGLE
    if device_type == "mps":
        raise CitypipeError(f"device.processes: {world_size} processes need device.type cuda or cpu "
                            "(PyTorch has no process-group backend for mps)")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        # torch warns at exit about a group never destroyed; a failing rank's exit must not wait for the others
        atexit.register(lambda: dist.destroy_process_group() if dist.is_initialized() else None)
    return current()


def current() -> DistInfo:
    """This process's place in an initialized process group (SINGLE without one)."""
    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.world_size > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= info.world_size
    return value


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        dist.barrier()


def shard_batches(items: Sequence[T], batch_size: int, info: DistInfo) -> list[T]:
    """This rank's share of `items`: a contiguous run of whole batches, ranks in order.

    Contiguous, so gathering the ranks' per-frame rows in rank order gives the frames' order; whole
    batches, so every frame is predicted in the same batch as in a one-process run (a CPU kernel's
    bits may depend on the batch it runs in)."""
    batches = -(-len(items) // batch_size)  # ceil
    first = batches * info.rank // info.world_size
    last = batches * (info.rank + 1) // info.world_size
    return list(items[first * batch_size:last * batch_size])


def gather_in_rank_order(value: Any, info: DistInfo) -> list[Any]:
    """Every rank's `value` (any picklable object; keep tensors on the CPU), on every rank, in rank order."""
    if info.world_size <= 1:
        return [value]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def gather_rows(rows: list[torch.Tensor], shape: tuple[int, ...], dtype: type, info: DistInfo) -> np.ndarray:
    """Every rank's per-frame rows (tensors of `shape`), stacked in rank order, on the CPU: (total rows, *shape)."""
    mine = torch.stack(rows).cpu().numpy() if rows else np.zeros((0, *shape), dtype=dtype)
    return np.concatenate(gather_in_rank_order(mine, info))


def broadcast_buffers(model: nn.Module, info: DistInfo) -> None:
    """Give every rank rank 0's buffers (BatchNorm's running statistics). DDP sends rank 0's before each
    forward, but each rank's last training forward of an epoch updates its own copy (without SyncBN,
    i.e. on the CPU), so without this the ranks would validate, and rank 0 would save, different models."""
    if info.world_size > 1:
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 of a state_dict (names, dtypes, shapes and bytes), e.g. a model's or a checkpoint's "model"."""
    digest = hashlib.sha256()
    for name, tensor in state.items():
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def record_weights(model: nn.Module, epoch: int, info: DistInfo) -> None:
    """With CITYPIPE_RANK_DIGESTS set, append this rank's weights digest after `epoch` (a test's probe)."""
    folder = os.environ.get(DIGEST_VARIABLE)
    if folder:
        path = Path(folder) / f"rank{info.rank}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            handle.write(f"{epoch} {state_digest(model.state_dict())}\n")
