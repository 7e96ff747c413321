"""Per-image panels (image | ground truth | prediction | error map) and prediction overlays."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.patches import Patch

from citypipe.labels import IGNORE_INDEX, class_names, train_id_colors
from citypipe.visualization.figures import plt, save_figure

MAX_FIGURE_HEIGHT = 30.0  # inches of an overlay figure's image (10 wide): a tall image is drawn narrower instead


def colorize(train_ids: np.ndarray) -> np.ndarray:
    """(H, W) trainIds -> (H, W, 3) uint8 official colours (255 -> black)."""
    return train_id_colors()[train_ids]


def overlay(image: np.ndarray, train_ids: np.ndarray, alpha: float) -> np.ndarray:
    """(H, W, 3) uint8 image blended with the colourised (H, W) prediction."""
    return (image * (1 - alpha) + colorize(train_ids) * alpha).round().astype(np.uint8)


def error_map(image: np.ndarray, label: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """Dimmed image; wrong pixels red, correct pixels green-tinted, ignored pixels grey."""
    out = (image * 0.35).astype(np.uint8)
    wrong = (prediction != label) & (label != IGNORE_INDEX)
    right = (prediction == label) & (label != IGNORE_INDEX)
    out[wrong] = (230, 30, 30)
    out[right] = (out[right] * 0.6 + np.array([40, 160, 40]) * 0.4).astype(np.uint8)
    out[label == IGNORE_INDEX] = (128, 128, 128)
    return out


def class_legend(train_ids: np.ndarray) -> list[Patch]:
    """Legend patches for the classes present in (H, W) trainIds, in trainId order."""
    colours, names = train_id_colors(), class_names()
    present = np.unique(train_ids)
    return [Patch(color=colours[i] / 255, label=names[i]) for i in present if i < len(names)]


def overlay_figure(image: np.ndarray, train_ids: np.ndarray, alpha: float, title: str, path: Path) -> None:
    """The overlay at a readable size (10 inches wide, whatever the frame's pixels) with a legend of the
    predicted classes; `citypipe infer` writes the plain pixel-aligned `overlay` instead."""
    height, width = train_ids.shape
    # a tall image would ask for a figure of thousands of inches (1x4000 pixels: 40000 in, 100+ GiB)
    figure, axes = plt.subplots(figsize=(10, min(10 * height / width, MAX_FIGURE_HEIGHT) + 0.8))
    axes.imshow(overlay(image, train_ids, alpha), interpolation="nearest")
    axes.set_title(f"{title}: prediction over the image", fontsize=10)
    axes.axis("off")
    figure.legend(handles=class_legend(train_ids), loc="lower center", ncol=7, fontsize=8, frameon=False)
    figure.subplots_adjust(left=0.01, right=0.99, top=0.94, bottom=0.1)
    save_figure(figure, path)


def panel_figure(image: np.ndarray, label: np.ndarray, prediction: np.ndarray, title: str, path: Path) -> None:
    figure, axes = plt.subplots(2, 2, figsize=(12, 6.6))
    valid = label != IGNORE_INDEX
    accuracy = float((prediction[valid] == label[valid]).mean()) if valid.any() else float("nan")
    for ax, picture, name in zip(axes.ravel(), (image, colorize(label), colorize(prediction), error_map(image, label, prediction)),
                                 ("image", "ground truth", "prediction", f"errors (red; grey = ignored), pixel acc {accuracy:.3f}")):
        ax.imshow(picture)
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    colours = train_id_colors()
    handles = [Patch(color=colours[i] / 255, label=n) for i, n in enumerate(class_names())]
    figure.legend(handles=handles, loc="lower center", ncol=10, fontsize=7, frameon=False)
    figure.suptitle(title)
    figure.subplots_adjust(bottom=0.1, top=0.92, wspace=0.03, hspace=0.12)
    save_figure(figure, path)
