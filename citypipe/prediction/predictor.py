"""A model ready to predict, and the one loop that runs it over evaluation frames.

evaluate, visualize, export-submission, in-training validation and `citypipe infer` all predict
through `Predictor`, so "find frames -> load model -> DataLoader(EvalFrames) -> predictions" is
written once.
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
from citypipe.models.deeplab import ModelConfig
from citypipe.params import EvaluateParams, ModelParams
from citypipe.prediction.inference import InferenceConfig, predict
from citypipe.runtime import Runtime


@dataclass(frozen=True)
class Predictor:
    model: nn.Module
    runtime: Runtime
    inference: InferenceConfig
    amp: bool  # autocast as runtime says; False scores in fp32 (the official numbers' precision)

    @classmethod
    def from_checkpoint(cls, checkpoint: Path, model: ModelParams, evaluate: EvaluateParams,
                        runtime: Runtime) -> Predictor:
        """The checkpoint's model (its architecture checked against params), predicting as `evaluate` says."""
        loaded = load_model(checkpoint, ModelConfig.from_params(model), runtime.device, runtime.channels_last)
        return cls(loaded, runtime, InferenceConfig.from_params(evaluate), evaluate.amp)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) uint8 images on the device -> (N, H, W) uint8 trainIds."""
        self.model.eval()
        if self.runtime.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        autocast = self.runtime.autocast() if self.amp else contextlib.nullcontext()
        return predict(self.model, images, self.inference, NUM_CLASSES, autocast)

    def frames(self, loader: DataLoader, desc: str, show_progress: bool = True) -> Iterator[tuple[dict, torch.Tensor]]:
        """Yields (batch, (N, H, W) uint8 trainId predictions on the device)."""
        for batch in tqdm(loader, desc=desc, unit="batch", disable=None if show_progress else True, leave=False):
            yield batch, self.predict(batch["image"].to(self.runtime.device, non_blocking=True))


def frame_loader(samples: list[Sample], cache: Path | None, batch_size: int, workers: int, runtime: Runtime) -> DataLoader:
    """Full-resolution frames in order; with labels from the trainId cache unless `cache` is None."""
    dataset = EvalFrames(samples, cache, with_labels=cache is not None)
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, pin_memory=runtime.device.type == "cuda",
                      collate_fn=collate_frames)
