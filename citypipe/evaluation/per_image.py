"""AnalysisCounts -> scores, tables and files: eval.json's boundary mIoU, eval_classes.json's tables,
metrics/per_image.csv, the DVC plot series, and the per-image counts artifact that `citypipe compare`
and `visualize` read back (so neither predicts again).

The artifact's format is citypipe/evaluation/counts_file.py's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from citypipe.atomic import atomic_path, write_text
from citypipe.evaluation.analysis import AnalysisCounts
from citypipe.evaluation.bootstrap import (
    metric_from_confusion,
    percentile_interval,
    resample_counts,
    resampled_sums,
)
from citypipe.evaluation.confusion import INSTANCE_CATEGORIES
from citypipe.evaluation.counts_file import counts_array
from citypipe.evaluation.instances import SIZE_EDGES, SIZE_LABELS
from citypipe.evaluation.iou import iou_from_sums, mean_of_defined
from citypipe.labels import class_names


def class_iou_table(intersection: np.ndarray, union: np.ndarray) -> dict[str, float]:
    return dict(zip(class_names(), iou_from_sums(intersection.astype(np.float64), union.astype(np.float64)).tolist()))


def boundary_interval(counts: AnalysisCounts, resamples: int, seed: int) -> tuple[float, float]:
    """95% percentile bootstrap interval of boundary mIoU over frames (the draws eval.json's mIoU interval uses)."""
    draws = resample_counts(len(counts.frame_ids), resamples, seed)  # (R, N)
    inter, union = resampled_sums(draws, counts.boundary_intersection), resampled_sums(draws, counts.boundary_union)
    return percentile_interval(mean_of_defined(iou_from_sums(inter, union)))


def analysis_headline(counts: AnalysisCounts, resamples: int, seed: int) -> dict[str, float]:
    """eval.json's additions: boundary mIoU over all frames and its bootstrap interval."""
    iou = iou_from_sums(counts.boundary_intersection.sum(0).astype(np.float64), counts.boundary_union.sum(0))
    low, high = boundary_interval(counts, resamples, seed)
    return {"boundary_miou": float(mean_of_defined(iou)), "boundary_miou_ci95_low": low, "boundary_miou_ci95_high": high}


def analysis_tables(counts: AnalysisCounts) -> dict[str, dict]:
    """eval_classes.json's additions: per-class Boundary IoU, instance recall and instance counts by size bin."""
    names = class_names()
    total, found = counts.instances_total, counts.instances_found
    classes = sorted(c for ids in INSTANCE_CATEGORIES.values() for c in ids)  # the 8 classes with instances
    recall = {names[c]: dict(zip(SIZE_LABELS, iou_from_sums(found[c], total[c]).tolist())) for c in classes}
    recall["all"] = dict(zip(SIZE_LABELS, iou_from_sums(found.sum(0), total.sum(0)).tolist()))
    count = {names[c]: dict(zip(SIZE_LABELS, total[c].tolist())) for c in classes}
    count["all"] = dict(zip(SIZE_LABELS, total.sum(0).tolist()))
    return {"class_boundary_iou": class_iou_table(counts.boundary_intersection.sum(0), counts.boundary_union.sum(0)),
            "instance_recall": recall, "instance_count": count}


def _number(value: float) -> str:
    return "" if value != value else f"{value:.6f}"


def per_image_csv(counts: AnalysisCounts) -> str:
    """frame_id, city, pixel_acc, miou (over classes in the frame's ground truth or prediction), boundary_miou,
    then each class's IoU in the frame (empty where the class is in neither)."""
    names = class_names()
    rows = [",".join(["frame_id", "city", "pixel_acc", "miou", "boundary_miou", *names])]
    for i, frame_id in enumerate(counts.frame_ids):
        mat = counts.confusion[i].astype(np.float64)
        iou = iou_from_sums(np.diag(mat), mat.sum(1) + mat.sum(0) - np.diag(mat))
        boundary = mean_of_defined(iou_from_sums(counts.boundary_intersection[i].astype(np.float64), counts.boundary_union[i]))
        cells = [metric_from_confusion(mat, "pixel_acc"), metric_from_confusion(mat, "miou"), float(boundary), *iou]
        rows.append(",".join([frame_id, frame_id.split("_")[0], *(_number(v) for v in cells)]))
    return "\n".join(rows) + "\n"


def trimap_csv(counts: AnalysisCounts) -> str:
    """band_px, miou: mIoU of the pixels within band_px pixels of a ground-truth class boundary."""
    rows = ["band_px,miou"] + [f"{w},{_number(metric_from_confusion(m, 'miou'))}"
                               for w, m in zip(counts.trimap_widths, counts.trimap_confusion)]
    return "\n".join(rows) + "\n"


def instance_recall_csv(counts: AnalysisCounts) -> str:
    """size_bin, min_area_px (in a 1024x2048 frame), instances, found, recall: all instance classes together."""
    total, found = counts.instances_total.sum(0), counts.instances_found.sum(0)
    recall = iou_from_sums(found.astype(np.float64), total)
    rows = ["size_bin,min_area_px,instances,found,recall"] + [
        f"{label},{edge},{t},{f},{_number(r)}" for label, edge, t, f, r in zip(SIZE_LABELS, SIZE_EDGES, total, found, recall)]
    return "\n".join(rows) + "\n"


def write_analysis(counts: AnalysisCounts, per_image: Path, plots: Path) -> None:
    """metrics/per_image.csv, and in `plots`: trimap_miou.csv, instance_recall.csv, per_image_counts.npy."""
    write_text(per_image, per_image_csv(counts))
    write_text(plots / "trimap_miou.csv", trimap_csv(counts))
    write_text(plots / "instance_recall.csv", instance_recall_csv(counts))
    with atomic_path(plots / "per_image_counts.npy") as tmp, open(tmp, "wb") as handle:
        np.save(handle, counts_array(counts), allow_pickle=False)
