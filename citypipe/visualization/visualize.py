"""The visualize stage's work: panels and overlays of val frames, and the confusion-matrix figure.

Every picture of the pipeline is drawn here; the per-class IoU bars and the training curves are
DVC's interactive plots of evaluate's and train's series, so they are not drawn twice as PNGs.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from citypipe.atomic import atomic_dir
from citypipe.data import layout
from citypipe.errors import CitypipeError
from citypipe.params import (
    DataParams,
    DeviceParams,
    InferenceParams,
    VisualizeParams,
)
from citypipe.prediction.predictor import Predictor, checkpoint_file, frame_loader
from citypipe.runtime import runtime_for
from citypipe.visualization.figures import confusion_figure
from citypipe.visualization.panels import overlay_figure, panel_figure


@dataclass(frozen=True)
class VisualizePaths:
    cache: Path  # prepare-labels' trainId cache
    checkpoints: Path  # best.pt / last.pt, as inference.checkpoint says
    confusion: Path  # evaluate's confusion_matrix.csv
    samples: Path  # folder of panels and overlays
    figures: Path  # folder of figures


def choose_samples(samples: list[layout.Sample], num_samples: int, seed: int, ids: tuple[str, ...]) -> list[layout.Sample]:
    if ids:
        by_id = {s.frame_id: s for s in samples}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise CitypipeError(f"visualize.ids: {missing[0]} is not a frame of the split")
        return [by_id[i] for i in ids]
    order = np.random.default_rng(seed).permutation(len(samples))[:num_samples]
    return [samples[i] for i in sorted(order)]


def read_confusion_csv(path: Path) -> np.ndarray:
    """evaluate's confusion_matrix.csv -> (19, 19) int64 counts."""
    try:
        with open(path) as handle:
            rows = list(csv.reader(handle))[1:]
        return np.array([[int(v) for v in row[1:]] for row in rows], dtype=np.int64)
    except FileNotFoundError:
        raise CitypipeError(f"{path}: not found (run the evaluate stage first)") from None
    except (ValueError, IndexError):
        raise CitypipeError(f"{path}: not a confusion matrix CSV (rerun the evaluate stage)") from None


def visualize_checkpoint(data: DataParams, inference: InferenceParams, split: str, visualize: VisualizeParams,
                         device: DeviceParams, paths: VisualizePaths) -> int:
    """Panels and overlays for the chosen frames of `split` (the evaluated one), and the confusion-matrix
    figure; returns the frame count."""
    samples = choose_samples(layout.find_samples(data.root, split, data.cities), visualize.num_samples,
                             visualize.seed, visualize.ids)
    runtime = runtime_for(device)
    predictor = Predictor.from_checkpoint(checkpoint_file(paths.checkpoints, inference), inference, runtime)
    loader = frame_loader(samples, paths.cache, 1, 0, runtime)
    with atomic_dir(paths.samples) as tmp:
        for batch, prediction in predictor.frames(loader, "visualize"):
            image = batch["image"][0].permute(1, 2, 0).numpy()  # (H, W, 3)
            predicted = prediction[0].cpu().numpy()
            fid = batch["frame_id"][0]
            panel_figure(image, batch["label"][0].numpy(), predicted, fid, tmp / f"{fid}_panel.png")
            overlay_figure(image, predicted, visualize.alpha, fid, tmp / f"{fid}_overlay.png")
    confusion_figure(read_confusion_csv(paths.confusion), paths.figures / "confusion_matrix.png")
    return len(samples)
