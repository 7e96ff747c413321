"""Hostile inputs, one table for every entry point (the stage scripts and `citypipe infer`): each fails
with a one-line 'error: ...' naming the file, key or option, exit status 1, no traceback, and no
output written.

Each case builds its bad input in a Bench and returns a stage script's command line (run as DVC runs
it), a `citypipe` command line (a CliCall, run in-process by click's runner), or a function, run
through the stages' own error wrapper where a subprocess is too slow.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable
from unittest import mock

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image

from citypipe.cli import main as citypipe_main
from citypipe.command_line import reports_errors
from citypipe.data import layout
from citypipe.data.dataset import EvalFrames
from citypipe.models.checkpoint import load_model, save_checkpoint
from citypipe.models.deeplab import ModelConfig, build_model

REPO = Path(__file__).resolve().parents[1]
CONFIG = ModelConfig("deeplabv3plus", "resnet18", 16, False)


@dataclasses.dataclass(frozen=True)
class CliCall:
    """`citypipe ARGS`, with each (target, replacement) of `patches` patched in while it runs."""

    args: list[str]
    patches: tuple[tuple[str, Any], ...] = ()


class Bench:
    """A tmp folder with a copy of the fixture data, params pointing at it, and an empty out/."""

    def __init__(self, tmp_path: Path, synth_root: Path, cache: Path) -> None:
        self.tmp, self.synth_root, self.cache = tmp_path, synth_root, cache
        self.out = tmp_path / "out"
        self.out.mkdir()
        self._data: Path | None = None

    def data(self) -> Path:
        """A private copy of the CitySynth fixture, for cases that damage it."""
        if self._data is None:
            self._data = self.tmp / "data"
            shutil.copytree(self.synth_root, self._data)
        return self._data

    def params(self, **overrides: Any) -> str:
        raw = yaml.safe_load((REPO / "params.yaml").read_text())
        settings = {"data.root": str(self._data or self.synth_root), "device.type": "cpu", "prepare.workers": 1,
                    "inference.size": [64, 128], "inference.workers": 0, **overrides}
        for dotted, value in settings.items():
            section, key = dotted.split(".")
            raw[section][key] = value
        path = self.tmp / "params.yaml"
        path.write_text(yaml.safe_dump(raw))
        return str(path)

    def checkpoint(self, mutate: Callable[[dict], None] = lambda weights: None) -> Path:
        """An untrained checkpoint of the params' model (training is not what these cases test)."""
        weights = build_model(CONFIG).state_dict()
        mutate(weights)
        path = self.tmp / "ckpt" / "best.pt"
        save_checkpoint(path, {"model_config": dataclasses.asdict(CONFIG), "model": weights})
        return path

    def root(self, overrides: dict[str, Any]) -> str:
        """The data root a stage command is given, as dvc.yaml passes ${data.root}."""
        return str(overrides.get("data.root", self._data or self.synth_root))

    def stage(self, script: str, *args: str) -> list[str]:
        return [sys.executable, str(REPO / "stages" / script), *args]

    def prepare(self, **overrides: Any) -> list[str]:
        out = self.out
        return self.stage("prepare_labels.py", "--params", self.params(**overrides), "--data-root", self.root(overrides),
                          "--cache", str(out / "cache"),
                          "--class-table", str(out / "t.csv"), "--class-weights", str(out / "c.json"),
                          "--sample-weights", str(out / "s.json"))

    def evaluate(self, checkpoint: Path, **overrides: Any) -> list[str]:
        return self.stage("evaluate.py", "--params", self.params(**overrides), "--data-root", self.root(overrides),
                          "--checkpoints", str(checkpoint.parent),
                          "--cache", str(self.cache), "--metrics", str(self.out / "eval.json"),
                          "--class-metrics", str(self.out / "eval_classes.json"), "--plots", str(self.out / "plots"),
                          "--per-image", str(self.out / "per_image.csv"))

    def val_sample(self, index: int = 0) -> layout.Sample:
        return layout.find_samples(self.data(), "val")[index]

    def infer(self, *options: str, patches: tuple[tuple[str, Any], ...] = ()) -> CliCall:
        """`citypipe infer` of a 16x8 picture with an untrained checkpoint, writing into out/ unless the
        options say where (or name a --split instead of the picture)."""
        picture = self.tmp / "a.png"
        Image.new("RGB", (16, 8)).save(picture)
        source = [] if "--split" in options else [str(picture)]
        output = [] if "--output" in options else ["--output", str(self.out / "o.png")]
        return CliCall(["infer", *source, "--checkpoint", str(self.checkpoint()), "--device", "cpu", *output, *options],
                       patches)

    def folder(self) -> str:
        """An existing folder outside out/."""
        path = self.tmp / "folder"
        path.mkdir(exist_ok=True)
        return str(path)


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _copy_into_other_city(bench: Bench) -> list[str]:
    image = layout.find_samples(bench.data(), "train")[0].image  # aachen
    shutil.copy(image, image.parent.parent / "bochum" / image.name)
    return bench.prepare()


def _move_into_other_city(bench: Bench) -> list[str]:
    image = layout.find_samples(bench.data(), "train")[0].image
    shutil.move(image, image.parent.parent / "bochum" / image.name)
    return bench.prepare()


def _stray_name(bench: Bench) -> list[str]:
    shutil.copy(layout.find_samples(bench.data(), "train")[0].image,
                bench.data() / "leftImg8bit" / "train" / "aachen" / "foo_leftImg8bit.png")
    return bench.prepare()


def _truncated_image_in_a_worker(bench: Bench) -> list[str]:
    _truncate(bench.val_sample(1).image)
    return bench.evaluate(bench.checkpoint(), **{"inference.workers": 1})


def _truncated_cached_label(bench: Bench) -> Callable[[], Any]:
    cache = bench.tmp / "cache"
    shutil.copytree(bench.cache, cache)
    sample = bench.val_sample()
    _truncate(layout.cache_path(cache, "val", sample.frame_id))
    return lambda: EvalFrames([sample], cache)[0]


def _truncated_instance_ids(bench: Bench) -> Callable[[], Any]:
    sample = bench.val_sample()
    _truncate(sample.instance_ids)
    return lambda: EvalFrames([sample], bench.cache)[0]


def _zero_byte_checkpoint(bench: Bench) -> list[str]:
    path = bench.tmp / "best.pt"
    path.touch()
    return bench.evaluate(path)


def _wrong_shape_weights(bench: Bench) -> Callable[[], Any]:
    def narrow_classifier(weights: dict) -> None:
        key = [k for k in weights if k.endswith("weight")][-1]
        weights[key] = weights[key][:5]

    path = bench.checkpoint(narrow_classifier)
    return lambda: load_model(path, CONFIG, torch.device("cpu"))


def _raiser(make_error: Callable[[], BaseException]) -> Callable[[Bench], Callable[[], Any]]:
    def build(bench: Bench) -> Callable[[], Any]:
        def run() -> None:
            raise make_error()

        return run

    return build


def _cpu_allocation(bench: Bench) -> Callable[[], Any]:
    return lambda: torch.empty(2 ** 62, dtype=torch.uint8)  # beyond any address space: torch's allocator fails


def _numpy_allocation(bench: Bench) -> Callable[[], Any]:
    return lambda: np.empty(2 ** 62, dtype=np.uint8)


def _infer_out_of_memory(bench: Bench) -> CliCall:
    def out_of_memory(*args: Any, **kwargs: Any) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    return bench.infer(patches=(("citypipe.prediction.predictor.predict", out_of_memory),))


CASES = [  # every stage validates all of params.yaml; prepare-labels is the quickest to start
    ("lr-nan", lambda b: b.prepare(**{"train.lr": float("nan")}), "train.lr: expected a finite number, got nan"),
    ("lr-inf", lambda b: b.prepare(**{"train.lr": float("inf")}), "train.lr: expected a finite number, got inf"),
    ("stride-beyond-window", lambda b: b.prepare(**{
        "inference.mode": "slide", "inference.crop_size": [64, 128], "inference.stride": [32, 192]}),
     "inference.stride: expected a value <= inference.crop_size [64, 128] on each axis"),
    ("trimap-widths-unordered", lambda b: b.prepare(**{"evaluate.trimap_widths": [4, 2]}),
     "evaluate.trimap_widths: expected 1 to 16 increasing pixel widths >= 1, got [4, 2]"),
    ("boundary-ratio-zero", lambda b: b.prepare(**{"evaluate.boundary_dilation_ratio": 0}),
     "evaluate.boundary_dilation_ratio: expected a value in (0, 1), got 0.0"),
    ("worst-frames-negative", lambda b: b.prepare(**{"visualize.worst_frames": -1}),
     "visualize.worst_frames: expected a value >= 0, got -1"),
    ("frame-copied-into-other-city", _copy_into_other_city, "_leftImg8bit.png: duplicate frame id aachen_"),
    ("frame-moved-into-other-city", _move_into_other_city,
     "_leftImg8bit.png: frame of city 'aachen' in the folder of city 'bochum'"),
    ("non-cityscapes-name", _stray_name, "foo_leftImg8bit.png: not a Cityscapes file name"),
    ("truncated-image-in-a-worker", _truncated_image_in_a_worker,
     "_leftImg8bit.png: cannot read image (image file is truncated"),
    ("truncated-cached-label", _truncated_cached_label, "_gtFine_labelTrainIds.png: cannot read trainId label"),
    ("truncated-instance-ids", _truncated_instance_ids, "_gtFine_instanceIds.png: cannot read instanceIds"),
    ("zero-byte-checkpoint", _zero_byte_checkpoint, "best.pt: cannot load checkpoint (EOFError)"),
    ("wrong-shape-weights", _wrong_shape_weights,
     "best.pt: weight head.classifier.weight has shape [5, 256, 1, 1] in the checkpoint, the model expects [19, 256"),
    ("cuda-out-of-memory", _raiser(lambda: torch.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 79.10 GiB\nmore")),
     "out of memory (OutOfMemoryError allocating 20.00 GiB); use smaller images"),
    ("cpu-out-of-memory", _cpu_allocation, "out of memory (RuntimeError allocating 4611686018427387904 bytes)"),
    ("numpy-out-of-memory", _numpy_allocation, "out of memory (MemoryError allocating 4.00 EiB)"),
    # citypipe infer
    ("infer-alpha-5", lambda b: b.infer("--alpha", "5"),
     "Invalid value for '--alpha': 5.0 is not in the range 0<=x<=1"),
    ("infer-image-size-0", lambda b: b.infer("--size", "0", "0"),
     "Invalid value for '--size': 0 is not in the range x>=1"),
    ("infer-device-tpu", lambda b: b.infer("--device", "tpu"),
     "Invalid value for '--device': 'tpu' is not one of 'auto', 'cpu'"),
    ("infer-scales-not-numbers", lambda b: b.infer("--scales", "1,x"), "'--scales': '1,x' is not a list of numbers"),
    ("infer-scales-negative", lambda b: b.infer("--scales", "-1"), "'--scales': '-1': scales must be positive"),
    ("infer-crop-size-0", lambda b: b.infer("--crop-size", "0", "5"),
     "Invalid value for '--crop-size': 0 is not in the range x>=1"),
    ("infer-output-is-a-folder", lambda b: b.infer("--output", b.folder()),
     "folder: is a folder; give a file name for the overlay"),
    ("infer-split-without-data", lambda b: b.infer("--split", "val", "--data-root", str(b.tmp / "nowhere")),
     "--split val: no folder "),
    ("infer-stride-beyond-window", lambda b: b.infer("--mode", "slide", "--crop-size", "4", "8", "--stride", "4", "9"),
     "--stride 4 9: expected at most --crop-size 4 8 on each axis"),
    ("infer-out-of-memory", _infer_out_of_memory,
     "a.png: out of memory at 8x16 on cpu (use --size to run the network smaller)"),
]


@pytest.fixture
def bench(tmp_path, synth_root, prepared) -> Bench:
    return Bench(tmp_path, synth_root, prepared[0])


def _run(action: list[str] | CliCall | Callable[[], Any], cwd: Path, capsys) -> tuple[int, str]:
    """(exit status, stderr) of a stage script, of a citypipe command, or of a function wrapped like a
    stage's main."""
    if isinstance(action, CliCall):
        with contextlib.ExitStack() as patched:
            for target, replacement in action.patches:
                patched.enter_context(mock.patch(target, replacement))
            result = CliRunner().invoke(citypipe_main, action.args)
        return result.exit_code, result.stderr
    if isinstance(action, list):
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        done = subprocess.run(action, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
        return done.returncode, done.stderr
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        reports_errors(action)()
    return exit_.value.code, capsys.readouterr().err


SLOW_CASES = {"truncated-image-in-a-worker", "zero-byte-checkpoint"}  # stages in subprocesses: 22-24 s at load 17


@pytest.mark.parametrize("build, fragment", [
    pytest.param(build, fragment, id=case, marks=[pytest.mark.slow] * (case in SLOW_CASES)) for case, build, fragment in CASES])
def test_a_hostile_input_fails_in_one_line_naming_it(bench, capsys, build, fragment):
    code, stderr = _run(build(bench), bench.tmp, capsys)
    lines = [line for line in stderr.splitlines() if line.strip()]  # progress bars may come first
    assert code == 1, stderr
    assert lines and lines[-1].startswith("error: ") and fragment in lines[-1], stderr
    assert not any("error" in line.lower() or "Traceback" in line for line in lines[:-1]), stderr
    assert [p.name for p in bench.out.rglob("*")] == []  # not even a temporary file
