"""The robustness stage's work: mIoU of a checkpoint on val frames, clean and under each (corruption, severity)
set, through the same Predictor as evaluate; metrics/robustness.json and the per-severity curves."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Subset

from citypipe.atomic import write_json, write_text
from citypipe.corruptions.corrupt import CORRUPTIONS
from citypipe.data import layout
from citypipe.data.dataset import EvalFrames
from citypipe.distributed import current, init_distributed, shard_batches
from citypipe.errors import CitypipeError
from citypipe.evaluation.confusion import ConfusionMatrix
from citypipe.evaluation.scores import compute_scores
from citypipe.params import DataParams, DeviceParams, InferenceParams, RobustnessParams
from citypipe.prediction.predictor import Predictor, checkpoint_file
from citypipe.robustness.dataset import CLEAN, CorruptedFrames, spread_frames
from citypipe.runtime import resolve_device, runtime_for

FAMILIES = ("blur", "noise", "digital", "weather")
HEADLINE = ("miou_clean", "miou_corrupted", "ratio")  # metrics/robustness.json, DVC's metric


@dataclass(frozen=True)
class RobustnessPaths:
    cache: Path  # prepare-labels' trainId cache
    checkpoints: Path  # the train stage's folder: best.pt or last.pt as inference.checkpoint says
    metrics: Path  # metrics/robustness.json
    curves: Path  # plots/robustness/miou_by_severity.csv
    corruptions: Path  # metrics/robustness_corruptions.json: the whole summary, every corruption and severity


def corruption_sets(robustness: RobustnessParams) -> list[tuple[str, int]]:
    """CLEAN, then every (corruption, severity) of params, families in Kamann & Rother's order."""
    ordered = sorted(robustness.corruptions, key=lambda c: (FAMILIES.index(CORRUPTIONS[c][0]), list(CORRUPTIONS).index(c)))
    return [CLEAN] + [(c, s) for c in ordered for s in sorted(robustness.severities_of(c))]


def score_sets(predictor: Predictor, loader: DataLoader, num_sets: int, show_progress: bool = True) -> list[float]:
    """mIoU per set (the official definition, evaluation.scores) over the loader's frames, summed over DDP ranks."""
    runtime = predictor.runtime
    matrices = [ConfusionMatrix(runtime.device) for _ in range(num_sets)]
    for batch, prediction in predictor.frames(loader, "robustness", show_progress):
        label = batch["label"].to(runtime.device, non_blocking=True)  # (N, H, W) uint8
        for set_index, image_label, image_prediction in zip(batch["set"].tolist(), label, prediction):
            matrices[set_index].update(image_label, image_prediction)
    if current().world_size > 1:  # one all-reduce of every set's pixel counts (integers: any order, the same sums)
        stacked = torch.stack([cm.mat for cm in matrices])
        dist.all_reduce(stacked)
        for cm, mat in zip(matrices, stacked):
            cm.mat.copy_(mat)
    return [compute_scores(cm)["miou"] for cm in matrices]


def summary(sets: list[tuple[str, int]], miou: list[float], num_frames: int) -> dict:
    """robustness.json: clean mIoU, the mean over corrupted sets and its ratio to clean, then per corruption its
    mIoU per severity, mean and ratio (Kamann & Rother's table averages each corruption over its severities)."""
    clean, corrupted = miou[0], dict(zip(sets[1:], miou[1:]))
    mean = sum(corrupted.values()) / len(corrupted)
    per_corruption = {}
    for name in dict.fromkeys(c for c, _ in corrupted):
        values = {str(s): v for (c, s), v in corrupted.items() if c == name}
        average = sum(values.values()) / len(values)
        per_corruption[name] = {"family": CORRUPTIONS[name][0], "miou": values, "mean_miou": average,
                                "ratio": average / clean if clean else float("nan")}
    return {"miou_clean": clean, "miou_corrupted": mean, "ratio": mean / clean if clean else float("nan"),
            "num_frames": num_frames, "num_sets": len(corrupted), "corruptions": per_corruption}


def curves_csv(scores: dict) -> str:
    """One row per (corruption, severity), severity 0 = the clean mIoU, so every curve starts from clean."""
    rows = ["corruption,family,severity,miou"]
    for name, entry in scores["corruptions"].items():
        points = [("0", scores["miou_clean"]), *entry["miou"].items()]
        rows += [f"{name},{entry['family']},{s},{v:.6f}" for s, v in points]
    return "\n".join(rows) + "\n"


def robustness_checkpoint(data: DataParams, inference: InferenceParams, robustness: RobustnessParams,
                          device: DeviceParams, paths: RobustnessPaths) -> dict:
    """The robustness stage: score the checkpoint on val frames, clean and corrupted; write the metrics and curves."""
    samples = layout.find_samples(data.root, "val", data.cities)
    if not any(s.label_ids.is_file() for s in samples):
        raise CitypipeError(f"{data.root}: the val split has no labels to score robustness against")
    samples = [samples[i] for i in spread_frames(len(samples), robustness.frames)]
    dist_info = init_distributed(resolve_device(device.type).type)  # device.processes > 1: one rank of several
    runtime = runtime_for(device, dist_info.local_rank)
    predictor = Predictor.from_checkpoint(checkpoint_file(paths.checkpoints, inference), inference, runtime)
    sets = corruption_sets(robustness)
    dataset = CorruptedFrames(EvalFrames(samples, paths.cache), sets, robustness.seed)
    # this rank's items: whole batches of the one-process run, so every image is predicted in the same batch
    mine = Subset(dataset, shard_batches(range(len(dataset)), robustness.batch_size, dist_info))
    # its own generator, as frame_loader's: the workers' base seed must not draw from the global torch stream
    loader = DataLoader(mine, batch_size=robustness.batch_size, num_workers=robustness.workers,
                        pin_memory=runtime.device.type == "cuda", generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        scores = summary(sets, score_sets(predictor, loader, len(sets), dist_info.is_main), len(samples))
    if not dist_info.is_main:
        return scores  # the same scores on every rank; rank 0 alone writes
    # DVC's metrics keep the headline numbers; the per-corruption table would add 24 columns to `dvc metrics show`
    write_json(paths.metrics, {key: scores[key] for key in HEADLINE})
    write_json(paths.corruptions, scores)
    write_text(paths.curves, curves_csv(scores))
    return scores
