"""Hostile inputs, second attack (issue 26): `citypipe infer --onnx`, the ONNX stages and their metadata,
`citypipe compare --class-metrics`, the robustness stage's outputs, the train log, params edge values,
`citypipe profile`, stage scripts' options and odd image files.

Three tables, each case cheap (an untrained checkpoint, a two-node ONNX graph, the fixture's 64x128 frames):
- ERRORS: a one-line 'error: ...' naming the file, key or option, exit status 1, no traceback, nothing
  written (and, where given, a check that no input was touched);
- USAGE: click's own usage error for a stage script's option (exit status 2), no traceback;
- CORRECT: odd but valid input that must simply work, with a check of what was made.

Stage scripts run in this process (StageCall) with the parent-death signal and the CPU pinning patched out,
which keeps a case at a few seconds; tests/test_hostile_inputs.py runs them as DVC does.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any, Callable
from unittest import mock

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from test_hostile_inputs import CONFIG, REPO, Bench, CliCall

from citypipe.cli import main as citypipe_main
from citypipe.command_line import reports_errors
from citypipe.deploy.runtime import MAX_SIDE, METADATA_KEY
from citypipe.errors import CitypipeError
from citypipe.params import MAX_SIDE as PARAMS_MAX_SIDE


@dataclasses.dataclass(frozen=True)
class StageCall:
    """stages/SCRIPT ARGS, run in this process; each (target, replacement) of `patches` patched in meanwhile."""

    script: str
    args: list[str]
    patches: tuple[tuple[str, Any], ...] = ()


def _stage_main(script: str):
    spec = importlib.util.spec_from_file_location(f"stage_{script.removesuffix('.py')}", REPO / "stages" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _run(action: CliCall | StageCall | Callable[[], Any], capsys) -> tuple[int, str, str]:
    """(exit status, stdout, stderr); an exception that escaped is a traceback in stderr."""
    if isinstance(action, (CliCall, StageCall)):
        command = citypipe_main if isinstance(action, CliCall) else _stage_main(action.script)
        with contextlib.ExitStack() as patched:
            patched.enter_context(mock.patch("citypipe.command_line.die_with_parent"))
            patched.enter_context(mock.patch("citypipe.runtime.pin_cpu_numerics"))  # once per process: not in a test's
            for target, replacement in action.patches:
                patched.enter_context(mock.patch(target, replacement))
            result = CliRunner().invoke(command, action.args)
        stderr = result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            stderr += "Traceback (most recent call last):\n" + repr(result.exception)
        return result.exit_code, result.stdout, stderr
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        reports_errors(action)()
    captured = capsys.readouterr()
    return exit_.value.code, captured.out, captured.err


# ---------------------------------------------------------------------------------------------- inputs

def tiny_onnx(path: Path, metadata: Any, classes: int = 19, input_name: str = "image",
              shape: tuple = ("N", 3, "H", "W")) -> Path:
    """A graph with export-onnx's interface, uint8 `image` (N, 3, H, W) -> float `logits` (N, classes, H, W)
    (a cast and a 1x1 convolution), with `metadata` (a dict, or raw text) as citypipe's metadata."""
    weights = np.random.default_rng(0).normal(size=(classes, 3, 1, 1)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Cast", [input_name], ["x"], to=TensorProto.FLOAT), helper.make_node("Conv", ["x", "w"], ["logits"])],
        "tiny", [helper.make_tensor_value_info(input_name, TensorProto.UINT8, list(shape))],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes, "H", "W"])],
        [numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata is not None:
        helper.set_model_props(model, {METADATA_KEY: metadata if isinstance(metadata, str) else json.dumps(metadata)})
    onnx.save(model, str(path))
    return path


def checkpoint(bench: Bench) -> Path:
    """tmp/ckpt/best.pt, made once per case (each Bench.checkpoint() draws new weights, a new sha256)."""
    path = bench.tmp / "ckpt" / "best.pt"
    return path if path.exists() else bench.checkpoint()


def model(bench: Bench, change: Callable[[dict], Any] = lambda metadata: None, name: str = "model.onnx",
          **graph: Any) -> Path:
    """tiny_onnx with export-onnx's metadata for the case's checkpoint, changed in place by `change`."""
    from citypipe.deploy.export import model_metadata
    from citypipe.params import load_params

    deploy = load_params(REPO / "params.yaml").deploy
    metadata = model_metadata(CONFIG, checkpoint(bench), (64, 128), deploy, {"base_size": [64, 128], "crop_size": [64, 128]})
    change(metadata)
    return tiny_onnx(bench.tmp / name, metadata, **graph)


def picture(bench: Bench, name: str = "a.png", size: tuple[int, int] = (16, 8), mode: str = "RGB") -> Path:
    path = bench.tmp / name
    Image.new(mode, size).save(path)
    return path


def infer_onnx(bench: Bench, onnx_path: Path, *options: str, **overrides: Any) -> CliCall:
    return CliCall(["infer", str(picture(bench)), "--onnx", str(onnx_path), "--params", bench.params(**overrides),
                    "--output", str(bench.out / "o.png"), *options])


def infer(bench: Bench, image: Path, *options: str, **overrides: Any) -> CliCall:
    output = [] if "--output" in options else ["--output", str(bench.out / "o.png")]
    return CliCall(["infer", str(image), "--checkpoint", str(checkpoint(bench)), "--device", "cpu",
                    "--params", bench.params(**overrides), *output, *options])


def no_evaluation(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("a model was evaluated before every model was checked")


NO_EVALUATION = (("citypipe.evaluation.deployed.evaluate", no_evaluation),)


def evaluate_onnx(bench: Bench, fp32: Path | None = None, int8: Path | None = None, pytorch: str | None = None,
                  metrics: Path | None = None, patches: tuple = (), **overrides: Any) -> StageCall:
    fp32 = fp32 or model(bench)
    int8 = int8 or model(bench, name="model_int8.onnx")
    pytorch_metrics = bench.tmp / "eval.json"
    pytorch_metrics.write_text(pytorch if pytorch is not None else '{"miou": 0.5, "pixel_acc": 0.9}')
    return StageCall("evaluate_onnx.py", [
        "--params", bench.params(**overrides), "--data-root", bench.root(overrides), "--checkpoints", str(bench.tmp / "ckpt"),
        "--cache", str(bench.cache), "--fp32", str(fp32), "--int8", str(int8), "--pytorch-metrics", str(pytorch_metrics),
        "--metrics", str(metrics or bench.out / "deploy.json")], patches)


def quantize(bench: Bench, onnx_path: Path, out: Path | None = None) -> StageCall:
    return StageCall("quantize_onnx.py", ["--params", bench.params(), "--data-root", bench.root({}), "--model", str(onnx_path),
                                          "--out", str(out or bench.out / "model_int8.onnx")])


def export(bench: Bench, out: Path, meta: Path) -> StageCall:
    checkpoint(bench)
    return StageCall("export_onnx.py", ["--params", bench.params(), "--data-root", bench.root({}),
                                        "--checkpoints", str(bench.tmp / "ckpt"), "--out", str(out), "--meta", str(meta)])


def robustness(bench: Bench, **paths: Path) -> StageCall:
    checkpoint(bench)
    files = {"metrics": bench.out / "robustness.json", "corruptions": bench.out / "corruptions.json",
             "curves": bench.out / "curves.csv", **paths}
    params = bench.params(**{"robustness.corruptions": ["brightness"], "robustness.severities": [1],
                             "robustness.frames": 1, "robustness.workers": 0})
    return StageCall("robustness.py", ["--params", params, "--data-root", bench.root({}), "--checkpoints",
                                       str(bench.tmp / "ckpt"), "--cache", str(bench.cache),
                                       *(f"--{key}={value}" for key, value in files.items())])


def train(bench: Bench, log: Path, checkpoints: Path | None = None) -> StageCall:
    return StageCall("train.py", ["--params", bench.params(), "--data-root", bench.root({}), "--cache", str(bench.cache),
                                  "--class-weights", str(bench.tmp / "c.json"), "--sample-weights", str(bench.tmp / "s.json"),
                                  "--checkpoints", str(checkpoints or bench.out / "checkpoints"),
                                  "--live-dir", str(bench.out / "dvclive"), "--log", str(log)])


def prepare(bench: Bench, **overrides: Any) -> StageCall:
    out = bench.out
    return StageCall("prepare_labels.py", ["--params", bench.params(**overrides), "--data-root", bench.root(overrides),
                                           "--cache", str(out / "cache"), "--class-table", str(out / "t.csv"),
                                           "--class-weights", str(out / "c.json"), "--sample-weights", str(out / "s.json")])


def evaluate(bench: Bench, **overrides: Any) -> StageCall:
    checkpoint(bench)
    out = bench.out
    return StageCall("evaluate.py", ["--params", bench.params(**overrides), "--data-root", bench.root(overrides),
                                     "--checkpoints", str(bench.tmp / "ckpt"), "--cache", str(bench.cache),
                                     "--metrics", str(out / "eval.json"), "--class-metrics", str(out / "eval_classes.json"),
                                     "--plots", str(out / "plots"), "--per-image", str(out / "per_image.csv")])


def _exp_show(experiments: int) -> str:
    """`dvc exp show --json` of the workspace (and one experiment): params and eval.json."""
    def state(rev: str, lr: float, miou: float) -> dict:
        return {"rev": rev, "params": {"params.yaml": {"data": {"train": {"lr": lr}}}},
                "metrics": {"metrics/eval.json": {"data": {"miou": miou}}}}

    others = [{"name": "exp1", "revs": [{"rev": "1" * 40, "name": "exp1", "error": None,
                                         "data": state("1" * 40, 0.05, 0.6)}]}][:experiments - 1]
    return json.dumps([{"rev": "workspace", "name": None, "error": None, "experiments": others or None,
                        "data": state("workspace", 0.02, 0.5)}])


def _counts(classes: int) -> bytes:
    """per_image_counts.npy of two frames."""
    dtype = np.dtype([("frame_id", "<U4"), ("confusion", "<i8", (classes, classes)),
                      ("boundary_intersection", "<i8", (classes,)), ("boundary_union", "<i8", (classes,))])
    array = np.zeros(2, dtype=dtype)
    array["frame_id"] = ["a", "b"]
    array["confusion"] = np.eye(classes, dtype=np.int64) * 10
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def compare(bench: Bench, *options: str, class_metrics: bytes | None = None, counts: bytes | None = None,
            experiments: int = 1) -> CliCall:
    """`citypipe compare` where DVC reports `experiments` rows and each revision has these file contents
    (None: absent)."""
    show = _exp_show(experiments)

    def read(repo: Path, revs: dict, path: str) -> dict:
        return {name: counts if path.endswith(".npy") else class_metrics for name in revs}

    return CliCall(["compare", "--repo", str(bench.tmp), *options], (
        ("citypipe.compare._run", lambda command, cwd: show if "exp" in command else "0" * 40 + "\n"),
        ("citypipe.compare._read_at_revs", read)))


def _real_dvc_folder(bench: Bench) -> Callable[[], Any]:
    """--class-metrics naming a folder of a real DVC project: DVC's own IsADirectoryError."""
    from citypipe.compare import read_class_metrics

    repo = bench.tmp / "repo"
    (repo / "metrics" / "sub").mkdir(parents=True)
    for command in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(command, cwd=repo, check=True, capture_output=True)
    return lambda: read_class_metrics(repo, {"workspace": "workspace"}, "metrics/sub")


def _profiles(bench: Bench, make: Callable[[Path], Any]) -> CliCall:
    folder = bench.tmp / "project" / "profiles"
    folder.mkdir(parents=True)
    make(folder)
    return bench.profile("x")


def _float_image(bench: Bench) -> CliCall:
    """A floating-point TIFF under a .png name (pillow reads by content): as 8 bits it would be all black."""
    path = bench.tmp / "f.png"
    Image.fromarray(np.full((8, 16), 0.5, np.float32)).save(path, format="TIFF")
    return infer(bench, path)


def _same_stem(bench: Bench) -> CliCall:
    folder = bench.tmp / "photos"
    folder.mkdir()
    Image.new("RGB", (16, 8), (255, 0, 0)).save(folder / "a.png")
    Image.new("RGB", (16, 8), (0, 0, 255)).save(folder / "a.jpg")
    return infer(bench, folder, "--output", str(bench.out / "overlays"), "--mask", "trainids")


def _unwritable_log(bench: Bench) -> Callable[[], Any]:
    """The log cannot be appended to (a root-owned file, a full disk): one line, and DVCLive's folder untouched."""
    from citypipe.training.outputs import TrainLog

    log, live = bench.out / "train.log", bench.tmp / "dvclive"
    live.mkdir()
    (live / "metrics.json").write_text("{}")
    real_open = Path.open

    def open_(self: Path, *args: Any, **kwargs: Any):
        if self == log:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    def run() -> None:
        with mock.patch.object(Path, "open", open_):
            TrainLog(live, log)

    return run


def _cache_onto_data(bench: Bench) -> StageCall:
    data = bench.data()
    call = prepare(bench)
    return dataclasses.replace(call, args=[str(data) if a == str(bench.out / "cache") else a for a in call.args])


def _unchanged(path_of: Callable[[Bench], Path]) -> Callable[[Bench, dict], None]:
    """An `after` check: the input at path_of(bench) has the bytes it had before the case ran."""
    def check(bench: Bench, before: dict) -> None:
        path = path_of(bench)
        assert path.read_bytes() == before[path], f"{path} was changed"

    return check


def _without_checkpoint(call: StageCall, bench: Bench) -> StageCall:
    checkpoint(bench).unlink()
    return call


def _palette_with_transparency(bench: Bench) -> Path:
    path = bench.tmp / "p.png"
    Image.new("P", (16, 8)).save(path, transparency=0)
    return path


def _png16_rgb(path: Path, width: int, height: int) -> Path:
    """A 48-bit RGB PNG (pillow cannot write one) whose every sample is 0x1234."""
    raw = b"".join(b"\0" + b"\x12\x34" * 3 * width for _ in range(height))
    chunk = lambda tag, data: struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


DEEP_YAML = "train: " + "[" * 100000 + "]" * 100000 + "\n"  # PyYAML composes recursively: a RecursionError

# ---------------------------------------------------------------------------------------------- tables

ERRORS: list[tuple[str, Callable[[Bench], Any], str, Callable[[Bench, dict], None] | None]] = [
    # citypipe infer --onnx: the model's metadata and graph are checked when it is opened
    ("onnx-metadata-a-list", lambda b: infer_onnx(b, tiny_onnx(b.tmp / "m.onnx", "[1, 2]")),
     "m.onnx: 'citypipe' metadata: expected a JSON object, got list (rerun export-onnx)", None),
    ("onnx-metadata-without-class-names", lambda b: infer_onnx(b, model(b, lambda m: m.pop("class_names"))),
     "'citypipe' metadata: class_names: expected a list of class names, got None", None),
    ("onnx-metadata-class-names-text", lambda b: infer_onnx(b, model(b, lambda m: m.update(class_names="road"))),
     "'citypipe' metadata: class_names: expected a list of class names, got 'road'", None),
    ("onnx-metadata-input-size-text", lambda b: infer_onnx(b, model(b, lambda m: m.update(input_size="big"))),
     f"'citypipe' metadata: input_size: expected [H, W] of integers in 1..{MAX_SIDE}, got 'big'", None),
    ("onnx-metadata-input-size-zero", lambda b: infer_onnx(b, model(b, lambda m: m.update(input_size=[0, 0]))),
     "input_size: expected [H, W] of integers in 1..65536, got [0, 0]", None),
    ("onnx-metadata-input-size-three-axes", lambda b: infer_onnx(b, model(b, lambda m: m.update(input_size=[8, 16, 3]))),
     "input_size: expected [H, W] of integers in 1..65536, got [8, 16, 3]", None),
    ("onnx-metadata-train-a-list", lambda b: infer_onnx(b, model(b, lambda m: m.update(train=[1]))),
     "'citypipe' metadata: train: expected an object with base_size and crop_size, got [1]", None),
    ("onnx-metadata-crop-zero", lambda b: infer_onnx(b, model(b, lambda m: m["train"].update(crop_size=[0, 4])),
                                                     "--mode", "slide"),
     "'citypipe' metadata: train.crop_size: expected [H, W] of integers in 1..65536, got [0, 4]", None),
    ("onnx-metadata-not-json", lambda b: infer_onnx(b, tiny_onnx(b.tmp / "m.onnx", "{not json")),
     "m.onnx: 'citypipe' metadata is not JSON (", None),
    ("onnx-without-metadata", lambda b: infer_onnx(b, tiny_onnx(b.tmp / "m.onnx", None)),
     "m.onnx: no 'citypipe' metadata (not exported by citypipe's export-onnx)", None),
    ("onnx-more-classes-than-names", lambda b: infer_onnx(b, model(b, classes=300), "--mask", "trainids"),
     "model.onnx: the graph outputs 300 classes, its metadata names 19 (class_names); rerun export-onnx", None),
    ("onnx-fewer-classes-than-names", lambda b: infer_onnx(b, model(b, classes=5)),
     "model.onnx: the graph outputs 5 classes, its metadata names 19", None),
    ("onnx-fewer-classes-slide", lambda b: infer_onnx(b, model(b, classes=5), "--mode", "slide"),
     "model.onnx: the graph outputs 5 classes, its metadata names 19", None),
    ("onnx-other-input-name", lambda b: infer_onnx(b, model(b, input_name="input")),
     "model.onnx: onnxruntime failed on images of shape (1, 3, 64, 128) (Required inputs (['input']) are missing", None),
    ("onnx-fixed-input-shape", lambda b: infer_onnx(b, model(b, shape=(1, 3, 64, 128)), "--size", "32", "32"),
     "model.onnx: the graph cannot take an image batch of shape (1, 3, 8, 16) (its input is [1, 3, 64, 128])", None),
    ("onnx-truncated", lambda b: infer_onnx(b, (b.tmp / "t.onnx").write_bytes(model(b).read_bytes()[:40]) and b.tmp / "t.onnx"),
     "t.onnx: not a loadable ONNX model, corrupt or truncated?", None),
    ("onnx-is-a-folder", lambda b: infer_onnx(b, Path(b.folder())),
     "folder: is a folder; expected an ONNX model file", None),
    ("onnx-num-threads-huge", lambda b: infer_onnx(b, model(b), **{"device.num_threads": 10 ** 6}),
     "params.yaml: params: device.num_threads: expected at most 1024 (more than any machine's cores), got 1000000", None),
    # evaluate-onnx, quantize-onnx, export-onnx
    ("evaluate-onnx-pytorch-metrics-a-list", lambda b: evaluate_onnx(b, pytorch="[0.5]"),
     "eval.json: expected evaluate's JSON object of metrics, got list; rerun evaluate", None),
    ("evaluate-onnx-pytorch-metrics-not-json", lambda b: evaluate_onnx(b, pytorch="{"),
     "eval.json: cannot read evaluate's metrics (Expecting property name", None),
    ("evaluate-onnx-int8-missing", lambda b: evaluate_onnx(b, int8=b.tmp / "nowhere.onnx", patches=NO_EVALUATION),
     "nowhere.onnx: ONNX model not found (run the export-onnx stage first)", None),
    ("evaluate-onnx-int8-of-another-checkpoint", lambda b: evaluate_onnx(
        b, int8=model(b, lambda m: m["checkpoint"].update(sha256="0" * 64), name="int8.onnx"), patches=NO_EVALUATION),
     "int8.onnx: exported from checkpoint sha256 0000000000000000..., not from the checkpoint to score", None),
    ("evaluate-onnx-metadata-without-checkpoint", lambda b: evaluate_onnx(b, fp32=model(b, lambda m: m.pop("checkpoint"))),
     "model.onnx: its metadata records no checkpoint sha256, so it cannot be checked against the checkpoint", None),
    ("evaluate-onnx-checkpoint-missing", lambda b: _without_checkpoint(evaluate_onnx(b), b),
     "ckpt/best.pt: checkpoint not found (the ONNX models are checked against it; run the train stage first)", None),
    ("evaluate-onnx-metrics-onto-its-input", lambda b: evaluate_onnx(b, metrics=b.tmp / "eval.json"),
     "eval.json: is the input ", _unchanged(lambda b: b.tmp / "eval.json")),
    ("quantize-onto-its-model", lambda b: quantize(b, model(b), out=b.tmp / "model.onnx"),
     "model.onnx: is the input ", _unchanged(lambda b: b.tmp / "model.onnx")),
    ("quantize-metadata-without-input-size", lambda b: quantize(b, model(b, lambda m: m.pop("input_size"))),
     "model.onnx: its metadata records no input_size to calibrate at; rerun export-onnx", None),
    ("quantize-metadata-input-size-text", lambda b: quantize(b, model(b, lambda m: m.update(input_size="x"))),
     "'citypipe' metadata: input_size: expected [H, W] of integers in 1..65536, got 'x'", None),
    ("export-onnx-out-is-meta", lambda b: export(b, b.out / "m.onnx", b.out / "m.onnx"),
     "out/m.onnx: is the same path as the output ", None),
    # the robustness stage's outputs, the train log, outputs that would replace inputs
    ("robustness-corruptions-onto-metrics", lambda b: robustness(b, corruptions=b.out / "robustness.json"),
     "out/robustness.json: is the same path as the output ", None),
    ("robustness-corruptions-under-a-file", lambda b: robustness(b, corruptions=checkpoint(b) / "c.json"),
     "best.pt/c.json: cannot write (a part of the path is a file, not a folder", None),
    ("train-log-inside-checkpoints", lambda b: train(b, b.out / "checkpoints" / "last.pt"),
     "checkpoints/last.pt: overlaps the output ", None),
    ("train-log-under-a-file", lambda b: train(b, checkpoint(b) / "train.log"),
     "best.pt/train.log: cannot write (a part of the path is a file, not a folder", None),
    ("train-log-unwritable", _unwritable_log, "out/train.log: cannot append to the train log (permission denied, EACCES)",
     _unchanged(lambda b: b.tmp / "dvclive" / "metrics.json")),
    ("prepare-cache-onto-data-root", _cache_onto_data, "data: is the input ",
     lambda b, before: [p for p in b.data().rglob("*_leftImg8bit.png")] or pytest.fail("the dataset is gone")),
    # params edge values: caught on load, where a typo would otherwise fail deep inside torch or take the machine down
    ("params-scale-overflow", lambda b: prepare(b, **{"inference.scales": [1e308]}),
     "params: inference.scales: expected scales of at most 16, got [1e+308]", None),
    ("params-num-threads-overflow", lambda b: prepare(b, **{"device.num_threads": 2 ** 40}),
     "params: device.num_threads: expected at most 1024 (more than any machine's cores), got 1099511627776", None),
    ("params-workers-huge", lambda b: prepare(b, **{"train.workers": 10 ** 6}),
     "params: train.workers: expected at most 1024", None),
    ("params-inference-size-overflow", lambda b: prepare(b, **{"inference.size": [2 ** 40, 2 ** 40]}),
     "params: inference.size: expected sides of at most 65536 pixels, got [1099511627776, 1099511627776]", None),
    ("params-bootstrap-out-of-memory", lambda b: evaluate(b, **{"evaluate.bootstrap_resamples": 10 ** 15}),
     "); lower evaluate.bootstrap_resamples in params.yaml", None),  # not the image sizes, which were fine
    # citypipe infer
    ("infer-scales-inf", lambda b: b.infer("--scales", "inf"), "Invalid value for '--scales': 'inf': scales must be at most 16", None),
    ("infer-scale-overflow-slide", lambda b: b.infer("--mode", "slide", "--scales", "1e308"),
     "'--scales': '1e308': scales must be at most 16", None),
    ("infer-size-overflow", lambda b: b.infer("--size", str(2 ** 40), str(2 ** 40)),
     "Invalid value for '--size': 1099511627776 is not in the range 1<=x<=65536", None),
    ("infer-crop-size-overflow", lambda b: b.infer("--mode", "slide", "--crop-size", "8", str(2 ** 40)),
     "Invalid value for '--crop-size': 1099511627776 is not in the range 1<=x<=65536", None),
    ("infer-two-images-one-name", _same_stem, "a.png: both would be written to ", None),
    ("infer-text-named-png", lambda b: infer(b, (b.tmp / "t.png").write_text("hello") and b.tmp / "t.png"),
     "t.png: cannot read image (cannot identify image file", None),
    ("infer-float-image", _float_image, "f.png: image of mode F (floating-point or signed pixels); expected 8- or 16-bit", None),
    ("infer-corrupt-without-severity", lambda b: b.infer("--corrupt", "fog"), "--corrupt fog: expected NAME:SEVERITY", None),
    ("infer-corrupt-unknown", lambda b: b.infer("--corrupt", "rain:1"), "--corrupt rain:1: unknown corruption 'rain'", None),
    # citypipe compare
    ("compare-class-metrics-nested-deep", lambda b: compare(b, class_metrics=b"[" * 100000 + b"]" * 100000),
     "metrics/eval_classes.json@workspace: JSON nested too deeply to be per-class tables", None),
    ("compare-class-metrics-a-list", lambda b: compare(b, class_metrics=b"[1]"),
     "metrics/eval_classes.json@workspace: expected a JSON object of per-class tables, got list", None),
    ("compare-class-metrics-not-json", lambda b: compare(b, class_metrics=b"{"),
     "metrics/eval_classes.json@workspace: not JSON (", None),
    ("compare-class-metrics-not-utf8", lambda b: compare(b, class_metrics=b'{"class_iou": "\xff"}'),
     "metrics/eval_classes.json@workspace: not JSON ('utf-8' codec can't decode", None),
    ("compare-class-metrics-outside-the-project", lambda b: compare(b, "--class-metrics", "../eval_classes.json"),
     "--class-metrics '../eval_classes.json': expected a file path inside the project", None),
    ("compare-class-metrics-misspelt", lambda b: compare(b, "--class-metrics", "metrics/eval_clases.json"),
     "--class-metrics metrics/eval_clases.json: no such file at any revision compared (workspace)", None),
    ("compare-class-metrics-a-folder", _real_dvc_folder, "metrics/sub@workspace: cannot read ('metrics/sub' is a directory)", None),
    ("compare-counts-of-other-classes", lambda b: compare(b, counts=_counts(5), experiments=2),
     "per_image_counts.npy@workspace: expected counts of 19 classes, got confusion of shape (5, 5)", None),
    ("compare-seed-negative", lambda b: compare(b, "--seed", "-1", counts=_counts(19), experiments=2),
     "Invalid value for '--seed': -1 is not in the range 0<=x<=9223372036854775807", None),
    ("compare-resamples-out-of-memory", lambda b: compare(b, "--resamples", str(10 ** 15), counts=_counts(19), experiments=2),
     "--resamples 1000000000000000: out of memory drawing the paired bootstrap's resamples; use fewer", None),
    # citypipe profile
    ("profile-name-empty", lambda b: b.profile(""), "profile '': expected a plain name", None),
    ("profile-name-not-ascii", lambda b: b.profile("çity"), "profile 'çity': expected a plain name", None),
    ("profile-params-is-a-folder", lambda b: CliCall(["profile", "demo", "--params", b.folder()]),
     "Invalid value for '--params': File ", None),
    ("profile-params-missing", lambda b: CliCall(["profile", "demo", "--params", str(b.tmp / "nowhere" / "params.yaml")]),
     "nowhere/params.yaml: cannot read (", None),
    ("profile-file-is-a-folder", lambda b: _profiles(b, lambda folder: (folder / "x.yaml").mkdir()),
     "x: no such profile (known: cityscapes, demo) in ", None),
    ("profile-file-empty", lambda b: _profiles(b, lambda folder: (folder / "x.yaml").write_text("")),
     "x.yaml: expected sections of keys, like params.yaml (a profile)", None),
    ("profile-file-not-utf8", lambda b: _profiles(b, lambda folder: (folder / "x.yaml").write_bytes(b"train:\n  lr: \xff\n")),
     "x.yaml: cannot read profile ('utf-8' codec can't decode", None),
    ("profile-params-nested-too-deeply", lambda b: b.profile("demo", params_text=DEEP_YAML),
     "params.yaml: not valid YAML (collections nested too deeply)", None),
    # stage scripts' --params
    ("stage-params-nested-too-deeply", lambda b: StageCall("quantize_onnx.py", [
        "--params", (b.tmp / "deep.yaml").write_text(DEEP_YAML) and str(b.tmp / "deep.yaml"), "--data-root", "x",
        "--model", "m", "--out", "o"]), "deep.yaml: not valid YAML (collections nested too deeply)", None),
    ("stage-params-missing", lambda b: StageCall("quantize_onnx.py", ["--params", str(b.tmp / "nowhere.yaml"), "--data-root",
                                                                      "x", "--model", "m", "--out", "o"]),
     "nowhere.yaml: file not found (expected the pipeline's params.yaml)", None),
    ("stage-params-empty", lambda b: StageCall("export_onnx.py", ["--params", "/dev/null", "--data-root", "x", "--checkpoints",
                                                                  "c", "--out", "o", "--meta", "m"]),
     "/dev/null: the file is empty (expected the pipeline's params.yaml)", None),
]

USAGE = [  # click refuses the option before the stage runs
    ("stage-params-is-a-folder", lambda b: StageCall("quantize_onnx.py", ["--params", b.folder(), "--data-root", "x",
                                                                          "--model", "m", "--out", "o"]),
     "Error: Invalid value for '--params': File "),
    ("stage-option-missing", lambda b: StageCall("robustness.py", ["--params", b.params()]), "Error: Missing option '--data-root'."),
    ("train-log-is-a-folder", lambda b: train(b, Path(b.folder())), "Error: Invalid value for '--log': File "),
    ("robustness-corruptions-is-a-folder", lambda b: robustness(b, corruptions=Path(b.folder())),
     "Error: Invalid value for '--corruptions': File "),
]


def _mask_of(size: tuple[int, int]) -> Callable[[Bench, str], None]:
    def check(bench: Bench, stdout: str) -> None:
        mask = np.asarray(Image.open(bench.out / "o_trainIds.png"))
        assert mask.shape == size[::-1] and mask.max() < 19, (mask.shape, mask.max())
        assert (bench.out / "o.png").is_file()

    return check


def _overlay_height_at_most(pixels: int) -> Callable[[Bench, str], None]:
    def check(bench: Bench, stdout: str) -> None:
        with Image.open(bench.out / "o.png") as overlay:
            assert overlay.height <= pixels, overlay.size

    return check


def _rerun_into_a_subfolder(bench: Bench) -> Callable[[], Any]:
    """`infer photos --output photos/overlays`, twice: the second run does not take the first one's overlays
    for photos to segment."""
    folder = bench.tmp / "photos"
    folder.mkdir()
    Image.new("RGB", (16, 8)).save(folder / "a.png")
    call = infer(bench, folder, "--output", str(folder / "overlays"))

    def run() -> None:
        for _ in range(2):
            result = CliRunner().invoke(citypipe_main, call.args)
            assert result.exit_code == 0, result.stderr
            assert "infer: 1 image(s)" in result.stdout, result.stdout
        assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == [
            "a.png", "overlays", "overlays/a_overlay.png"]
        sys.exit(0)

    return run


def _evaluated(bench: Bench, stdout: str) -> None:
    assert json.loads((bench.out / "eval.json").read_text())["miou"] >= 0


CORRECT: list[tuple[str, Callable[[Bench], Any], Callable[[Bench, str], None]]] = [
    ("stage-help", lambda b: StageCall("evaluate_onnx.py", ["--help"]),
     lambda b, out: "--pytorch-metrics" in out or pytest.fail(out)),
    ("infer-cmyk-jpeg", lambda b: infer(b, picture(b, "c.jpg", mode="CMYK"), "--mask", "trainids"), _mask_of((16, 8))),
    ("infer-palette-with-transparency", lambda b: infer(b, _palette_with_transparency(b), "--mask", "trainids"),
     _mask_of((16, 8))),
    ("infer-48-bit-rgb", lambda b: infer(b, _png16_rgb(b.tmp / "x.png", 16, 8), "--mask", "trainids"), _mask_of((16, 8))),
    ("infer-16-bit-grey", lambda b: infer(b, picture(b, "g.png", mode="I;16"), "--mask", "trainids"), _mask_of((16, 8))),
    ("infer-rgba", lambda b: infer(b, picture(b, "r.png", mode="RGBA"), "--mask", "trainids"), _mask_of((16, 8))),
    ("infer-grey-with-alpha", lambda b: infer(b, picture(b, "la.png", mode="LA"), "--mask", "trainids"), _mask_of((16, 8))),
    ("infer-bilevel", lambda b: infer(b, picture(b, "one.png", mode="1"), "--mask", "trainids"), _mask_of((16, 8))),
    ("infer-1x1", lambda b: infer(b, picture(b, "tiny.png", size=(1, 1)), "--mask", "trainids"), _mask_of((1, 1))),
    ("infer-4000x1", lambda b: infer(b, picture(b, "wide.png", size=(4000, 1)), "--mask", "trainids"), _mask_of((4000, 1))),
    ("infer-1x4000", lambda b: infer(b, picture(b, "tall.png", size=(1, 4000)), "--mask", "trainids"),
     _overlay_height_at_most(4000)),  # the overlay figure was 40000 inches tall: out of memory
    ("infer-corrupt-fog-1x1", lambda b: infer(b, picture(b, "tiny.png", size=(1, 1)), "--corrupt", "fog:5"),
     lambda b, out: (b.out / "o_corrupted.png").is_file() or pytest.fail("no corrupted image")),
    ("infer-corrupt-seed-negative", lambda b: b.infer("--corrupt", "fog:1", "--corrupt-seed", "-1"),
     lambda b, out: (b.out / "o_corrupted.png").is_file() or pytest.fail("no corrupted image")),
    ("infer-output-inside-its-input-folder-twice", _rerun_into_a_subfolder, lambda b, out: None),
    ("infer-slide-1x1-windows", lambda b: b.infer("--mode", "slide", "--crop-size", "1", "1", "--stride", "1", "1"),
     lambda b, out: (b.out / "o.png").is_file() or pytest.fail("no overlay")),
    ("onnx-slide-1x1-windows", lambda b: infer_onnx(b, model(b), "--mode", "slide", "--crop-size", "1", "1", "--stride", "1",
                                                    "1", "--mask", "trainids"), _mask_of((16, 8))),
    ("compare-class-metrics-absent-by-default", lambda b: compare(b), lambda b, out: "workspace" in out or pytest.fail(out)),
    ("params-inference-batch-huge", lambda b: evaluate(b, **{"inference.batch_size": 2 ** 62}), _evaluated),
]


@pytest.fixture
def bench(tmp_path, synth_root, prepared) -> Bench:
    return Bench(tmp_path, synth_root, prepared[0])


@pytest.mark.parametrize("build, fragment, after", [pytest.param(*case[1:], id=case[0]) for case in ERRORS])
def test_a_hostile_input_fails_in_one_line_naming_it(bench, capsys, build, fragment, after):
    action = build(bench)
    before = {p: p.read_bytes() for p in bench.tmp.rglob("*") if p.is_file() and bench.out not in p.parents}
    code, _, stderr = _run(action, capsys)
    lines = [line for line in stderr.splitlines() if line.strip()]  # progress bars may come first
    assert code == 1, stderr
    assert lines and lines[-1].startswith("error: ") and fragment in lines[-1], stderr
    assert not any("error" in line.lower() or "Traceback" in line for line in lines[:-1]), stderr
    assert [p.name for p in bench.out.rglob("*")] == []  # not even a temporary file
    if after is not None:
        after(bench, before)


@pytest.mark.parametrize("build, fragment", [pytest.param(*case[1:], id=case[0]) for case in USAGE])
def test_a_bad_stage_option_is_clicks_usage_error(bench, capsys, build, fragment):
    code, _, stderr = _run(build(bench), capsys)
    assert code == 2 and stderr.strip().splitlines()[-1].startswith(fragment), stderr
    assert "Traceback" not in stderr, stderr
    assert [p.name for p in bench.out.rglob("*")] == []


@pytest.mark.parametrize("build, check", [pytest.param(*case[1:], id=case[0]) for case in CORRECT])
def test_odd_but_valid_input_works(bench, capsys, build, check):
    code, stdout, stderr = _run(build(bench), capsys)
    assert code == 0, stderr
    assert "Traceback" not in stderr and "Warning" not in stderr, stderr  # e.g. numpy's RuntimeWarning of a NaN
    check(bench, stdout)


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (3, 700)])
def test_every_corruption_of_a_tiny_image_is_finite_pixels(size):
    """Cityscapes-C's corruptions on images far smaller than their kernels, textures and fractals: uint8
    pixels of the same shape, no NaN on the way (fog's fractal of one pixel divided 0 by 0)."""
    from citypipe.corruptions.corrupt import CORRUPTIONS, corrupt

    image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    with np.errstate(all="raise"):  # a 0/0 or an invalid cast raises instead of warning
        for name in CORRUPTIONS:
            out = corrupt(image, name, 5, 0, "frame")
            assert out.shape == image.shape and out.dtype == np.uint8, name


def test_the_runtime_and_params_bound_sizes_alike():
    """deploy/runtime.py imports no citypipe.params (it runs without PyTorch or PyYAML): its copy of the bound."""
    assert MAX_SIDE == PARAMS_MAX_SIDE


def test_the_overlap_check_leaves_separate_outputs_and_inputs_alone(tmp_path):
    """check_separate refuses only real overlaps: siblings with a common prefix and outputs inside an input
    folder (metrics written beside the data) are fine."""
    from citypipe.atomic import check_separate

    check_separate([tmp_path / "eval", tmp_path / "eval.json", tmp_path / "evaluate" / "x"],
                   inputs=[tmp_path / "ev", tmp_path / "data"])
    check_separate([tmp_path / "data" / "trainids"], inputs=[tmp_path / "data" / "citysynth"])
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "data", target_is_directory=True)
    (tmp_path / "data").mkdir()
    with pytest.raises(CitypipeError, match="link: is a folder holding the input .*citysynth"):
        check_separate([link], inputs=[tmp_path / "data" / "citysynth"])
    shutil.rmtree(tmp_path / "data")
