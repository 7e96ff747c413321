"""Paired bootstrap of the change between two experiments scored on the same frames.

Both experiments' per-image counts (per_image_counts.npy: confusion matrices and boundary intersections /
unions) are resampled with ONE draw of frame indices (bootstrap.resample_counts), so each resample
compares the two models on the same frames and the frame-to-frame variation both share cancels. Each
resample's scores come from the summed counts, exactly as bootstrap.py scores eval.json's intervals.
Identical experiments give a change of exactly 0 in every resample: a zero-width interval.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from citypipe.evaluation.bootstrap import (
    confusion_parts,
    percentile_interval,
    resample_counts,
    resampled_sums,
)
from citypipe.evaluation.iou import iou_from_sums, mean_of_defined


@dataclass(frozen=True)
class Change:
    """other - baseline: the change on all frames and its 95% paired bootstrap interval."""

    value: float
    low: float
    high: float

    @property
    def verdict(self) -> str:
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "within noise" if self.low == self.low else "undefined"


def aligned(base: np.ndarray, other: np.ndarray) -> np.ndarray:
    """`other`'s rows in `base`'s frame order; ValueError when the two were not scored on the same frames."""
    base_ids, other_ids = base["frame_id"].tolist(), other["frame_id"].tolist()
    if len(set(base_ids)) != len(base_ids) or sorted(base_ids) != sorted(other_ids):
        only = sorted(set(base_ids) ^ set(other_ids))
        raise ValueError(f"not scored on the same frames ({len(base_ids)} vs {len(other_ids)}"
                         + (f"; e.g. {only[0]} is in one only)" if only else "; repeated frame ids)"))
    position = {fid: i for i, fid in enumerate(other_ids)}
    return other[[position[fid] for fid in base_ids]]


def _class_iou(parts_sums: np.ndarray) -> np.ndarray:
    """(..., 3K) summed [tp | gt | pred] -> (..., K) IoU."""
    k = parts_sums.shape[-1] // 3
    tp, gt, pred = parts_sums[..., :k], parts_sums[..., k:2 * k], parts_sums[..., 2 * k:]
    return iou_from_sums(tp, gt + pred - tp)


def _scores(counts: np.ndarray, draws: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{name: (all-frames value (...), per-resample values (R, ...))} of class IoU, mIoU, class and mean boundary IoU."""
    parts = confusion_parts(counts["confusion"])  # (N, 3K)
    inter, union = counts["boundary_intersection"], counts["boundary_union"]
    iou = (_class_iou(parts.sum(0)), _class_iou(resampled_sums(draws, parts)))
    boundary = (iou_from_sums(inter.sum(0).astype(np.float64), union.sum(0)),
                iou_from_sums(resampled_sums(draws, inter), resampled_sums(draws, union)))
    return {"class_iou": iou, "miou": (mean_of_defined(iou[0]), mean_of_defined(iou[1])),
            "class_boundary_iou": boundary, "boundary_miou": (mean_of_defined(boundary[0]), mean_of_defined(boundary[1]))}


def paired_changes(base: np.ndarray, other: np.ndarray, resamples: int, seed: int,
                   class_names: list[str]) -> dict[str, Change | dict[str, Change]]:
    """{"miou": Change, "boundary_miou": Change, "class_iou": {class: Change}, "class_boundary_iou": {...}}
    of `other` against `base` (structured per-image arrays, see per_image.py)."""
    other = aligned(base, other)
    draws = resample_counts(len(base), resamples, seed)  # (R, N): the same frames for both
    a, b = _scores(base, draws), _scores(other, draws)
    changes: dict[str, Change | dict[str, Change]] = {}
    for key in ("miou", "boundary_miou"):
        changes[key] = Change(float(b[key][0] - a[key][0]), *percentile_interval(b[key][1] - a[key][1]))
    for key in ("class_iou", "class_boundary_iou"):
        delta = b[key][1] - a[key][1]  # (R, K)
        changes[key] = {name: Change(float(b[key][0][c] - a[key][0][c]), *percentile_interval(delta[:, c]))
                        for c, name in enumerate(class_names)}
    return changes
