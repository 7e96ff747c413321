"""Scores from a ConfusionMatrix, defined as cityscapesscripts' evalPixelLevelSemanticLabeling does.

IoU = tp / (tp + fp + fn) with fp counted over evaluated ground-truth rows only; a class whose
denominator is 0 (absent from prediction and ground truth) is NaN and left out of averages, as
in the official script. iIoU replaces tp and fn by instance-size-weighted sums.
"""
from __future__ import annotations

import numpy as np

from citypipe.evaluation.confusion import INSTANCE_CATEGORIES, ConfusionMatrix
from citypipe.evaluation.iou import (
    class_iou_from_counts,
    mean_of_defined,
    pixel_accuracy_from_counts,
)
from citypipe.labels import class_names, evaluated_labels


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else float("nan")


def _nanmean(values: list[float]) -> float:
    return float(mean_of_defined(np.array(values, dtype=np.float64))) if values else float("nan")


def category_members() -> dict[str, list[int]]:
    """Official category name -> trainIds of its evaluated classes, in the official order."""
    members: dict[str, list[int]] = {}
    for label in evaluated_labels():
        members.setdefault(label.category, []).append(label.trainId)
    return members


def compute_scores(cm: ConfusionMatrix) -> dict:
    mat = cm.mat.double().cpu().numpy()  # (19, 19) gt x pred
    inst_tp, inst_fn = cm.inst_tp.cpu().numpy(), cm.inst_fn.cpu().numpy()
    tp, gt, pred = np.diag(mat), mat.sum(1), mat.sum(0)
    names = class_names()
    iou_values = class_iou_from_counts(tp, gt, pred)
    class_iou = {n: float(iou_values[i]) for i, n in enumerate(names)}
    instance_classes = {i for ids in INSTANCE_CATEGORIES.values() for i in ids}
    class_iiou = {n: _ratio(inst_tp[i], inst_tp[i] + inst_fn[i] + pred[i] - tp[i])
                  for i, n in enumerate(names) if i in instance_classes}
    category_iou, category_iiou = {}, {}
    for category, ids in category_members().items():
        block = mat[np.ix_(ids, ids)].sum()
        fp = mat[:, ids].sum() - block
        category_iou[category] = _ratio(block, mat[ids].sum() + fp)
        if category in INSTANCE_CATEGORIES:
            c = list(INSTANCE_CATEGORIES).index(category)
            ctp, cfn = float(cm.cat_tp[c]), float(cm.cat_fn[c])
            category_iiou[category] = _ratio(ctp, ctp + cfn + fp)
    total = mat.sum()
    frequency = gt / total if total else np.zeros_like(gt)
    present = (frequency > 0) & ~np.isnan(iou_values)
    return {
        "pixel_acc": float(pixel_accuracy_from_counts(tp, gt)),
        "mean_acc": _nanmean([_ratio(tp[i], gt[i]) for i in range(len(names))]),
        "miou": float(mean_of_defined(iou_values)),
        "fwiou": float((frequency[present] * iou_values[present]).sum()),
        "iiou": _nanmean(list(class_iiou.values())),
        "category_miou": _nanmean(list(category_iou.values())),
        "category_iiou_mean": _nanmean(list(category_iiou.values())),
        "class_iou": class_iou,
        "class_iiou": class_iiou,
        "category_iou": category_iou,
        "category_iiou": category_iiou,
    }


# metrics/eval.json, DVC's metric: what `dvc metrics show` / `diff` and `dvc exp show` print, kept to the numbers a
# reader compares runs by, so those tables stay narrow (each key is a column of `dvc metrics show`)
HEADLINE = ("miou", "miou_ci95_low", "miou_ci95_high", "pixel_acc", "iiou", "boundary_miou", "num_images")


def split_headline(scores: dict) -> tuple[dict, dict]:
    """evaluate's scores -> (the HEADLINE numbers, for metrics/eval.json; the rest, for metrics/eval_classes.json:
    the per-class and per-category tables, mean class accuracy, fwIoU, and the other intervals)."""
    headline = {key: scores[key] for key in HEADLINE if key in scores}
    rest = {key: value for key, value in scores.items() if key not in headline}
    return headline, rest
