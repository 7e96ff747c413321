"""Run a model over evaluation frames: predictions at full resolution, scores on the device."""
from __future__ import annotations

from typing import Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from citypipe.errors import CitypipeError
from citypipe.evaluation.confusion import ConfusionMatrix
from citypipe.evaluation.inference import InferenceConfig, predict
from citypipe.training.device import Runtime


def iter_predictions(model: nn.Module, loader: DataLoader, runtime: Runtime, config: InferenceConfig,
                     num_classes: int, desc: str = "predict", show_progress: bool = True) -> Iterator[tuple[dict, torch.Tensor]]:
    """Yields (batch, (N, H, W) uint8 trainId predictions on the device)."""
    model.eval()
    for batch in tqdm(loader, desc=desc, unit="batch", disable=None if show_progress else True,
                      leave=False):  # None: only on a TTY (clean `dvc queue logs`)
        images = batch["image"].to(runtime.device, non_blocking=True)
        if runtime.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        yield batch, predict(model, images, config, num_classes, runtime.autocast())


def evaluate(model: nn.Module, loader: DataLoader, runtime: Runtime, config: InferenceConfig, num_classes: int,
             show_progress: bool = True) -> ConfusionMatrix:
    """Confusion matrix and instance statistics over the loader, all-reduced across DDP ranks."""
    cm = ConfusionMatrix(runtime.device, num_classes)
    for batch, prediction in iter_predictions(model, loader, runtime, config, num_classes, "evaluate", show_progress):
        label = batch["label"].to(runtime.device, non_blocking=True)
        if label.shape != prediction.shape:
            raise CitypipeError(f"{batch['frame_id'][0]}: prediction size {tuple(prediction.shape[1:])} "
                                f"differs from label size {tuple(label.shape[1:])}")
        cm.update(label, prediction)
        instances = batch["instances"].to(runtime.device, non_blocking=True)
        for i in range(prediction.shape[0]):
            cm.update_instances(instances[i], prediction[i])
    cm.all_reduce()
    return cm
