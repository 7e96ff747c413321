"""Scoring: the confusion matrix of a model over labelled frames, and the evaluate stage's work."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from citypipe.atomic import write_json, write_text
from citypipe.data import layout
from citypipe.errors import CitypipeError
from citypipe.evaluation.confusion import ConfusionMatrix
from citypipe.evaluation.scores import compute_scores
from citypipe.labels import class_names
from citypipe.params import DataParams, DeviceParams, EvaluateParams, ModelParams
from citypipe.prediction.predictor import Predictor, frame_loader
from citypipe.runtime import runtime_for


@dataclass(frozen=True)
class EvaluatePaths:
    cache: Path  # prepare-labels' trainId cache
    checkpoint: Path
    metrics: Path  # metrics/eval.json
    plots: Path  # class_iou.csv, confusion_matrix.csv


def evaluate(predictor: Predictor, loader: DataLoader, show_progress: bool = True) -> ConfusionMatrix:
    """Confusion matrix and instance statistics over the loader, all-reduced across DDP ranks."""
    runtime = predictor.runtime
    cm = ConfusionMatrix(runtime.device)
    for batch, prediction in predictor.frames(loader, "evaluate", show_progress):
        label = batch["label"].to(runtime.device, non_blocking=True)
        if label.shape != prediction.shape:
            raise CitypipeError(f"{batch['frame_id'][0]}: prediction size {tuple(prediction.shape[1:])} "
                                f"differs from label size {tuple(label.shape[1:])}")
        cm.update(label, prediction)
        instances = batch["instances"].to(runtime.device, non_blocking=True)
        for i in range(prediction.shape[0]):
            cm.update_instances(instances[i], prediction[i])
    cm.all_reduce()
    return cm


def class_iou_csv(class_iou: dict[str, float]) -> str:
    rows = ["class,iou"] + [f"{name},{'' if v != v else f'{v:.6f}'}" for name, v in class_iou.items()]
    return "\n".join(rows) + "\n"


def confusion_csv(mat: np.ndarray) -> str:
    """(19, 19) pixel counts, rows = ground truth, columns = prediction, with class names."""
    names = class_names()
    rows = ["class," + ",".join(names)] + [f"{name}," + ",".join(str(int(v)) for v in row) for name, row in zip(names, mat)]
    return "\n".join(rows) + "\n"


def evaluate_checkpoint(data: DataParams, model: ModelParams, evaluate_params: EvaluateParams, device: DeviceParams,
                        paths: EvaluatePaths) -> dict:
    """The evaluate stage: score the checkpoint on `evaluate.split`; write metrics and the CSVs behind the plots."""
    split = evaluate_params.split
    samples = layout.find_samples(data.root, split, data.cities)
    if not any(s.label_ids.is_file() for s in samples) or split == "test":
        raise CitypipeError(f"evaluate.split: {split} has no labels to score against (use val)")
    runtime = runtime_for(device)
    predictor = Predictor.from_checkpoint(paths.checkpoint, model, evaluate_params, runtime)
    loader = frame_loader(samples, paths.cache, evaluate_params.batch_size, evaluate_params.workers, runtime)
    cm = evaluate(predictor, loader)
    scores = compute_scores(cm)
    scores["num_images"] = len(samples)
    write_json(paths.metrics, scores)
    write_text(paths.plots / "class_iou.csv", class_iou_csv(scores["class_iou"]))
    write_text(paths.plots / "confusion_matrix.csv", confusion_csv(cm.mat.cpu().numpy()))
    return scores
