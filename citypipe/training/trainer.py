"""The train stage's work: assemble model, data, optimisation and outputs from the params sections, then fit."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from citypipe.data import layout
from citypipe.data.dataset import EvalFrames, TrainCrops
from citypipe.data.sampling import EpochSampler
from citypipe.data.transforms import TrainTransform
from citypipe.errors import CitypipeError
from citypipe.evaluation.evaluate import evaluate
from citypipe.evaluation.scores import compute_scores
from citypipe.labels import class_names
from citypipe.models.checkpoint import load_checkpoint, save_checkpoint
from citypipe.models.deeplab import ModelConfig, build_model
from citypipe.params import (
    DataParams,
    DeviceParams,
    EvaluateParams,
    ModelParams,
    TrainParams,
    section_dict,
)
from citypipe.prediction.inference import InferenceConfig
from citypipe.prediction.predictor import Predictor
from citypipe.runtime import Runtime, runtime_for
from citypipe.training.distributed import DistInfo, barrier, init_distributed
from citypipe.training.loop import LoopConfig, TrainingSetup, TrainState, fit
from citypipe.training.losses import SegmentationLoss
from citypipe.training.optim import build_optimizer
from citypipe.training.outputs import write_train_outputs
from citypipe.training.schedule import lr_factor


@dataclass(frozen=True)
class TrainPaths:
    cache: Path  # prepare-labels' trainId cache
    class_weights: Path
    sample_weights: Path
    checkpoints: Path  # last.pt, best.pt
    plots: Path  # loss.tsv, val.tsv
    metrics: Path  # metrics/train.json


def read_weights(path: Path, keys: list[str], what: str) -> torch.Tensor:
    try:
        weights = json.loads(Path(path).read_text())["weights"]
        return torch.tensor([float(weights[k]) for k in keys], dtype=torch.float32)
    except FileNotFoundError:
        raise CitypipeError(f"{path}: {what} not found (run prepare-labels first)") from None
    except (KeyError, ValueError, TypeError) as error:
        raise CitypipeError(f"{path}: {what} has no weight for {error} (rerun prepare-labels)") from None


def make_loaders(data: DataParams, train: TrainParams, evaluate_params: EvaluateParams, paths: TrainPaths,
                 runtime: Runtime, dist_info: DistInfo) -> tuple[DataLoader, EpochSampler, DataLoader]:
    samples = layout.find_samples(data.root, "train", data.cities)
    transform = TrainTransform(train.base_size, train.scale_range, train.crop_size, train.hflip, train.photometric,
                               train.cat_max_ratio)
    weights = None
    if train.sampler == "weighted":
        weights = read_weights(paths.sample_weights, [s.frame_id for s in samples], "sample weights")
    sampler = EpochSampler(len(samples), weights, train.seed, dist_info.rank, dist_info.world_size)
    if len(sampler) < train.batch_size:
        raise CitypipeError(f"train.batch_size: {train.batch_size} is more than the {len(sampler)} training images per process")
    pin = runtime.device.type == "cuda"
    extra = {"persistent_workers": True, "prefetch_factor": 4} if train.workers > 0 else {}
    train_loader = DataLoader(TrainCrops(samples, paths.cache, transform), batch_size=train.batch_size, sampler=sampler,
                              num_workers=train.workers, pin_memory=pin, drop_last=True, **extra)
    val_samples = layout.find_samples(data.root, evaluate_params.split, data.cities)[dist_info.rank::dist_info.world_size]
    val_loader = DataLoader(EvalFrames(val_samples, paths.cache), batch_size=evaluate_params.batch_size,
                            num_workers=evaluate_params.workers, pin_memory=pin)
    return train_loader, sampler, val_loader


def run_training(data: DataParams, model_params: ModelParams, train: TrainParams, evaluate_params: EvaluateParams,
                 device: DeviceParams, paths: TrainPaths) -> TrainState:
    dist_info = init_distributed("cuda" if device.type in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    runtime = runtime_for(device, dist_info.local_rank)
    torch.manual_seed(train.seed)  # initial weights: a function of the seed
    config = ModelConfig.from_params(model_params)
    model = build_model(config, model_params.pretrained, model_params.weights_file)
    if dist_info.world_size > 1 and runtime.device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # SyncBN works on GPU modules only
    model.to(runtime.device)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_loader, sampler, val_loader = make_loaders(data, train, evaluate_params, paths, runtime, dist_info)

    class_weights = read_weights(paths.class_weights, class_names(), "class weights") if train.class_weights else None
    criterion = SegmentationLoss(class_weights, train.ohem, train.ohem_thresh, train.ohem_min_kept,
                                 train.aux_weight).to(runtime.device)
    optimizer = build_optimizer(model, train.optimizer, train.lr, train.momentum, train.nesterov, train.weight_decay,
                                train.backbone_lr_mult, train.head_lr_mult)
    total_iters = train.epochs * (len(train_loader) // train.grad_accum_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(
        it, total_iters, train.schedule, train.poly_power, train.warmup_iters, train.warmup_ratio, train.min_lr / train.lr))
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype == torch.float16)

    run_params = {"data": section_dict(data), "model": section_dict(model_params), "train": section_dict(train),
                  "fingerprint": run_fingerprint(paths)}
    state = resume_state(paths.checkpoints / "last.pt", config, run_params, model, optimizer, scheduler, scaler)
    train_model = model
    if dist_info.world_size > 1:
        train_model = DistributedDataParallel(model, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)
    if device.compile and runtime.device.type == "cuda":
        train_model = torch.compile(train_model)

    predictor = Predictor(model, runtime, InferenceConfig.from_params(evaluate_params))

    def validate() -> dict:
        return compute_scores(evaluate(predictor, val_loader, dist_info.is_main))

    def on_epoch_end(state: TrainState, is_best: bool) -> None:
        if dist_info.is_main:
            checkpoint = make_checkpoint(model, optimizer, scheduler, scaler, state, config, run_params)
            save_checkpoint(paths.checkpoints / "last.pt", checkpoint)
            if is_best:
                save_checkpoint(paths.checkpoints / "best.pt", checkpoint)
            write_train_outputs(state.history, state.best_miou, state.best_epoch, paths.plots, paths.metrics)
        barrier(dist_info)

    setup = TrainingSetup(model, train_model, train_loader, sampler, optimizer, scheduler, criterion, scaler, runtime,
                          dist_info, LoopConfig(train.epochs, train.seed, train.grad_accum_steps, train.val_every))
    state = fit(setup, state, validate, on_epoch_end)
    if dist_info.is_main:  # also after resuming a finished run: DVC removed the old metrics and plots
        write_train_outputs(state.history, state.best_miou, state.best_epoch, paths.plots, paths.metrics)
    return state


def run_fingerprint(paths: TrainPaths) -> str:
    """Hash of the package code and prepare-labels' outputs: `last` is resumed only by the same run."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parents[1]
    for source in sorted(package.rglob("*.py")):
        digest.update(source.relative_to(package).as_posix().encode() + source.read_bytes())
    for path in (paths.class_weights, paths.sample_weights):
        digest.update(Path(path).read_bytes() if Path(path).is_file() else b"-")
    return digest.hexdigest()


def make_checkpoint(model, optimizer, scheduler, scaler, state: TrainState, config: ModelConfig, run_params: dict) -> dict:
    return {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(), "epoch": state.epoch, "iteration": state.iteration,
        "history": state.history, "best_miou": state.best_miou, "best_epoch": state.best_epoch,
        "rng": {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        "model_config": {**config.__dict__}, "params": run_params,
    }


def resume_state(path: Path, config: ModelConfig, run_params: dict, model, optimizer, scheduler, scaler) -> TrainState:
    """Continue from `last` when it was trained with the same params; otherwise start fresh."""
    if not path.is_file():
        return TrainState()
    checkpoint = load_checkpoint(path)
    if checkpoint.get("params") != run_params or checkpoint["model_config"] != config.__dict__:
        print(f"train: {path} was trained with other params; starting from scratch")
        return TrainState()
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    scaler.load_state_dict(checkpoint["scaler"])
    torch.set_rng_state(checkpoint["rng"]["torch"])
    if checkpoint["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])
    print(f"train: resuming from {path} after epoch {checkpoint['epoch']}")
    return TrainState(checkpoint["epoch"], checkpoint["iteration"], list(checkpoint["history"]),
                      checkpoint["best_miou"], checkpoint["best_epoch"])
