"""The visualize stage's work: panels and overlays of val frames, panels of the frames with the lowest
mIoU (read from evaluate's metrics/per_image.csv, so no score is computed twice), and the confusion-matrix figure.

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
    per_image: Path  # evaluate's per_image.csv: each frame's scores, for the worst-frame panels
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


def read_per_image_scores(path: Path) -> list[dict[str, str]]:
    """evaluate's per_image.csv -> its rows (frame_id, city, pixel_acc, miou, boundary_miou, per-class IoU)."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        raise CitypipeError(f"{path}: not found (run the evaluate stage first)") from None
    if rows and not {"frame_id", "miou", "pixel_acc", "boundary_miou"} <= set(rows[0]):
        raise CitypipeError(f"{path}: not evaluate's per-image CSV (rerun the evaluate stage)")
    return rows


def worst_frames(rows: list[dict[str, str]], k: int) -> list[dict[str, str]]:
    """The k rows of lowest mIoU (ties: the file's order); frames with no scored pixel (empty mIoU) are skipped."""
    try:
        scored = [r for r in rows if r["miou"] != ""]
        return sorted(scored, key=lambda r: float(r["miou"]))[:k]
    except ValueError:
        raise CitypipeError("per_image.csv: a miou that is not a number (rerun the evaluate stage)") from None


def _score_title(rank: int, row: dict[str, str]) -> str:
    def text(key: str) -> str:
        return f"{float(row[key]):.3f}" if row[key] else "-"

    return (f"worst #{rank}: {row['frame_id']}   mIoU {text('miou')}   boundary mIoU {text('boundary_miou')}"
            f"   pixel acc {text('pixel_acc')}")


def visualize_checkpoint(data: DataParams, inference: InferenceParams, split: str, visualize: VisualizeParams,
                         device: DeviceParams, paths: VisualizePaths) -> int:
    """Panels and overlays for the chosen frames of `split` (the evaluated one), worst-frame panels, and the
    confusion-matrix figure; returns the number of frames drawn."""
    split_samples = layout.find_samples(data.root, split, data.cities)
    samples = choose_samples(split_samples, visualize.num_samples, visualize.seed, visualize.ids)
    worst = worst_frames(read_per_image_scores(paths.per_image), visualize.worst_frames) if visualize.worst_frames else []
    worst_rank = {row["frame_id"]: (rank, row) for rank, row in enumerate(worst, 1)}
    chosen = {s.frame_id for s in samples}
    missing = sorted(set(worst_rank) - {s.frame_id for s in split_samples})
    if missing:
        raise CitypipeError(f"{paths.per_image}: frame {missing[0]} is not in split {split} (rerun evaluate)")
    drawn = [s for s in split_samples if s.frame_id in chosen or s.frame_id in worst_rank]  # one prediction each
    runtime = runtime_for(device)
    predictor = Predictor.from_checkpoint(checkpoint_file(paths.checkpoints, inference), inference, runtime)
    loader = frame_loader(drawn, paths.cache, 1, 0, runtime)
    with atomic_dir(paths.samples) as tmp:
        for batch, prediction in predictor.frames(loader, "visualize"):
            image = batch["image"][0].permute(1, 2, 0).numpy()  # (H, W, 3)
            label, predicted = batch["label"][0].numpy(), prediction[0].cpu().numpy()
            fid = batch["frame_id"][0]
            if fid in chosen:
                panel_figure(image, label, predicted, fid, tmp / f"{fid}_panel.png")
                overlay_figure(image, predicted, visualize.alpha, fid, tmp / f"{fid}_overlay.png")
            if fid in worst_rank:
                rank, row = worst_rank[fid]
                panel_figure(image, label, predicted, _score_title(rank, row), tmp / f"worst{rank}_{fid}_panel.png")
    confusion_figure(read_confusion_csv(paths.confusion), paths.figures / "confusion_matrix.png")
    return len(drawn)
