"""Figures people would rather look at than read: the confusion matrix; the saver every figure uses."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from citypipe.atomic import atomic_path  # noqa: E402
from citypipe.labels import class_names  # noqa: E402


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
