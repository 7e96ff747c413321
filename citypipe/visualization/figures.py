"""Figures people would rather look at than read: confusion matrix, per-class IoU, training curves."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from citypipe.atomic import atomic_path  # noqa: E402
from citypipe.labels import class_names, train_id_colors  # noqa: E402


def save_figure(figure: plt.Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(figure)


def confusion_figure(mat: np.ndarray, path: Path) -> None:
    """Row-normalised 19x19 heatmap: row = ground truth, column = prediction."""
    rows = mat.sum(1, keepdims=True)
    norm = np.divide(mat, rows, out=np.zeros_like(mat, dtype=np.float64), where=rows > 0)
    names = class_names()
    figure, axes = plt.subplots(figsize=(9, 8))
    image = axes.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(names)), names, rotation=90)
    axes.set_yticks(range(len(names)), names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("ground truth")
    for i in range(len(names)):
        for j in range(len(names)):
            if norm[i, j] >= 0.01:
                axes.text(j, i, f"{norm[i, j]:.2f}"[1:] if norm[i, j] < 1 else "1", ha="center", va="center",
                          fontsize=6, color="white" if norm[i, j] > 0.5 else "black")
    figure.colorbar(image, fraction=0.046)
    axes.set_title("Confusion matrix (rows normalised)")
    save_figure(figure, path)


def class_iou_figure(class_iou: dict[str, float], path: Path, title: str = "Per-class IoU") -> None:
    names = list(class_iou)
    values = [0.0 if v is None or np.isnan(v) else v for v in class_iou.values()]
    colors = train_id_colors()[: len(names)] / 255.0
    figure, axes = plt.subplots(figsize=(7, 6))
    axes.barh(range(len(names)), values, color=colors, edgecolor="black", linewidth=0.4)
    axes.set_yticks(range(len(names)), names)
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel("IoU")
    for i, (name, raw) in enumerate(class_iou.items()):
        axes.text(min(values[i], 0.9) + 0.01, i, "n/a" if raw is None or np.isnan(raw) else f"{raw:.3f}",
                  va="center", fontsize=7)
    axes.set_title(title)
    save_figure(figure, path)


def training_curves_figure(loss_rows: list[dict], val_rows: list[dict], path: Path) -> None:
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.plot([r["epoch"] for r in loss_rows], [r["loss"] for r in loss_rows], marker="o")
    left.set_xlabel("epoch")
    left.set_ylabel("training loss")
    left.grid(alpha=0.3)
    right.plot([r["epoch"] for r in val_rows], [r["val_miou"] for r in val_rows], marker="o", label="val mIoU")
    right.plot([r["epoch"] for r in val_rows], [r["val_pixel_acc"] for r in val_rows], marker="s", label="val pixel acc")
    right.set_xlabel("epoch")
    right.set_ylim(0, 1)
    right.legend()
    right.grid(alpha=0.3)
    figure.suptitle("Training curves")
    save_figure(figure, path)
