"""IoU, means and pixel accuracy from counts, in numpy alone (no torch): the one implementation that
eval.json's headline numbers, the bootstrap's resamples, per-image scores and `citypipe compare`'s
paired intervals share."""
from __future__ import annotations

import numpy as np


def iou_from_sums(intersection: np.ndarray, union: np.ndarray) -> np.ndarray:
    """(..., K) summed intersections and unions -> (..., K) ratios, NaN where the union is 0 (the
    official NaN: a class absent from both sides). Every IoU-like score of the package goes through it."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / np.where(union > 0, union, 1), np.nan)


def class_iou_from_counts(tp: np.ndarray, gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """(..., K) true positives, ground-truth and prediction counts -> (..., K) IoU. Shared by the
    headline scores and the bootstrap's resamples."""
    return iou_from_sums(tp, gt + pred - tp)


def mean_of_defined(values: np.ndarray) -> np.ndarray:
    """(..., K) -> (...): the mean of the non-NaN values, NaN where there is none.

    Summed class by class, in order, as cityscapesscripts' getScoreAverage does: a pairwise sum
    (numpy's nanmean) can differ from it in the last bit.
    """
    values = np.asarray(values, dtype=np.float64)
    total = np.zeros(values.shape[:-1])
    count = np.zeros(values.shape[:-1])
    for k in range(values.shape[-1]):
        defined = ~np.isnan(values[..., k])
        total = total + np.where(defined, values[..., k], 0.0)
        count = count + defined
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)


def pixel_accuracy_from_counts(tp: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(..., K) counts -> (...) correct / evaluated pixels, NaN where nothing was evaluated."""
    total = gt.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, tp.sum(axis=-1) / np.where(total > 0, total, 1), np.nan)
