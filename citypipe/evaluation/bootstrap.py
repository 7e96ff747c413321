"""Percentile bootstrap confidence intervals for mIoU and pixel accuracy over images.

Each resample draws N images with replacement and scores their *summed* confusion matrix, as the
evaluation does for the whole split, with the same functions (citypipe/evaluation/scores.py).

Vectorised: only the per-image diagonal, row sums and column sums enter the scores, so a
resample is a (N,) vector of draw counts and all resamples are one (R, N) @ (N, 3K) product. The
product is in float64, exact for counts below 2**53 (so the result does not depend on BLAS's
summation order): 1000 resamples of 500 images take a few milliseconds.
"""
from __future__ import annotations

import numpy as np

from citypipe.evaluation.scores import (
    class_iou_from_counts,
    mean_of_defined,
    pixel_accuracy_from_counts,
)

METRICS = ("miou", "pixel_acc")


def _scores(tp: np.ndarray, gt: np.ndarray, pred: np.ndarray, metric: str) -> np.ndarray:
    """Per-row metric from (R, K) summed true positives, ground-truth and prediction counts, computed
    by the same functions as eval.json's headline numbers."""
    if metric == "pixel_acc":
        return pixel_accuracy_from_counts(tp, gt)
    return mean_of_defined(class_iou_from_counts(tp, gt, pred))


def metric_from_confusion(confusion: np.ndarray, metric: str) -> float:
    """The metric of one (K, K) gt x pred confusion matrix."""
    mat = np.asarray(confusion, dtype=np.float64)
    return float(_scores(np.diag(mat)[None], mat.sum(1)[None], mat.sum(0)[None], metric)[0])


def bootstrap_distribution(per_image_confusion: np.ndarray, metric: str, resamples: int, seed: int) -> np.ndarray:
    """(resamples,) metric values, one per resample of the images (with replacement)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    conf = np.asarray(per_image_confusion)
    if conf.ndim != 3 or conf.shape[1] != conf.shape[2] or conf.shape[0] == 0:
        raise ValueError(f"per_image_confusion must be (N, K, K) with N >= 1, got {conf.shape}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    n, k = conf.shape[0], conf.shape[1]
    conf = conf.astype(np.float64)
    # per image: [tp | gt (row sums) | pred (column sums)], (N, 3K)
    parts = np.concatenate([np.diagonal(conf, axis1=1, axis2=2), conf.sum(2), conf.sum(1)], axis=1)
    if parts.size and parts.max() * n >= 2**53:
        raise ValueError("pixel counts too large for exact float64 sums")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(resamples, n))
    flat = (draws + n * np.arange(resamples)[:, None]).ravel()
    counts = np.bincount(flat, minlength=resamples * n).reshape(resamples, n).astype(np.float64)  # draws per image
    summed = counts @ parts  # (R, 3K), exact integers
    return _scores(summed[:, :k], summed[:, k:2 * k], summed[:, 2 * k:], metric)


def bootstrap_interval(per_image_confusion: np.ndarray, metric: str, resamples: int, seed: int,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of `metric` ("miou" | "pixel_acc") at confidence `level`.

    per_image_confusion: (N, K, K) integer counts, gt x pred, one matrix per image. Resamples whose
    metric is undefined (no evaluated pixels) are left out; (nan, nan) when none is defined.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    values = bootstrap_distribution(per_image_confusion, metric, resamples, seed)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)
