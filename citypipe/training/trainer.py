"""The train stage's work: assemble model, data, optimisation and outputs from the params sections, then fit."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from citypipe.data import layout
from citypipe.data.dataset import TrainCrops
from citypipe.data.sampling import EpochSampler
from citypipe.data.transforms import TrainTransform
from citypipe.distributed import (
    DistInfo,
    barrier,
    init_distributed,
    record_weights,
    shard_batches,
)
from citypipe.errors import CitypipeError
from citypipe.evaluation.evaluate import evaluate
from citypipe.evaluation.scores import compute_scores
from citypipe.labels import class_names
from citypipe.models.checkpoint import save_checkpoint
from citypipe.models.deeplab import ModelConfig, build_model
from citypipe.params import (
    DataParams,
    DeviceParams,
    ModelParams,
    TrainParams,
    section_dict,
)
from citypipe.prediction.inference import InferenceConfig
from citypipe.prediction.predictor import Predictor, frame_loader
from citypipe.runtime import Runtime, resolve_device, runtime_for
from citypipe.training.loop import LoopConfig, TrainingSetup, TrainState, fit
from citypipe.training.losses import SegmentationLoss
from citypipe.training.optim import build_optimizer
from citypipe.training.outputs import PROGRESS, TrainLog, eta_seconds, git_commit, params_hash, run_header, text_line
from citypipe.training.resume import (
    finish_run,
    inference_checkpoint,
    resume_state,
    run_files,
    run_fingerprint,
    training_checkpoint,
)
from citypipe.training.schedule import lr_factor


@dataclass(frozen=True)
class TrainPaths:
    cache: Path  # prepare-labels' trainId cache
    class_weights: Path
    sample_weights: Path
    checkpoints: Path  # last.pt (training state), best.pt (for inference)
    live: Path  # DVCLive's folder: metrics.json (rewritten each epoch) and plots/metrics/{train,val}/*.tsv
    log: Path  # plain-text log with timings, not tracked by DVC


def read_weights(path: Path, keys: list[str], what: str) -> torch.Tensor:
    try:
        weights = json.loads(Path(path).read_text())["weights"]
        return torch.tensor([float(weights[k]) for k in keys], dtype=torch.float32)
    except FileNotFoundError:
        raise CitypipeError(f"{path}: {what} not found (run prepare-labels first)") from None
    except json.JSONDecodeError as error:
        raise CitypipeError(f"{path}: {what} is not valid JSON ({error.msg}; rerun prepare-labels)") from None
    except (KeyError, ValueError, TypeError) as error:
        raise CitypipeError(f"{path}: {what} has no weight for {error} (rerun prepare-labels)") from None


class Loaders(NamedTuple):
    train: DataLoader
    sampler: EpochSampler  # the train loader's: set_epoch before each epoch
    val: DataLoader


def make_loaders(data: DataParams, train: TrainParams, paths: TrainPaths, runtime: Runtime,
                 dist_info: DistInfo) -> Loaders:
    samples = layout.find_samples(data.root, "train", data.cities)
    transform = TrainTransform(train.base_size, train.scale_range, train.crop_size, train.flip_prob, train.photometric,
                               train.cat_max_ratio, train.resize)
    weights = None
    if train.sampler == "weighted":
        weights = read_weights(paths.sample_weights, [s.frame_id for s in samples], "sample weights")
    sampler = EpochSampler(len(samples), weights, train.seed, dist_info.rank, dist_info.world_size)
    if len(sampler) < train.batch_size:
        raise CitypipeError(f"train.batch_size: {train.batch_size} is more than the {len(sampler)} training images per process")
    pin = runtime.device.type == "cuda"
    extra = {"persistent_workers": True, "prefetch_factor": 4} if train.workers > 0 else {}
    # Each loader gets its own generator: a DataLoader iterator otherwise draws its workers' base seed
    # from the global torch stream that dropout uses, once per epoch without persistent workers and
    # only in a process's first epoch with them, so results would depend on the worker count and on
    # where a run was resumed. (Augmentation draws come from the sampler's seeds, not from workers.)
    train_loader = DataLoader(TrainCrops(samples, paths.cache, transform), batch_size=train.batch_size, sampler=sampler,
                              num_workers=train.workers, pin_memory=pin, drop_last=True,
                              generator=torch.Generator().manual_seed(train.seed), **extra)
    # whole batches, contiguous: validation scores are the same for any number of processes
    val_samples = shard_batches(layout.find_samples(data.root, "val", data.cities), train.val_batch_size, dist_info)
    val_loader = frame_loader(val_samples, paths.cache, train.val_batch_size, train.workers, runtime)
    return Loaders(train_loader, sampler, val_loader)


def build_training_model(model_params: ModelParams, seed: int, runtime: Runtime, dist_info: DistInfo) -> nn.Module:
    torch.manual_seed(seed)  # initial weights: a function of the seed
    model = build_model(ModelConfig.from_params(model_params), model_params.pretrained, model_params.weights_file)
    if dist_info.world_size > 1 and runtime.device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # SyncBN works on GPU modules only
    model.to(runtime.device)
    return model.to(memory_format=torch.channels_last) if runtime.channels_last else model


def build_setup(model: nn.Module, train: TrainParams, device: DeviceParams, paths: TrainPaths, loaders: Loaders,
                runtime: Runtime, dist_info: DistInfo) -> TrainingSetup:
    train_loader, sampler = loaders.train, loaders.sampler
    class_weights = read_weights(paths.class_weights, class_names(), "class weights") if train.class_weights else None
    criterion = SegmentationLoss(class_weights, train.ohem, train.ohem_thresh, train.ohem_min_kept,
                                 train.aux_weight, train.loss_average).to(runtime.device)
    optimizer = build_optimizer(model, train.optimizer, train.lr, train.momentum, train.nesterov, train.weight_decay,
                                train.backbone_lr_mult, train.head_lr_mult)
    total_iters = train.epochs * (len(train_loader) // train.grad_accum_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(
        it, total_iters, train.schedule, train.poly_power, train.warmup_iters, train.warmup_ratio, train.min_lr / train.lr))
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype == torch.float16)
    train_model = model
    if dist_info.world_size > 1:
        train_model = DistributedDataParallel(model, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None)
    if device.compile and runtime.device.type == "cuda":
        train_model = torch.compile(train_model)
    return TrainingSetup(model, train_model, train_loader, sampler, optimizer, scheduler, criterion, scaler, runtime,
                         dist_info, LoopConfig(train.epochs, train.seed, train.grad_accum_steps, train.val_every))


def run_training(data: DataParams, model_params: ModelParams, train: TrainParams, device: DeviceParams,
                 paths: TrainPaths) -> TrainState:
    """The train stage: fit from scratch, or resume this run's `last.pt`; write checkpoints, series and metrics."""
    dist_info = init_distributed(resolve_device(device.type).type)
    runtime = runtime_for(device, dist_info.local_rank)
    model = build_training_model(model_params, train.seed, runtime, dist_info)
    loaders = make_loaders(data, train, paths, runtime, dist_info)
    setup = build_setup(model, train, device, paths, loaders, runtime, dist_info)
    validation = InferenceConfig.whole(train.val_size)  # whole val images, fp32: as peers validate while training
    run_params = {"data": section_dict(data), "model": section_dict(model_params), "train": section_dict(train),
                  "validation": section_dict(validation),
                  "numerics": {k: getattr(device, k) for k in ("type", "amp", "num_threads", "cpu_deterministic")},
                  # the processes' shards and global batch shape the weights: another count never resumes this run
                  "world_size": dist_info.world_size,
                  "fingerprint": run_fingerprint(paths.cache, (paths.class_weights, paths.sample_weights, model_params.weights_file),
                                                 run_files(data.root, data.cities, "val"), data.root)}
    state = resume_state(paths.checkpoints, run_params, setup)
    predictor = Predictor(model, runtime, validation, amp=False)
    # a resumed run rebuilds DVCLive's files from the checkpoint's history (DVC removed them before the stage)
    log = None
    if dist_info.is_main:
        resumed = state.history[-1]["epoch"] if state.history else None
        header = run_header(git_commit(Path.cwd()), params_hash(run_params), runtime.describe(dist_info.world_size),
                            resumed, datetime.now(timezone.utc))
        log = TrainLog(paths.live, paths.log, state.history, header)
    started, first_epoch = time.perf_counter(), state.epoch

    def validate() -> dict:
        return compute_scores(evaluate(predictor, loaders.val, dist_info.is_main))

    def on_epoch_end(state: TrainState, is_best: bool, timings: dict) -> None:
        record_weights(model, state.epoch, dist_info)
        if dist_info.is_main:
            if is_best:  # best first: a last.pt on disk never points to a best.pt that is not there yet
                save_checkpoint(paths.checkpoints / "best.pt", inference_checkpoint(model, state, run_params))
            save_checkpoint(paths.checkpoints / "last.pt", training_checkpoint(setup, state, run_params))
            elapsed = time.perf_counter() - started
            progress = dict(zip(PROGRESS, (elapsed, eta_seconds(elapsed, state.epoch - first_epoch,
                                                                setup.config.epochs - state.epoch))))
            row = {**state.history[-1], **timings, **progress}
            log.log_epoch(row)
            print(f"train: {text_line(row)}", flush=True)
        barrier(dist_info)

    state = fit(setup, state, validate, on_epoch_end)
    if dist_info.is_main:
        finish_run(paths.checkpoints, state, run_params)
        log.finish(state.best_miou, state.best_epoch)
    return state
