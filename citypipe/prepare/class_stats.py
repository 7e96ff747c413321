"""Class statistics of the train split and the weights derived from them (pure functions)."""
from __future__ import annotations

import numpy as np

from citypipe.labels import NUM_CLASSES


def class_pixels(counts: np.ndarray) -> np.ndarray:
    """(N, 20) per-image counts -> (19,) pixels per trainId."""
    return counts[:, :NUM_CLASSES].sum(0)


def class_images(counts: np.ndarray) -> np.ndarray:
    """(N, 20) per-image counts -> (19,) number of images that contain each trainId."""
    return (counts[:, :NUM_CLASSES] > 0).sum(0)


def class_weights(counts: np.ndarray, method: str, inverse_log_c: float) -> np.ndarray:
    """(19,) loss weights; classes absent from the train split get 0 (they never occur as targets).

    - none: all 1.
    - inverse_log (ENet, Paszke et al. 2016): w_c = 1 / ln(c + p_c), p_c = share of labelled pixels.
    - median_frequency (Eigen & Fergus 2015): w_c = median(f) / f_c, f_c = pixels of c / pixels of
      the images that contain c.
    """
    pixels = class_pixels(counts).astype(np.float64)
    present = pixels > 0
    if method == "none":
        return np.ones(NUM_CLASSES)
    if method == "inverse_log":
        share = pixels / max(1.0, pixels.sum())
        return np.where(present, 1.0 / np.log(inverse_log_c + share), 0.0)
    if method == "median_frequency":
        image_pixels = counts.sum(1).astype(np.float64)  # (N,) all pixels of each image
        contains = counts[:, :NUM_CLASSES] > 0  # (N, 19)
        frequency = pixels / np.maximum(1.0, (contains * image_pixels[:, None]).sum(0))
        median = np.median(frequency[present]) if present.any() else 1.0
        return np.where(present, median / np.where(present, frequency, 1.0), 0.0)
    raise ValueError(f"unknown class weighting {method!r}")


def sample_weights(counts: np.ndarray, method: str) -> np.ndarray:
    """(N,) per-image sampling weights with mean 1.

    rare_class: an image weighs as much as the rarest class it contains, where a class's rarity is
    N / (images containing it); images with rare classes are therefore drawn more often.
    """
    n = counts.shape[0]
    if method == "none":
        return np.ones(n)
    if method == "rare_class":
        images = class_images(counts)
        rarity = np.where(images > 0, n / np.maximum(images, 1), 0.0)  # (19,)
        contains = counts[:, :NUM_CLASSES] > 0
        weights = (contains * rarity[None]).max(1)
        weights = np.where(weights > 0, weights, 1.0)
        return weights / weights.mean()
    raise ValueError(f"unknown sample weighting {method!r}")
