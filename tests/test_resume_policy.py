"""Params or code changed -> training starts fresh; the same run resumes.

`resume_state` gets a last.pt (and best.pt) written by one run and is asked to continue another: any
difference in the run's params (train, data, model, validation, numerics, world size) or in its fingerprint (package
code, prepare-labels' outputs, backbone weights file) must give a fresh TrainState, leave the model as
initialised and remove the other run's best.pt; the same run must get its weights, optimizer and scheduler
back. `run_fingerprint` is checked to move with each of its inputs and with nothing else (no times).
The slow test at the end does the same through `run_training` twice.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib.util
import inspect
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import citypipe
from citypipe.models.deeplab import ModelConfig
from citypipe.training.loop import LoopConfig, TrainingSetup, TrainState
from citypipe.training.resume import (
    finish_run,
    inference_checkpoint,
    resume_state,
    training_checkpoint,
)
from citypipe.training.resume import run_fingerprint as _run_fingerprint


def run_fingerprint(paths, weights_file: str, function=None) -> str:
    """The trainer's call: the cache, the prepare-labels weight files and the backbone weights file."""
    return (function or _run_fingerprint)(paths.cache, (paths.class_weights, paths.sample_weights, weights_file))


class TinyDeepLab(nn.Module):
    """What resume_state reads of a model: its state dict and its `config` (the architecture)."""

    def __init__(self, seed: int, config: ModelConfig = ModelConfig("deeplabv3plus", "resnet18", 16, False)) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.config = config
        self.backbone = nn.Conv2d(3, 4, 3)
        self.head = nn.Conv2d(4, 19, 1)


def make_setup(seed: int, **config) -> TrainingSetup:
    model = TinyDeepLab(seed, **config)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1 - it / 100)
    return TrainingSetup(model, model, None, None, optimizer, scheduler, None, torch.amp.GradScaler("cpu", enabled=False),
                         None, None, LoopConfig(4, 0, 1, 1))


RUN_PARAMS = {"data": {"root": "data/citysynth", "cities": []}, "model": {"arch": "deeplabv3plus", "backbone": "resnet18"},
              "train": {"lr": 0.01, "epochs": 4, "seed": 0},
              "validation": {"mode": "whole", "size": [64, 128], "amp": False},
              "numerics": {"type": "cpu", "amp": "none", "num_threads": 2, "cpu_deterministic": True},
              "world_size": 1, "fingerprint": "0" * 64}


def changed(section: str, key: str, value) -> dict:
    params = copy.deepcopy(RUN_PARAMS)
    if key:
        params[section][key] = value
    else:
        params[section] = value
    return params


@pytest.fixture
def written_run(tmp_path) -> tuple[Path, TrainingSetup]:
    """checkpoints/last.pt after 2 of 4 epochs (with optimizer steps taken) and the best.pt of epoch 2."""
    setup = make_setup(seed=1)
    for _ in range(3):  # some steps, so the saved weights, momentum and schedule differ from a fresh setup's
        setup.model.head(setup.model.backbone(torch.randn(1, 3, 5, 5))).square().mean().backward()
        setup.optimizer.step()
        setup.scheduler.step()
    state = TrainState(epoch=2, iteration=3, history=[{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.5}],
                       best_miou=0.25, best_epoch=2)
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    from citypipe.models.checkpoint import save_checkpoint

    save_checkpoint(checkpoints / "best.pt", inference_checkpoint(setup.model, state, RUN_PARAMS))
    save_checkpoint(checkpoints / "last.pt", training_checkpoint(setup, state, RUN_PARAMS))
    return checkpoints, setup


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_the_same_run_resumes_weights_optimizer_and_schedule(written_run, capsys):
    checkpoints, saved = written_run
    setup = make_setup(seed=2)
    state = resume_state(checkpoints, copy.deepcopy(RUN_PARAMS), setup)
    assert (state.epoch, state.iteration, state.best_epoch, state.best_miou) == (2, 3, 2, 0.25)
    assert state.history == [{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.5}]
    assert same_weights(setup.model, saved.model)
    assert setup.scheduler.last_epoch == 3 and setup.optimizer.param_groups[0]["lr"] == saved.optimizer.param_groups[0]["lr"]
    momentum = [setup.optimizer.state[p]["momentum_buffer"] for p in setup.model.parameters()]
    assert all(torch.equal(m, saved.optimizer.state[p]["momentum_buffer"]) for m, p in zip(momentum, saved.model.parameters()))
    assert (checkpoints / "best.pt").is_file()
    assert "resuming from" in capsys.readouterr().out


@pytest.mark.parametrize("run_params", [
    changed("train", "lr", 0.02),
    changed("train", "epochs", 6),  # the schedule's length: a longer run is another run
    changed("data", "cities", ["aachen"]),
    changed("model", "backbone", "resnet34"),
    changed("validation", "size", [32, 64]),
    changed("numerics", "num_threads", 4),
    changed("world_size", "", 2),  # device.processes: other shards, another global batch
    changed("fingerprint", "", "1" + "0" * 63),  # code, labels, weights files changed
], ids=["train.lr", "train.epochs", "data.cities", "model.backbone", "validation.size", "numerics", "world_size",
        "fingerprint"])
def test_other_params_or_fingerprint_start_from_scratch(written_run, run_params, capsys):
    checkpoints, _ = written_run
    setup = make_setup(seed=2)
    initial = copy.deepcopy(setup.model)
    state = resume_state(checkpoints, run_params, setup)
    assert state == TrainState()
    assert same_weights(setup.model, initial) and setup.scheduler.last_epoch == 0 and not setup.optimizer.state
    # nothing is deleted before its replacement exists (issue 26): the other run's best.pt stays until this
    # run writes its own best, and finish_run drops it if this run ends without one
    assert (checkpoints / "best.pt").exists()
    finish_run(checkpoints, state, run_params)
    assert not (checkpoints / "best.pt").exists()  # the other run's best must not stand in for this one's
    assert "starting from scratch" in capsys.readouterr().out


def test_another_architecture_starts_from_scratch(written_run):
    checkpoints, _ = written_run
    setup = make_setup(seed=2, config=ModelConfig("deeplabv3", "resnet18", 16, False))
    assert resume_state(checkpoints, copy.deepcopy(RUN_PARAMS), setup) == TrainState()


def test_a_checkpoint_without_params_starts_from_scratch(written_run):
    checkpoints, _ = written_run
    last = torch.load(checkpoints / "last.pt", weights_only=True)
    del last["params"]
    torch.save(last, checkpoints / "last.pt")
    assert resume_state(checkpoints, copy.deepcopy(RUN_PARAMS), make_setup(seed=2)) == TrainState()


# ---- the fingerprint ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class FingerprintPaths:
    """The fields of TrainPaths that run_fingerprint reads."""

    cache: Path
    class_weights: Path
    sample_weights: Path


@pytest.fixture
def inputs(tmp_path) -> FingerprintPaths:
    cache = tmp_path / "trainids" / "train" / "aachen"
    cache.mkdir(parents=True)
    (cache / "a_trainIds.png").write_bytes(b"label a")
    (tmp_path / "class.json").write_text(json.dumps({"weights": {"road": 1.0}}))
    (tmp_path / "sample.json").write_text(json.dumps({"weights": {"a": 1.0}}))
    (tmp_path / "backbone.pth").write_bytes(b"imagenet weights")
    return FingerprintPaths(tmp_path / "trainids", tmp_path / "class.json", tmp_path / "sample.json")


def fingerprint_of_package_copy(folder: Path, paths: FingerprintPaths, edit=None) -> str:
    """run_fingerprint as defined in a copy of the package in `folder` (it hashes the package it lives in)."""
    package = Path(citypipe.__file__).resolve().parent
    copied = folder / "citypipe"
    shutil.copytree(package, copied, ignore=shutil.ignore_patterns("__pycache__"))
    if edit is not None:
        edit(copied)
    source = copied / Path(inspect.getsourcefile(_run_fingerprint)).resolve().relative_to(package)
    spec = importlib.util.spec_from_file_location("fingerprint_under_test", source)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the copy executes
    try:
        spec.loader.exec_module(module)
        return run_fingerprint(paths, "", module.run_fingerprint)
    finally:
        del sys.modules[spec.name]


def test_the_fingerprint_moves_with_the_package_code(tmp_path, inputs):
    plain = fingerprint_of_package_copy(tmp_path / "a", inputs)
    assert plain == run_fingerprint(inputs, "")  # the copy is the package: same hash
    edited = fingerprint_of_package_copy(
        tmp_path / "b", inputs, lambda p: (p / "training" / "losses.py").write_text((p / "training" / "losses.py").read_text() + "\n# x\n"))
    added = fingerprint_of_package_copy(tmp_path / "c", inputs, lambda p: (p / "data" / "new_module.py").write_text(""))
    assert len({plain, edited, added}) == 3


def test_the_fingerprint_moves_with_labels_and_weight_files_and_not_with_times(tmp_path, inputs):
    base = run_fingerprint(inputs, str(tmp_path / "backbone.pth"))
    assert base != run_fingerprint(inputs, "")  # a backbone weights file, or none
    label = inputs.cache / "train" / "aachen" / "a_trainIds.png"
    os.utime(label, (1, 1))  # a new modification time alone: same fingerprint (checkpoints hash the same anywhere)
    assert run_fingerprint(inputs, str(tmp_path / "backbone.pth")) == base
    prints = {base}
    for path, data in [(label, b"label b"), (inputs.class_weights, b'{"weights": {"road": 2.0}}'),
                       (inputs.sample_weights, b'{"weights": {"a": 2.0}}'), (tmp_path / "backbone.pth", b"other weights")]:
        original = path.read_bytes()
        path.write_bytes(data)
        prints.add(run_fingerprint(inputs, str(tmp_path / "backbone.pth")))
        path.write_bytes(original)
    assert len(prints) == 5
    (label.parent / "b_trainIds.png").write_bytes(b"label a")  # one more cached label
    assert run_fingerprint(inputs, str(tmp_path / "backbone.pth")) not in prints


# ---- the same through run_training ---------------------------------------------------------------------

@pytest.mark.slow
def test_run_training_restarts_for_other_params_and_resumes_its_own(synth_root, prepared, tmp_path, capsys):
    from conftest import small_training

    one_epoch = {"train.epochs": 1, "train.crop_size": [48, 96], "train.val_every": 1}
    small_training(synth_root, prepared, tmp_path, **one_epoch)()
    last = tmp_path / "checkpoints" / "last.pt"
    first = last.read_bytes()
    capsys.readouterr()
    # the same run, already finished: resumes after epoch 1 and trains nothing (last.pt untouched)
    state = small_training(synth_root, prepared, tmp_path, tmp_path / "weights", **one_epoch)()
    assert "resuming from" in capsys.readouterr().out and state.epoch == 1 and last.read_bytes() == first
    # another lr: the finished epoch is not trusted, epoch 1 is trained again with the new lr
    state = small_training(synth_root, prepared, tmp_path, tmp_path / "weights", **one_epoch, **{"train.lr": 0.03})()
    output = capsys.readouterr().out
    assert "trained with other params; starting from scratch" in output and "resuming" not in output
    assert state.epoch == 1 and last.read_bytes() != first
    assert torch.load(last, weights_only=True)["params"]["train"]["lr"] == 0.03
    # other class weights (a fingerprint input), same params: from scratch again
    weights = json.loads((tmp_path / "weights" / "class.json").read_text())
    weights["weights"] = {k: v * 2 for k, v in weights["weights"].items()}
    (tmp_path / "weights" / "class.json").write_text(json.dumps(weights))
    small_training(synth_root, prepared, tmp_path, tmp_path / "weights", **one_epoch, **{"train.lr": 0.03})()
    assert "starting from scratch" in capsys.readouterr().out
