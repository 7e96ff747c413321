"""Evaluation's per-image confusion update at 1024x2048: ours vs the official script vs numpy bincount.

The official row runs the pure-numpy branch of cityscapesscripts' evaluatePair (np.unique over an
encoded image, then a Python loop), on labelIds; ours and numpy run on trainIds. PNG decoding is
excluded everywhere. All three matrices are checked to be identical.

    python benchmarks/bench_confusion.py
"""
import numpy as np
import torch
from cityscapesscripts.helpers.labels import labels as cs_labels
from common import machine, median_seconds, table

from citypipe.evaluation.confusion import ConfusionMatrix
from citypipe.labels import label_id_to_train_id_lut, train_id_to_label_id_lut


def official_update(gt_label_ids: np.ndarray, pred_label_ids: np.ndarray) -> np.ndarray:
    """cityscapesscripts 2.3.0 evaluatePair, non-Cython branch (verbatim logic)."""
    eval_labels = [l.id for l in cs_labels if l.id >= 0]
    conf = np.zeros((max(eval_labels) + 1,) * 2, dtype=np.ulonglong)
    encoding_value = max(gt_label_ids.max(), pred_label_ids.max()).astype(np.int32) + 1
    encoded = (gt_label_ids.astype(np.int32) * encoding_value) + pred_label_ids
    values, cnt = np.unique(encoded, return_counts=True)
    for value, c in zip(values, cnt):
        pred_id = value % encoding_value
        gt_id = int((value - pred_id) / encoding_value)
        conf[gt_id][pred_id] += c
    return conf


def numpy_update(target: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    keep = target != 255
    return np.bincount(target[keep].astype(np.int64) * 19 + prediction[keep], minlength=361).reshape(19, 19)


def scene(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A blocky (1024, 2048) trainId ground truth with ignored regions and a 70%-right prediction."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 20, (32, 64))
    target = np.kron(coarse, np.ones((32, 32), np.int64)).astype(np.uint8)
    target[target == 19] = 255
    prediction = np.where(rng.random(target.shape) < 0.7, target, rng.integers(0, 19, target.shape)).astype(np.uint8)
    prediction[prediction == 255] = 0
    return target, prediction


def main() -> None:
    target, prediction = scene(0)
    to_label = train_id_to_label_id_lut()
    gt_label_ids = np.where(target == 255, 0, to_label[target]).astype(np.uint8)
    pred_label_ids = to_label[prediction]
    t_target, t_prediction = torch.from_numpy(target), torch.from_numpy(prediction)

    cm = ConfusionMatrix()
    cm.update(t_target, t_prediction)
    reference = numpy_update(target, prediction)
    official = official_update(gt_label_ids, pred_label_ids)
    lut = label_id_to_train_id_lut()
    evaluated = [l for l in range(34) if lut[l] != 255]
    official_train = np.zeros((19, 19), np.int64)
    official_train[np.ix_(lut[evaluated], lut[evaluated])] = official[np.ix_(evaluated, evaluated)]
    assert np.array_equal(cm.mat.numpy(), reference) and np.array_equal(reference, official_train), "matrices differ"

    t_official = median_seconds(lambda: official_update(gt_label_ids, pred_label_ids), repeats=5)
    t_numpy = median_seconds(lambda: numpy_update(target, prediction))
    t_ours = median_seconds(lambda: ConfusionMatrix.update(cm, t_target, t_prediction), repeats=15)
    rows = [("cityscapesscripts evaluatePair (numpy path)", f"{t_official * 1e3:.1f}", "1.0x"),
            ("numpy bincount with mask", f"{t_numpy * 1e3:.1f}", f"{t_official / t_numpy:.1f}x"),
            ("citypipe ConfusionMatrix.update (CPU)", f"{t_ours * 1e3:.2f}", f"{t_official / t_ours:.1f}x")]
    print(f"confusion update, one 1024x2048 pair; {machine()}; identical matrices: yes")
    print(table(rows, ("method", "ms / image", "speed-up vs official")))
    print(f"ours vs numpy bincount: {t_numpy / t_ours:.1f}x")


if __name__ == "__main__":
    main()
