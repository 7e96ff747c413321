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
import errno
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

    def params_text(self, edit: Callable[[str], str], **overrides: Any) -> str:
        """Params as text, edited (for what a dict cannot hold: a key given twice)."""
        path = Path(self.params(**overrides))
        path.write_text(edit(path.read_text()))
        return str(path)

    def checkpoint(self, mutate: Callable[[dict], None] = lambda weights: None,
                   config: Callable[[dict], None] = lambda config: None) -> Path:
        """An untrained checkpoint of the params' model (training is not what these cases test)."""
        weights = build_model(CONFIG).state_dict()
        mutate(weights)
        model_config = dataclasses.asdict(CONFIG)
        config(model_config)
        path = self.tmp / "ckpt" / "best.pt"
        save_checkpoint(path, {"model_config": model_config, "model": weights})
        return path

    def root(self, overrides: dict[str, Any]) -> str:
        """The data root a stage command is given, as dvc.yaml passes ${data.root}."""
        return str(overrides.get("data.root", self._data or self.synth_root))

    def synthesize(self, params: str) -> list[str]:
        return self.stage("synthesize.py", "--params", params, "--out", str(self.out / "citysynth"))

    def profile(self, *args: str, params_text: str | None = None) -> CliCall:
        """`citypipe profile ARGS` on a copy of params.yaml (outside out/), optionally with other text."""
        path = self.tmp / "project" / "params.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(params_text if params_text is not None else (REPO / "params.yaml").read_text())
        return CliCall(["profile", *args, "--params", str(path)])

    def stage(self, script: str, *args: str) -> list[str]:
        return [sys.executable, str(REPO / "stages" / script), *args]

    def prepare(self, **overrides: Any) -> list[str]:
        return self.prepare_with(self.params(**overrides), overrides)

    def prepare_with(self, params: str, overrides: dict[str, Any] | None = None) -> list[str]:
        overrides = overrides or {}
        out = self.out
        return self.stage("prepare_labels.py", "--params", params, "--data-root", self.root(overrides),
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


def _duplicate_lr(text: str) -> str:
    return text.replace("  lr: 0.02\n", "  lr: 0.02\n  lr: 5.0\n")


def _escaping_city(bench: Bench) -> list[str]:
    return bench.synthesize(bench.params(**{"synthesize.train_cities": ["aachen", "../../x/escape"],
                                            "synthesize.height": 64, "synthesize.width": 64}))


def _label_pixel_bomb(bench: Bench) -> list[str]:
    """A labelIds PNG whose header declares 60000x60000 pixels: refused before any decoding."""
    import struct
    import zlib

    path = layout.find_samples(bench.data(), "train")[0].label_ids
    header = struct.pack(">II", 60000, 60000) + bytes((8, 0, 0, 0, 0))
    chunk = lambda tag, data: struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 60001 * 8))
                     + chunk(b"IEND", b""))
    return bench.prepare()


def _instance_ids_as(bench: Bench, convert: Callable[[Image.Image], Image.Image]) -> Callable[[], Any]:
    sample = bench.val_sample()
    with Image.open(sample.instance_ids) as image:
        converted = convert(image)
    converted.save(sample.instance_ids)
    return lambda: EvalFrames([sample], bench.cache)[0]


def _eight_bit_instance_ids(bench: Bench) -> Callable[[], Any]:
    """8 bits cannot hold ids like 26001: the frame's instances would silently drop out of iIoU."""
    return _instance_ids_as(bench, lambda image: Image.fromarray((np.asarray(image) % 256).astype(np.uint8)))


def _small_instance_ids(bench: Bench) -> Callable[[], Any]:
    return _instance_ids_as(bench, lambda image: image.resize((image.width // 2, image.height // 2), Image.NEAREST))


def _frames_of_two_sizes(bench: Bench) -> Callable[[], Any]:
    """One val frame (image, labels, cache) at another size: a batch of it and its neighbour cannot stack."""
    from citypipe.prediction.predictor import frame_loader
    from citypipe.prepare.label_cache import prepare_labels
    from citypipe.runtime import make_runtime

    sample = bench.val_sample(1)
    for path in (sample.image, sample.label_ids, sample.instance_ids):
        with Image.open(path) as image:
            image.resize((image.width // 2, image.height // 2), Image.NEAREST).save(path)
    cache = bench.tmp / "cache"
    prepare_labels(bench.data(), cache, (), workers=1)
    loader = frame_loader(layout.find_samples(bench.data(), "val"), cache, 2, 0, make_runtime("cpu", "none", False, False, 0))
    return lambda: list(loader)


def _model_config(change: Callable[[dict], None]) -> Callable[[Bench], Callable[[], Any]]:
    def build(bench: Bench) -> Callable[[], Any]:
        path = bench.checkpoint(config=change)
        return lambda: load_model(path, None, torch.device("cpu"))

    return build


def _write_fault(code: int, call: str) -> Callable[[Bench], Callable[[], Any]]:
    """The evaluate stage's first write (after the work) on a full, read-only or forbidden disk."""
    def build(bench: Bench) -> Callable[[], Any]:
        from citypipe.atomic import write_json

        def run() -> None:
            with mock.patch(f"os.{call}", side_effect=OSError(code, os.strerror(code))):
                write_json(bench.out / "eval.json", {"miou": 0.5})

        return run

    return build


def _unnamed_os_error(bench: Bench) -> Callable[[], Any]:
    def run() -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO), str(bench.tmp / "data" / "x.png"))

    return run


def _a_file(bench: Bench) -> Path:
    path = bench.tmp / "afile"
    path.write_text("a file where a folder belongs")
    return path


def _evaluate_output_under_a_file(bench: Bench) -> list[str]:
    command = bench.evaluate(bench.checkpoint())
    command[command.index("--metrics") + 1] = str(_a_file(bench) / "eval.json")
    return command


def _prepare_output_under_a_file(bench: Bench) -> list[str]:
    command = bench.prepare()
    command[command.index("--cache") + 1] = str(_a_file(bench) / "cache")
    return command


def _oom_in(code_file: str, keys: dict[str, str]) -> Callable[[Bench], Callable[[], Any]]:
    """An allocation failing inside `code_file` while a stage holds its outputs: the advice names the keys
    of the code where it failed (validation inside training: the evaluate keys)."""
    def build(bench: Bench) -> Callable[[], Any]:
        from citypipe.command_line import stage_outputs

        namespace: dict[str, Any] = {}
        exec(compile("def allocate():\n    raise MemoryError('Unable to allocate 8.00 GiB')\n", code_file, "exec"), namespace)

        def run() -> None:
            with mock.patch("citypipe.command_line.die_with_parent"), stage_outputs(bench.out / "x", memory=keys):
                namespace["allocate"]()

        return run

    return build


TRAIN_MEMORY = {"citypipe/prediction/": "train.val_size or train.val_batch_size (validation)",
                "": "train.crop_size or train.batch_size"}


def _infer_onto(bench: Bench, picture_name: str, *options: str) -> CliCall:
    picture = bench.tmp / picture_name
    Image.new("RGB", (16, 8)).save(picture)
    return CliCall(["infer", str(picture), "--checkpoint", str(bench.checkpoint()), "--device", "cpu", *options])


def _infer_onto_a_link(bench: Bench) -> CliCall:
    call = _infer_onto(bench, "photo.png")
    (bench.tmp / "link.png").symlink_to(bench.tmp / "photo.png")
    return dataclasses.replace(call, args=[*call.args, "--output", str(bench.tmp / "link.png")])


def _broken_profile(bench: Bench) -> CliCall:
    profiles = bench.tmp / "project" / "profiles"
    profiles.mkdir(parents=True)
    (profiles / "twice.yaml").write_text("train:\n  lr: 0.01\n  lr: 0.02\n")
    return bench.profile("twice")


def _compare_with_eval_json(content: dict) -> Callable[[Bench], CliCall]:
    """`citypipe compare` where `dvc exp show --json` reports the workspace's eval.json as `content`."""
    import json

    entries = [{"rev": "workspace", "name": None, "error": None, "experiments": None, "data": {
        "rev": "workspace", "params": {"params.yaml": {"data": {"train": {"lr": 0.02}}}},
        "metrics": {"metrics/eval.json": content}}}]
    show = json.dumps(entries)
    return lambda bench: CliCall(["compare", "--repo", str(bench.tmp)], (
        ("citypipe.compare._run", lambda command, cwd: show if "exp" in command else "0" * 40 + "\n"),))


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
     "Invalid value for '--size': 0 is not in the range 1<=x<=65536"),
    ("infer-device-tpu", lambda b: b.infer("--device", "tpu"),
     "Invalid value for '--device': 'tpu' is not one of 'auto', 'cpu'"),
    ("infer-scales-not-numbers", lambda b: b.infer("--scales", "1,x"), "'--scales': '1,x' is not a list of numbers"),
    ("infer-scales-negative", lambda b: b.infer("--scales", "-1"), "'--scales': '-1': scales must be positive"),
    ("infer-crop-size-0", lambda b: b.infer("--crop-size", "0", "5"),
     "Invalid value for '--crop-size': 0 is not in the range 1<=x<=65536"),
    ("infer-output-is-a-folder", lambda b: b.infer("--output", b.folder()),
     "folder: is a folder; give a file name for the overlay"),
    ("infer-split-without-data", lambda b: b.infer("--split", "val", "--data-root", str(b.tmp / "nowhere")),
     "--split val: no folder "),
    ("infer-stride-beyond-window", lambda b: b.infer("--mode", "slide", "--crop-size", "4", "8", "--stride", "4", "9"),
     "--stride 4 9: expected at most --crop-size 4 8 on each axis"),
    ("infer-out-of-memory", _infer_out_of_memory,
     "a.png: out of memory at 8x16 on cpu (use --size to run the network smaller)"),
    # issue 26: silent wrong results and lost work become one-line errors
    ("params-duplicate-key", lambda b: b.prepare_with(b.params_text(_duplicate_lr)),
     "params.yaml: not valid YAML (duplicate key 'lr' (first on line "),
    ("params-seed-negative", lambda b: b.prepare(**{"train.seed": -1}), "train.seed: expected a seed in [0, 2^63 - 1]"),
    ("params-seed-too-big", lambda b: b.prepare(**{"evaluate.bootstrap_seed": 2 ** 63}),
     "evaluate.bootstrap_seed: expected a seed in [0, 2^63 - 1], got 9223372036854775808"),
    ("params-scale-to-zero", lambda b: b.prepare(**{"inference.scales": [0.001]}),
     "inference.scales: expected scales that keep inference.size [64, 128] at least 1 pixel, got 0.001"),
    ("synthesize-city-escapes", _escaping_city, "synthesize.train_cities: expected a plain name"),
    ("misspelt-city", lambda b: b.prepare(**{"data.cities": ["aachen", "frankfurt", "frankfrut"]}),
     "data.cities: 'frankfrut' is a city of no split in "),
    ("city-filter-empties-a-split", lambda b: b.prepare(**{"data.cities": ["frankfurt"]}),
     "/train (the filter is per split: name at least one of aachen, bochum too)"),
    ("label-png-pixel-bomb", _label_pixel_bomb, "_gtFine_labelIds.png: labelIds PNG of 60000x60000 pixels is over the limit"),
    ("instance-ids-8-bit", _eight_bit_instance_ids, "_gtFine_instanceIds.png: instanceIds PNG has mode L, expected 16-bit"),
    ("instance-ids-other-size", _small_instance_ids, "_gtFine_instanceIds.png: instanceIds size 64x32 differs from its "
     "frame's 128x64"),
    ("frames-of-two-sizes", _frames_of_two_sizes, "frankfurt_000000_000076: frame size 64x32 differs from frankfurt_000000_000019's 128x64 in one batch"),
    ("checkpoint-extra-config-key", _model_config(lambda c: c.update(width=2)),
     "best.pt: checkpoint's model_config has an unknown key 'width'"),
    ("checkpoint-unknown-arch", _model_config(lambda c: c.update(arch="unet")),
     "best.pt: checkpoint's model_config has arch='unet', expected one of 'deeplabv3', 'deeplabv3plus'"),
    ("checkpoint-missing-config-key", _model_config(lambda c: c.pop("backbone")),
     "best.pt: checkpoint's model_config lacks 'backbone'"),
    ("evaluate-output-under-a-file", _evaluate_output_under_a_file,
     "afile/eval.json: cannot write (a part of the path is a file, not a folder"),
    ("prepare-output-under-a-file", _prepare_output_under_a_file, "afile/cache: cannot write (a part of the path is a file"),
    ("disk-full", _write_fault(errno.ENOSPC, "replace"), "out/eval.json: cannot write (the disk is full, ENOSPC)"),
    ("read-only", _write_fault(errno.EROFS, "open"), "out/eval.json: cannot write (the file system is read-only, EROFS)"),
    ("permission-denied", _write_fault(errno.EACCES, "open"), "out/eval.json: cannot write (permission denied, EACCES)"),
    ("unnamed-io-error", _unnamed_os_error, "data/x.png: input/output error (Input/output error, EIO)"),
    ("oom-in-training", _oom_in("/src/citypipe/training/loop.py", TRAIN_MEMORY),
     "out of memory (MemoryError allocating 8.00 GiB); lower train.crop_size or train.batch_size in params.yaml"),
    ("oom-in-validation", _oom_in("/src/citypipe/prediction/inference.py", TRAIN_MEMORY),
     "lower train.val_size or train.val_batch_size (validation) in params.yaml"),
    ("infer-onto-its-input", lambda b: _infer_onto(b, "photo.png", "--output", str(b.tmp / "photo.png")),
     "photo.png: is the input "),
    ("infer-mask-onto-its-input", lambda b: _infer_onto(b, "b_trainIds.png", "--output", str(b.tmp / "b.png"),
                                                       "--mask", "trainids"), "b_trainIds.png: is the input "),
    ("infer-onto-a-link-to-its-input", _infer_onto_a_link, "link.png: is the input "),
    ("infer-scale-to-zero", lambda b: b.infer("--scales", "0.01"),
     "--scales 0.01: "),
    ("infer-split-traversal", lambda b: b.infer("--split", "../.."), "--split: expected a plain name"),
    ("profile-name-is-a-path", lambda b: b.profile("../../etc/passwd"), "profile '../../etc/passwd': expected a plain name"),
    ("profile-data-root-empty", lambda b: b.profile("cityscapes", "--data-root", ""), "--data-root '': no such folder"),
    ("profile-data-root-missing", lambda b: b.profile("cityscapes", "--data-root", str(b.tmp / "nowhere")),
     "nowhere': no such folder"),
    ("profile-data-root-is-empty", lambda b: b.profile("cityscapes", "--data-root", b.folder()), "the folder is empty"),
    ("profile-params-duplicate-key", lambda b: b.profile("cityscapes", params_text=_duplicate_lr(
        (REPO / "params.yaml").read_text())), "params.yaml: not valid YAML (duplicate key 'lr'"),
    ("profile-params-syntax-error", lambda b: b.profile("cityscapes", params_text="train: [\n"),
     "params.yaml: not valid YAML (expected the node content"),
    ("profile-params-python-tag", lambda b: b.profile("cityscapes", params_text="train: !!python/object/apply:os.system [x]\n"),
     "params.yaml: not valid YAML (could not determine a constructor for the tag"),
    ("profile-params-not-sections", lambda b: b.profile("cityscapes", params_text="- 1\n- 2\n"),
     "params.yaml: expected sections of keys, like params.yaml"),
    ("compare-corrupt-eval-json", _compare_with_eval_json({"error": {"msg": "unable to read: 'metrics/eval.json', "
                                                                       "JSON file structure is corrupted"}}),
     "metrics/eval.json (workspace): unreadable metrics file (unable to read: 'metrics/eval.json', JSON file structure"),
    ("compare-eval-json-not-an-object", _compare_with_eval_json({"data": "text"}),
     "metrics/eval.json (workspace): expected a JSON object of metrics, got str"),
    ("profile-duplicate-key", _broken_profile, "twice.yaml: not valid YAML (duplicate key 'lr' (first on line 2) at line 3)"),
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
