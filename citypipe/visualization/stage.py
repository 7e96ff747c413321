"""The visualize stage's work: sample panels and overlays, training curves, per-class IoU."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from citypipe.atomic import atomic_dir, write_png
from citypipe.data import layout
from citypipe.data.dataset import EvalFrames
from citypipe.errors import CitypipeError
from citypipe.evaluation.inference import InferenceConfig
from citypipe.evaluation.run import iter_predictions
from citypipe.labels import NUM_CLASSES
from citypipe.models.checkpoint import load_model
from citypipe.models.deeplab import ModelConfig
from citypipe.training.device import Runtime
from citypipe.visualization.figures import class_iou_figure, training_curves_figure
from citypipe.visualization.panels import overlay, panel_figure


def choose_samples(samples: list[layout.Sample], num_samples: int, seed: int, ids: tuple[str, ...]) -> list[layout.Sample]:
    if ids:
        by_id = {s.frame_id: s for s in samples}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise CitypipeError(f"visualize.ids: {missing[0]} is not a frame of the split")
        return [by_id[i] for i in ids]
    order = np.random.default_rng(seed).permutation(len(samples))[:num_samples]
    return [samples[i] for i in sorted(order)]


def read_tsv(path: Path) -> list[dict]:
    with open(path) as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle, delimiter="\t")]


def run_visualize(root: str, cities: tuple[str, ...], split: str, cache: Path, checkpoint: Path, config: ModelConfig,
                  inference: InferenceConfig, runtime: Runtime, num_samples: int, seed: int, ids: tuple[str, ...],
                  alpha: float, train_plots: Path, eval_metrics: Path, out_dir: Path, figures_dir: Path) -> int:
    samples = choose_samples(layout.find_samples(root, split, cities), num_samples, seed, ids)
    model = load_model(checkpoint, config, runtime.device, runtime.channels_last)
    loader = DataLoader(EvalFrames(samples, cache), batch_size=1)
    with atomic_dir(out_dir) as tmp:
        for batch, prediction in iter_predictions(model, loader, runtime, inference, NUM_CLASSES, "visualize"):
            image = batch["image"][0].permute(1, 2, 0).numpy()  # (H, W, 3)
            predicted = prediction[0].cpu().numpy()
            fid = batch["frame_id"][0]
            panel_figure(image, batch["label"][0].numpy(), predicted, fid, tmp / f"{fid}_panel.png")
            write_png(tmp / f"{fid}_overlay.png", overlay(image, predicted, alpha))
    training_curves_figure(read_tsv(train_plots / "loss.tsv"), read_tsv(train_plots / "val.tsv"),
                           figures_dir / "training_curves.png")
    class_iou = json.loads(Path(eval_metrics).read_text())["class_iou"]
    class_iou_figure({k: (float("nan") if v is None else v) for k, v in class_iou.items()}, figures_dir / "class_iou.png")
    return len(samples)
