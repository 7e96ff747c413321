"""A network ready to predict, and the one loop that runs it over evaluation frames.

evaluate, visualize, export-submission, in-training validation and `citypipe infer` all predict
through `Predictor`, so "find frames -> load the network -> DataLoader(EvalFrames) -> predictions"
is written once.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from citypipe.data.dataset import EvalFrames, collate_frames
from citypipe.data.layout import Sample
from citypipe.labels import NUM_CLASSES
from citypipe.models.checkpoint import load_model
from citypipe.params import InferenceParams
from citypipe.prediction.inference import InferenceConfig, predict
from citypipe.runtime import Runtime


def checkpoint_file(checkpoints: Path, inference: InferenceParams) -> Path:
    """checkpoints/best.pt or checkpoints/last.pt, as `inference.checkpoint` says."""
    return Path(checkpoints) / f"{inference.checkpoint}.pt"


@dataclass(frozen=True)
class Predictor:
    network: nn.Module
    runtime: Runtime
    config: InferenceConfig
    amp: bool  # autocast as runtime says; False scores in fp32 (the official numbers' precision)

    @classmethod
    def from_checkpoint(cls, checkpoint: Path, inference: InferenceParams, runtime: Runtime) -> Predictor:
        """The network stored in `checkpoint` (its own architecture), predicting as `inference` says."""
        network = load_model(checkpoint, None, runtime.device, runtime.channels_last)
        return cls(network, runtime, InferenceConfig.from_params(inference), inference.amp)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) uint8 images on the device -> (N, H, W) uint8 trainIds."""
        self.network.eval()
        if self.runtime.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        autocast = self.runtime.autocast() if self.amp else contextlib.nullcontext()
        return predict(self.network, images, self.config, NUM_CLASSES, autocast)

    def frames(self, loader: DataLoader, desc: str, show_progress: bool = True) -> Iterator[tuple[dict, torch.Tensor]]:
        """Yields (batch, (N, H, W) uint8 trainId predictions on the device)."""
        for batch in tqdm(loader, desc=desc, unit="batch", disable=None if show_progress else True, leave=False):
            yield batch, self.predict(batch["image"].to(self.runtime.device, non_blocking=True))


def frame_loader(samples: list[Sample], cache: Path | None, batch_size: int, workers: int, runtime: Runtime) -> DataLoader:
    """Full-resolution frames in order; with labels from the trainId cache unless `cache` is None.

    The loader has its own generator: without one, each iteration draws its workers' base seed from
    the global torch stream, which training's dropout also draws from (and frames need no randomness).
    """
    dataset = EvalFrames(samples, cache, with_labels=cache is not None)
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, pin_memory=runtime.device.type == "cuda",
                      generator=torch.Generator().manual_seed(0), collate_fn=collate_frames)
