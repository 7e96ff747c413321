"""Scoring: the confusion matrix of a model over labelled frames, and the evaluate stage's work."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from citypipe.atomic import write_json, write_text
from citypipe.data import layout
from citypipe.distributed import init_distributed, shard_batches
from citypipe.errors import CitypipeError
from citypipe.evaluation.analysis import FrameAnalysis
from citypipe.evaluation.bootstrap import METRICS, bootstrap_interval
from citypipe.evaluation.confusion import ConfusionMatrix
from citypipe.evaluation.per_image import analysis_headline, analysis_tables, write_analysis
from citypipe.evaluation.scores import compute_scores, split_headline
from citypipe.labels import class_names
from citypipe.params import DataParams, DeviceParams, EvaluateParams, InferenceParams
from citypipe.prediction.predictor import Predictor, checkpoint_file, frame_loader
from citypipe.runtime import resolve_device, runtime_for


@dataclass(frozen=True)
class EvaluatePaths:
    cache: Path  # prepare-labels' trainId cache
    checkpoints: Path  # the train stage's folder: best.pt / last.pt, as inference.checkpoint says
    metrics: Path  # metrics/eval.json: the headline numbers with their bootstrap intervals
    class_metrics: Path  # metrics/eval_classes.json: per-class and per-category IoU / iIoU, the secondary numbers
    plots: Path  # class_iou.csv, confusion_matrix.csv; trimap_miou.csv, instance_recall.csv, per_image_counts.npy
    per_image: Path  # metrics/per_image.csv: each frame's scores


def evaluate(predictor: Predictor, loader: DataLoader, show_progress: bool = True,
             per_image: bool = False, analysis: FrameAnalysis | None = None) -> ConfusionMatrix:
    """Confusion matrix and instance statistics over the loader, all-reduced across DDP ranks;
    with `per_image`, also each image's own matrix (`cm.per_update`, in loader order); with `analysis`,
    also its boundary, trimap, per-image and instance-size counts."""
    runtime = predictor.runtime
    cm = ConfusionMatrix(runtime.device, keep_per_image=per_image)
    for batch, prediction in predictor.frames(loader, "evaluate", show_progress):
        label = batch["label"].to(runtime.device, non_blocking=True)
        if label.shape != prediction.shape:
            raise CitypipeError(f"{batch['frame_id'][0]}: prediction size {tuple(prediction.shape[1:])} "
                                f"differs from label size {tuple(label.shape[1:])}")
        for image_label, image_prediction in (zip(label, prediction) if per_image else [(label, prediction)]):
            cm.update(image_label, image_prediction)
        instances = batch["instances"].to(runtime.device, non_blocking=True)
        for i in range(prediction.shape[0]):
            cm.update_instances(instances[i], prediction[i])
        if analysis is not None:
            analysis.update(prediction, label, instances, batch["frame_id"])
    cm.all_reduce()
    if analysis is not None:
        analysis.all_reduce()
    return cm


def class_iou_csv(class_iou: dict[str, float]) -> str:
    rows = ["class,iou"] + [f"{name},{'' if v != v else f'{v:.6f}'}" for name, v in class_iou.items()]
    return "\n".join(rows) + "\n"


def confusion_csv(mat: np.ndarray) -> str:
    """(19, 19) pixel counts, rows = ground truth, columns = prediction, with class names."""
    names = class_names()
    rows = ["class," + ",".join(names)] + [f"{name}," + ",".join(str(int(v)) for v in row) for name, row in zip(names, mat)]
    return "\n".join(rows) + "\n"


def bootstrap_intervals(per_image: np.ndarray, resamples: int, seed: int) -> dict[str, float]:
    """{"miou_ci95_low": ..., "miou_ci95_high": ..., "pixel_acc_ci95_low": ..., ...}: 95% percentile
    intervals over images, as flat numbers (`dvc metrics diff` and `dvc exp show` drop lists)."""
    intervals = {}
    for metric in METRICS:
        low, high = bootstrap_interval(per_image, metric, resamples, seed)
        intervals[f"{metric}_ci95_low"], intervals[f"{metric}_ci95_high"] = low, high
    return intervals


def evaluate_checkpoint(data: DataParams, inference: InferenceParams, evaluate_params: EvaluateParams,
                        device: DeviceParams, paths: EvaluatePaths) -> dict:
    """The evaluate stage: score the checkpoint on `evaluate.split`, predicting as `inference` says; write
    metrics and the CSVs behind the plots. Under torchrun (device.processes > 1) each rank predicts a
    contiguous run of whole batches and rank 0 writes files byte-identical to a one-process run's."""
    split = evaluate_params.split
    samples = layout.find_samples(data.root, split, data.cities)
    if not any(s.label_ids.is_file() for s in samples) or split == "test":
        raise CitypipeError(f"evaluate.split: {split} has no labels to score against (use val)")
    dist_info = init_distributed(resolve_device(device.type).type)  # device.processes > 1: one rank of several
    runtime = runtime_for(device, dist_info.local_rank)
    predictor = Predictor.from_checkpoint(checkpoint_file(paths.checkpoints, inference), inference, runtime)
    mine = shard_batches(samples, inference.batch_size, dist_info)
    loader = frame_loader(mine, paths.cache, inference.batch_size, inference.workers, runtime)
    analysis = FrameAnalysis(runtime.device, evaluate_params.boundary_dilation_ratio, evaluate_params.trimap_widths)
    cm = evaluate(predictor, loader, dist_info.is_main, per_image=True, analysis=analysis)  # all ranks: every frame's counts
    scores = compute_scores(cm)
    scores["num_images"] = len(samples)
    per_image = torch.stack(cm.per_update).cpu().numpy()  # (N, 19, 19)
    scores.update(bootstrap_intervals(per_image, evaluate_params.bootstrap_resamples, evaluate_params.bootstrap_seed))
    counts = analysis.result()  # boundary mIoU (eval.json), its interval and class tables (eval_classes.json)
    scores.update(analysis_headline(counts, evaluate_params.bootstrap_resamples, evaluate_params.bootstrap_seed))
    scores.update(analysis_tables(counts))
    if not dist_info.is_main:
        return scores  # the same scores on every rank; rank 0 alone writes
    headline, tables = split_headline(scores)
    write_json(paths.metrics, headline)
    write_json(paths.class_metrics, tables)
    write_text(paths.plots / "class_iou.csv", class_iou_csv(scores["class_iou"]))
    write_text(paths.plots / "confusion_matrix.csv", confusion_csv(cm.mat.cpu().numpy()))
    write_analysis(counts, paths.per_image, paths.plots)
    return scores
