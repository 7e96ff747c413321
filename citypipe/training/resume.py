"""Which run a checkpoint belongs to, and whether training resumes it or starts fresh.

A run is identified by its params (data, model, train, validation, numerics, world size) and a fingerprint of
everything else that shapes its bits (package code, prepare-labels' outputs, backbone weights).
`last.pt` is resumed only by the same run; anything else starts fresh, which recreates a lost or
broken checkpoint exactly, since training is deterministic.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from torch import nn

from citypipe.data import layout
from citypipe.errors import CitypipeError
from citypipe.models.checkpoint import load_checkpoint
from citypipe.training.loop import TrainingSetup, TrainState


def run_files(root: str | Path, cities: tuple[str, ...], val_split: str) -> list[Path]:
    """The dataset files a run reads besides prepare-labels' cache: the train images, and the validation
    split's images and instanceIds (iIoU). Changed images must retrain, not resume a model of the old ones."""
    train, val = layout.find_samples(root, "train", cities), layout.find_samples(root, val_split, cities)
    return [s.image for s in train] + [p for s in val for p in (s.image, s.instance_ids)]


def _file_digest(path: Path) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()


def run_fingerprint(cache: Path, weight_files: tuple[str | Path, ...], data_files: list[Path] = (),
                    data_root: str | Path = "") -> str:
    """Hash of the package code, prepare-labels' outputs (the trainId cache included), the backbone
    weights file and the dataset files the run reads (`run_files`, named relative to `data_root`):
    `last` is resumed only by the same run. Bytes only (no times), so a checkpoint's bytes are the same
    on every machine. The data files are hashed in threads (hashlib releases the GIL): the real
    Cityscapes' train and val images are ~7 GB, read once per train start."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parents[1]
    for source in sorted(package.rglob("*.py")):
        digest.update(source.relative_to(package).as_posix().encode() + source.read_bytes())
    cache = Path(cache)
    for label in sorted(cache.rglob("*.png")):
        digest.update(label.relative_to(cache).as_posix().encode() + label.read_bytes())
    for path in weight_files:
        digest.update(Path(path).read_bytes() if path and Path(path).is_file() else b"-")
    with ThreadPoolExecutor(4) as pool:
        for path, file_digest in zip(data_files, pool.map(_file_digest, data_files)):
            digest.update(Path(os.path.relpath(path, data_root or ".")).as_posix().encode() + file_digest)
    return digest.hexdigest()


def training_checkpoint(setup: TrainingSetup, state: TrainState, run_params: dict) -> dict:
    """last.pt: everything a resumed run needs. Randomness needs no saved state: every epoch reseeds
    its streams from (seed, epoch)."""
    return {
        "model": setup.model.state_dict(), "optimizer": setup.optimizer.state_dict(),
        "scheduler": setup.scheduler.state_dict(), "scaler": setup.scaler.state_dict(),
        "epoch": state.epoch, "iteration": state.iteration, "history": state.history,
        "best_miou": state.best_miou, "best_epoch": state.best_epoch,
        "model_config": dataclasses.asdict(setup.model.config), "params": run_params,
    }


def inference_checkpoint(model: nn.Module, state: TrainState, run_params: dict) -> dict:
    """best.pt: what inference needs (weights, architecture, params), without the optimizer state."""
    return {"model": model.state_dict(), "model_config": dataclasses.asdict(model.config), "params": run_params,
            "epoch": state.epoch, "miou": state.best_miou}


def resume_state(checkpoints: Path, run_params: dict, setup: TrainingSetup) -> TrainState:
    """Continue from `last.pt` when this same run wrote it; otherwise start fresh.

    Training is deterministic, so starting fresh recreates exactly what a lost or broken checkpoint
    held: an unreadable `last.pt`, or a `best.pt` that is missing or not this run's best, restarts.
    """
    path = checkpoints / "last.pt"
    if not path.is_file():
        return fresh_start(checkpoints)
    try:
        checkpoint = load_checkpoint(path)
    except CitypipeError as error:
        print(f"train: {error}; starting from scratch")
        return fresh_start(checkpoints)
    if checkpoint.get("params") != run_params or checkpoint["model_config"] != dataclasses.asdict(setup.model.config):
        print(f"train: {path} was trained with other params; starting from scratch")
        return fresh_start(checkpoints)
    if checkpoint["best_epoch"] and not best_matches(checkpoints / "best.pt", checkpoint, run_params):
        print(f"train: {checkpoints / 'best.pt'} is missing or not this run's best (epoch {checkpoint['best_epoch']}); "
              "training from scratch recreates it exactly")
        return fresh_start(checkpoints)
    setup.model.load_state_dict(checkpoint["model"])
    setup.optimizer.load_state_dict(checkpoint["optimizer"])
    setup.scheduler.load_state_dict(checkpoint["scheduler"])
    setup.scaler.load_state_dict(checkpoint["scaler"])
    print(f"train: resuming from {path} after epoch {checkpoint['epoch']}")
    return TrainState(checkpoint["epoch"], checkpoint["iteration"], list(checkpoint["history"]),
                      checkpoint["best_miou"], checkpoint["best_epoch"])


def best_matches(path: Path, last: dict, run_params: dict) -> bool:
    """best.pt fits last.pt: it is the best epoch last.pt records, or the epoch after last.pt's, a new best
    saved just before a kill kept last.pt from following (best.pt is written first). Resuming then
    retrains that epoch, which (training being deterministic) is the best again and rewrites the same file."""
    try:
        best = load_checkpoint(path)
    except CitypipeError:
        return False
    return best.get("params") == run_params and best.get("epoch") in (last["best_epoch"], last["epoch"] + 1)


def fresh_start(checkpoints: Path) -> TrainState:
    """A new run. Another run's best.pt is not deleted here: it stays until this run writes its own best or
    ends without one (`finish_run`), so a run that fails early (a crash in its first validation) destroys
    nothing that worked."""
    return TrainState()


def finish_run(checkpoints: Path, state: TrainState, run_params: dict) -> None:
    """At a run's end: a best.pt that is not this run's best (another run's, when no epoch of this one
    was validated) must not stand in for it."""
    best = checkpoints / "best.pt"
    if best.exists() and not is_best_of_run(best, state.best_epoch, run_params):
        best.unlink()


def is_best_of_run(path: Path, best_epoch: int, run_params: dict) -> bool:
    try:
        best = load_checkpoint(path)
    except CitypipeError:
        return False
    return best.get("epoch") == best_epoch and best.get("params") == run_params
