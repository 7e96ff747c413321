"""The bootstrap interval: degenerate case, coverage of the point estimate, seeding, and a naive loop."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from citypipe.evaluation.bootstrap import (
    bootstrap_distribution,
    bootstrap_interval,
    metric_from_confusion,
)
from citypipe.evaluation.confusion import ConfusionMatrix
from citypipe.evaluation.scores import compute_scores

K = 19


def per_image_confusions(n: int, seed: int, absent: tuple[int, ...] = (17,)) -> np.ndarray:
    """Realistic-ish (n, K, K) counts: mostly diagonal, image-to-image variation, some classes absent."""
    rng = np.random.default_rng(seed)
    conf = rng.poisson(rng.uniform(5, 60, size=(n, K, K))).astype(np.int64)
    conf[:, np.arange(K), np.arange(K)] += rng.integers(100, 3000, size=(n, K))
    conf[:, list(absent), :] = 0  # never in the ground truth...
    conf[:, :, list(absent)] = 0  # ...nor predicted: IoU NaN, left out of the mean
    return conf


def naive_interval(conf: np.ndarray, metric: str, resamples: int, seed: int, level: float) -> tuple[float, float]:
    """The obvious loop: same draws, summed matrix per resample, scored one class at a time."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, conf.shape[0], size=(resamples, conf.shape[0]))
    values = []
    for row in draws:
        mat = conf[row].sum(axis=0).astype(np.float64)
        if metric == "pixel_acc":
            values.append(np.trace(mat) / mat.sum())
            continue
        ious = []
        for c in range(K):
            tp, fp, fn = mat[c, c], mat[:, c].sum() - mat[c, c], mat[c].sum() - mat[c, c]
            if tp + fp + fn > 0:
                ious.append(tp / (tp + fp + fn))
        values.append(sum(ious) / len(ious))
    tail = (1 - level) / 2
    low, high = np.quantile(np.array(values), [tail, 1 - tail])
    return float(low), float(high)


def test_metric_matches_the_evaluation_scores():
    conf = per_image_confusions(4, seed=3).sum(axis=0)
    cm = ConfusionMatrix("cpu", K)
    cm.mat += torch.as_tensor(conf, dtype=cm.mat.dtype)
    scores = compute_scores(cm)
    assert metric_from_confusion(conf, "miou") == pytest.approx(scores["miou"], rel=1e-12)
    assert metric_from_confusion(conf, "pixel_acc") == pytest.approx(scores["pixel_acc"], rel=1e-12)
    assert math.isnan(scores["class_iou"][list(scores["class_iou"])[17]])


@pytest.mark.parametrize("metric", ["miou", "pixel_acc"])
def test_identical_images_give_a_zero_width_interval_at_the_metric(metric):
    one = per_image_confusions(1, seed=1)
    conf = np.repeat(one, 30, axis=0)
    low, high = bootstrap_interval(conf, metric, resamples=200, seed=0)
    assert low == high == metric_from_confusion(one[0], metric)


@pytest.mark.parametrize("metric", ["miou", "pixel_acc"])
def test_interval_contains_the_full_set_metric(metric):
    conf = per_image_confusions(60, seed=2)
    low, high = bootstrap_interval(conf, metric, resamples=1000, seed=5)
    full = metric_from_confusion(conf.sum(axis=0), metric)
    assert low < full < high
    assert high - low < 0.2


def test_same_seed_same_interval_other_seed_other_interval():
    conf = per_image_confusions(40, seed=4)
    first = bootstrap_interval(conf, "miou", resamples=300, seed=11)
    assert bootstrap_interval(conf, "miou", resamples=300, seed=11) == first
    assert bootstrap_interval(conf, "miou", resamples=300, seed=12) != first
    narrower = bootstrap_interval(conf, "miou", resamples=300, seed=11, level=0.5)
    assert first[0] <= narrower[0] <= narrower[1] <= first[1]


@pytest.mark.parametrize("metric", ["miou", "pixel_acc"])
def test_matches_a_naive_loop(metric):
    conf = per_image_confusions(12, seed=6, absent=(5, 17))
    conf[3, 9, :] = 0  # class 9 missing from one image's ground truth
    expected = naive_interval(conf, metric, resamples=150, seed=9, level=0.9)
    assert bootstrap_interval(conf, metric, resamples=150, seed=9, level=0.9) == pytest.approx(expected, rel=1e-12)


def test_undefined_resamples_are_left_out_and_bad_arguments_fail():
    conf = np.zeros((3, K, K), dtype=np.int64)
    assert all(math.isnan(v) for v in bootstrap_interval(conf, "miou", 10, 0))
    assert np.isnan(bootstrap_distribution(conf, "pixel_acc", 10, 0)).all()
    with pytest.raises(ValueError, match="metric"):
        bootstrap_interval(conf, "fwiou", 10, 0)
    with pytest.raises(ValueError, match="level"):
        bootstrap_interval(conf, "miou", 10, 0, level=1.0)
    with pytest.raises(ValueError, match=r"\(N, K, K\)"):
        bootstrap_interval(conf[0], "miou", 10, 0)

