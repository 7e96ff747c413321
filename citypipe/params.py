"""params.yaml -> one frozen dataclass per section, validated on load.

params.yaml is the only place values come from: no field has a default, unknown or missing keys
are errors that name the key, and each section checks its own ranges.
"""
from __future__ import annotations

import atexit
import dataclasses
import json
import re
import os
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from citypipe.errors import CitypipeError, first_line

Size = tuple[int, int]  # (H, W)

# CITYPIPE_PARAMS_TRACE=FOLDER: each process that loads params writes FOLDER/<script>.json, the
# sorted 'section.key' names its code read, at exit. tests/test_dvc_pipeline.py compares them with
# each stage's params in dvc.yaml: a stage must depend on exactly the keys it reads.
TRACE_VARIABLE = "CITYPIPE_PARAMS_TRACE"
_keys_read: set[str] | None = None


class _Traced:
    """Records which fields of a loaded section are read, while tracing is on."""

    _section: str = ""

    def __getattribute__(self, name: str):
        if _keys_read is not None and not name.startswith("_") and name in type(self).__dataclass_fields__:
            _keys_read.add(f"{object.__getattribute__(self, '_section')}.{name}")
        return object.__getattribute__(self, name)


def _start_trace(folder: str) -> None:
    global _keys_read
    if _keys_read is not None:
        return
    _keys_read = set()
    target = Path(folder) / f"{Path(sys.argv[0]).stem or 'python'}.json"

    def write() -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        known = set(json.loads(target.read_text())) if target.is_file() else set()
        target.write_text(json.dumps(sorted(known | _keys_read)))

    atexit.register(write)


def _fail(key: str, expected: str, value: Any) -> None:
    raise CitypipeError(f"params: {key}: expected {expected}, got {value!r}")


def _check_positive(section: str, obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        values = value if isinstance(value, tuple) else (value,)
        if any(v <= 0 for v in values):
            _fail(f"{section}.{name}", "a value > 0", value)


def _check_range(section: str, obj: Any, name: str, low: float, high: float) -> None:
    value = getattr(obj, name)
    if not low <= value <= high:
        _fail(f"{section}.{name}", f"a value in [{low}, {high}]", value)


# Upper bounds that catch a typo (an extra zero or two) on load, before it fails deep inside a library:
# 10**6 threads or DataLoader workers take the machine down before any error; a side or scale whose
# product overflows fails inside torch with a traceback.
MAX_PARALLEL = 1024  # threads or worker processes: more than any machine's cores
MAX_SIDE = 1 << 16  # pixels of an image or network input side (Cityscapes: 2048); deploy/runtime.py's MAX_SIDE
MAX_SCALE = 16.0  # test-time scales (multi-scale testing uses 0.5-2.0)


def _check_parallel(section: str, obj: Any, *names: str) -> None:
    for name in names:
        if getattr(obj, name) > MAX_PARALLEL:
            _fail(f"{section}.{name}", f"at most {MAX_PARALLEL} (more than any machine's cores)", getattr(obj, name))


def _check_sides(section: str, obj: Any, *names: str) -> None:
    for name in names:
        if any(side > MAX_SIDE for side in getattr(obj, name)):
            _fail(f"{section}.{name}", f"sides of at most {MAX_SIDE} pixels", list(getattr(obj, name)))


SEED_MAX = 2 ** 63 - 1  # numpy's and torch's generators take seeds in [0, 2^63 - 1]


def _check_seed(key: str, value: int) -> None:
    """Checked on load: an out-of-range seed would otherwise fail only when its generator is made (after inference)."""
    if not 0 <= value <= SEED_MAX:
        _fail(key, "a seed in [0, 2^63 - 1]", value)


_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")  # no '/', '..' or '_' (frame ids are city_seq_frame)


def is_plain_name(name: str) -> bool:
    """City, split and profile names become path parts: a plain name cannot climb out of its folder."""
    return _PLAIN_NAME.fullmatch(name) is not None


def check_plain_name(what: str, name: str) -> None:
    if not is_plain_name(name):
        raise CitypipeError(f"{what}: expected a plain name (letters, digits, '-'; no '/', '..' or '_'), got {name!r}")


def _check_names(key: str, names: tuple[str, ...]) -> None:
    for name in names:
        check_plain_name(f"params: {key}", name)
    if len(set(names)) != len(names):
        _fail(key, "each name once", list(names))


def scale_to_zero(size: tuple[int, int], scales: tuple[float, ...]) -> float | None:
    """The first scale at which an input of `size` (H, W) rounds to zero pixels on an axis (as
    prediction rounds it), or None: such an input cannot be predicted."""
    return next((s for s in scales if min(round(size[0] * s), round(size[1] * s)) < 1), None)


@dataclass(frozen=True)
class DataParams(_Traced):
    root: str  # a folder in the official Cityscapes layout (leftImg8bit/, gtFine/)
    cities: tuple[str, ...]  # per split: each split keeps the named cities it has (layout.find_samples); empty = all

    def __post_init__(self) -> None:
        if not self.root.strip():
            _fail("data.root", "a folder (not empty)", self.root)
        _check_names("data.cities", self.cities)


@dataclass(frozen=True)
class DeviceParams(_Traced):
    type: Literal["auto", "cpu", "cuda", "mps"]  # auto: cuda > mps > cpu
    processes: int  # > 1: train, evaluate and robustness run under torch.distributed.run (citypipe/launch.py)
    amp: Literal["none", "bf16", "fp16"]  # mixed precision, CUDA only
    channels_last: bool  # CUDA only
    cudnn_benchmark: bool
    compile: bool  # torch.compile the model (CUDA only)
    num_threads: int  # CPU threads for torch; 0 = torch's default (the machine's cores)
    cpu_deterministic: bool  # on the CPU: the same bits on any x86-64 machine (see citypipe/cpu_determinism.py)

    def __post_init__(self) -> None:
        if self.processes < 1:
            _fail("device.processes", "a process count >= 1", self.processes)
        if self.num_threads < 0:
            _fail("device.num_threads", "a value >= 0", self.num_threads)
        _check_parallel("device", self, "num_threads")
        if self.cpu_deterministic and self.num_threads == 0:
            _fail("device.num_threads", "a fixed thread count (the bits depend on it) when device.cpu_deterministic "
                  "is true", self.num_threads)


@dataclass(frozen=True)
class SynthesizeParams(_Traced):
    seed: int
    height: int
    width: int
    train_images: int
    val_images: int
    test_images: int
    train_cities: tuple[str, ...]
    val_cities: tuple[str, ...]
    test_cities: tuple[str, ...]
    workers: int

    def __post_init__(self) -> None:
        _check_positive("synthesize", self, "height", "width", "train_images", "val_images",
                        "test_images", "workers")
        if self.height < 64 or self.width < 64:
            _fail("synthesize.height/width", "at least 64 pixels", (self.height, self.width))
        if max(self.height, self.width) > MAX_SIDE:
            _fail("synthesize.height/width", f"at most {MAX_SIDE} pixels", (self.height, self.width))
        _check_parallel("synthesize", self, "workers")
        _check_seed("synthesize.seed", self.seed)
        for split in ("train", "val", "test"):
            if not getattr(self, f"{split}_cities"):
                _fail(f"synthesize.{split}_cities", "at least one city", [])
            _check_names(f"synthesize.{split}_cities", getattr(self, f"{split}_cities"))


@dataclass(frozen=True)
class PrepareParams(_Traced):
    class_weighting: Literal["none", "inverse_log", "median_frequency"]
    inverse_log_c: float  # ENet's c in w = 1 / ln(c + p)
    sample_weighting: Literal["none", "rare_class"]
    image_cache: bool  # also cache each train frame's decoded image as .npy beside its trainIds (data/frames.py)
    workers: int

    def __post_init__(self) -> None:
        _check_positive("prepare", self, "workers")
        _check_parallel("prepare", self, "workers")
        if self.inverse_log_c <= 1.0:
            _fail("prepare.inverse_log_c", "a value > 1", self.inverse_log_c)


@dataclass(frozen=True)
class ModelParams(_Traced):
    arch: Literal["deeplabv3", "deeplabv3plus"]
    backbone: Literal["resnet18", "resnet34", "resnet50", "resnet101"]
    output_stride: Literal[8, 16]
    pretrained: Literal["none", "IMAGENET1K_V1", "IMAGENET1K_V2"]  # torchvision's ImageNet weights (V2: resnet50/101 only)
    weights_file: str  # a local backbone state dict (torchvision keys); "" = none
    aux_head: bool  # auxiliary FCN head on layer3
    head_channels: int  # ASPP and decoder width: 256 (the DeepLabV3+ paper, torchvision) or 512 (mmseg)
    head_style: Literal["torchvision", "mmseg"]  # fusion, dropout, separable convs and init (models/deeplab.py)

    def __post_init__(self) -> None:
        _check_positive("model", self, "head_channels")


@dataclass(frozen=True)
class TrainParams(_Traced):
    seed: int
    epochs: int
    batch_size: int
    base_size: Size  # image size at scale 1.0 before random scaling (H, W)
    scale_range: tuple[float, float]
    crop_size: Size
    cat_max_ratio: float  # retry crops with < 2 classes or one class at this share or more (1.0 = off)
    flip_prob: float  # probability of a horizontal flip
    photometric: Literal["none", "simple", "mmseg"]  # simple: RGB jitter, one clip; mmseg: PhotoMetricDistortion (HSV, hue)
    resize: Literal["antialias", "bilinear"]  # image filter of the random scale: PIL's antialiased, or cv2's INTER_LINEAR
    optimizer: Literal["sgd", "adamw"]
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float
    backbone_lr_mult: float
    head_lr_mult: float
    schedule: Literal["poly", "cosine"]
    poly_power: float
    min_lr: float  # the schedule's floor
    warmup_iters: int
    warmup_ratio: float  # lr at iteration 0 = lr * warmup_ratio
    grad_accum_steps: int  # BatchNorm still normalises each micro-batch alone: not a larger batch (README)
    class_weights: bool  # use prepare-labels' class weights in the loss
    ohem: bool
    ohem_thresh: float
    ohem_min_kept: int  # per image: a batch of N keeps at least N x this hardest pixels (mmseg)
    aux_weight: float
    loss_average: Literal["valid", "all"]  # the loss's mean over non-ignored pixels, or over all (mmseg: ignored as 0)
    sampler: Literal["weighted", "uniform"]
    val_every: int
    val_size: Size  # validation predicts whole val images at this network input size (H, W)
    val_batch_size: int
    workers: int  # for the train and the validation loader

    def __post_init__(self) -> None:
        _check_positive("train", self, "epochs", "batch_size", "base_size", "crop_size", "lr",
                        "scale_range", "grad_accum_steps", "val_every", "backbone_lr_mult",
                        "head_lr_mult", "ohem_min_kept", "val_size", "val_batch_size")
        _check_seed("train.seed", self.seed)
        _check_sides("train", self, "base_size", "crop_size", "val_size")
        _check_parallel("train", self, "workers")
        for name in ("momentum", "weight_decay", "poly_power", "min_lr", "aux_weight", "warmup_iters", "workers"):
            if getattr(self, name) < 0:
                _fail(f"train.{name}", "a value >= 0", getattr(self, name))
        _check_range("train", self, "flip_prob", 0.0, 1.0)
        _check_range("train", self, "cat_max_ratio", 0.0, 1.0)
        if self.min_lr > self.lr:
            _fail("train.min_lr", f"a value <= train.lr ({self.lr})", self.min_lr)
        _check_range("train", self, "warmup_ratio", 0.0, 1.0)
        _check_range("train", self, "ohem_thresh", 0.0, 1.0)
        if self.scale_range[0] > self.scale_range[1]:
            _fail("train.scale_range", "[low, high] with low <= high", list(self.scale_range))


def stride_leaves_gaps(stride: Size, crop_size: Size) -> bool:
    """Sliding windows further apart than their size leave pixels never predicted (evaluate and infer)."""
    return any(s > c for s, c in zip(stride, crop_size))


@dataclass(frozen=True)
class InferenceParams(_Traced):
    """Test-time prediction, shared by every stage that predicts (evaluate, visualize, export-submission)
    and by `citypipe infer`: trying a setting here never retrains the model."""

    checkpoint: Literal["best", "last"]  # best: chosen on val (optimistic when val is also reported); last: the final weights
    mode: Literal["whole", "slide"]
    size: Size  # network input size for whole-image inference (H, W)
    crop_size: Size  # sliding window size (H, W), at the original resolution
    stride: Size
    flip: bool  # average with the horizontally flipped prediction
    scales: tuple[float, ...]  # multi-scale averaging, relative to `size` / the original
    amp: bool  # predict under device.amp's autocast; false = fp32, as the official numbers are scored
    batch_size: int
    workers: int

    def __post_init__(self) -> None:
        _check_positive("inference", self, "size", "crop_size", "stride", "batch_size", "scales")
        if not self.scales:
            _fail("inference.scales", "at least one scale", [])
        if self.workers < 0:
            _fail("inference.workers", "a value >= 0", self.workers)
        _check_parallel("inference", self, "workers")
        _check_sides("inference", self, "size", "crop_size", "stride")
        if max(self.scales) > MAX_SCALE:
            _fail("inference.scales", f"scales of at most {MAX_SCALE:g}", list(self.scales))
        if self.mode == "whole" and scale_to_zero(self.size, self.scales) is not None:
            _fail("inference.scales", f"scales that keep inference.size {list(self.size)} at least 1 pixel",
                  scale_to_zero(self.size, self.scales))
        if self.mode == "slide" and stride_leaves_gaps(self.stride, self.crop_size):
            _fail("inference.stride", f"a value <= inference.crop_size {list(self.crop_size)} on each axis "
                  "(a larger stride leaves pixels uncovered in mode slide)", list(self.stride))


@dataclass(frozen=True)
class EvaluateParams(_Traced):
    split: Literal["val", "train"]
    bootstrap_resamples: int  # resamples of the images behind eval.json's 95% intervals
    bootstrap_seed: int
    boundary_dilation_ratio: float  # Boundary IoU's band: d = max(1, round(ratio * image diagonal)) pixels
    trimap_widths: tuple[int, ...]  # trimap mIoU: pixels within k px of a ground-truth class boundary, per k

    def __post_init__(self) -> None:
        _check_positive("evaluate", self, "bootstrap_resamples")
        _check_seed("evaluate.bootstrap_seed", self.bootstrap_seed)
        if not 0.0 < self.boundary_dilation_ratio < 1.0:
            _fail("evaluate.boundary_dilation_ratio", "a value in (0, 1)", self.boundary_dilation_ratio)
        widths = list(self.trimap_widths)
        if not widths or widths[0] < 1 or widths != sorted(set(widths)) or len(widths) > 16:
            _fail("evaluate.trimap_widths", "1 to 16 increasing pixel widths >= 1", widths)


@dataclass(frozen=True)
class VisualizeParams(_Traced):
    num_samples: int
    seed: int
    ids: tuple[str, ...]  # explicit '{city}_{seq}_{frame}' ids; overrides num_samples
    alpha: float  # overlay opacity
    worst_frames: int  # panels of the k frames with the lowest mIoU (metrics/per_image.csv); 0 = none

    def __post_init__(self) -> None:
        _check_positive("visualize", self, "num_samples")
        _check_seed("visualize.seed", self.seed)
        if self.worst_frames < 0:
            _fail("visualize.worst_frames", "a value >= 0", self.worst_frames)
        _check_range("visualize", self, "alpha", 0.0, 1.0)


@dataclass(frozen=True)
class ExportParams(_Traced):
    split: Literal["test", "val"]


# Cityscapes-C's corruptions (citypipe/robustness/corruptions.py defines them; a test keeps the two lists equal)
CorruptionName = Literal["motion_blur", "defocus_blur", "glass_blur", "gaussian_blur", "gaussian_noise",
                         "impulse_noise", "shot_noise", "speckle_noise", "brightness", "contrast", "saturate",
                         "jpeg_compression", "snow", "spatter", "fog", "frost"]
NOISES = ("gaussian_noise", "impulse_noise", "shot_noise", "speckle_noise")


@dataclass(frozen=True)
class RobustnessParams(_Traced):
    corruptions: tuple[CorruptionName, ...]
    severities: tuple[int, ...]  # of every corruption but the noises, each in 1..5
    noise_severities: tuple[int, ...]  # of the four noises (Kamann & Rother: 1..3)
    seed: int  # with (frame, corruption, severity): every corrupted pixel
    frames: int  # 0 = every val frame; N = N frames spread evenly over the sorted val frames
    batch_size: int
    workers: int  # DataLoader workers: the corruptions are computed there

    def __post_init__(self) -> None:
        _check_positive("robustness", self, "batch_size")
        if not self.corruptions or len(set(self.corruptions)) != len(self.corruptions):
            _fail("robustness.corruptions", "a non-empty list without repeats", list(self.corruptions))
        for name in ("severities", "noise_severities"):
            values = getattr(self, name)
            if not values or len(set(values)) != len(values) or not all(1 <= v <= 5 for v in values):
                _fail(f"robustness.{name}", "a non-empty list of distinct severities in 1..5", list(values))
        for name in ("frames", "workers"):
            if getattr(self, name) < 0:
                _fail(f"robustness.{name}", "a value >= 0", getattr(self, name))
        _check_parallel("robustness", self, "workers")

    def severities_of(self, corruption: str) -> tuple[int, ...]:
        noise, other = self.noise_severities, self.severities  # both read: the stage depends on both keys
        return noise if corruption in NOISES else other


@dataclass(frozen=True)
class DeployParams(_Traced):
    exporter: Literal["torchscript", "dynamo"]  # torch.onnx.export's TorchScript (legacy) or torch.export path
    opset: int
    check_frames: int  # val frames on which export-onnx compares onnxruntime's logits with PyTorch's
    logits_atol: float  # export-onnx fails when any logit differs by more than this
    calibration_frames: int  # int8: training frames (evenly spaced over the split) that calibrate activations
    calibration_method: Literal["minmax", "entropy", "percentile"]
    per_channel: bool  # int8 weights: one scale per output channel

    def __post_init__(self) -> None:
        _check_positive("deploy", self, "check_frames", "logits_atol", "calibration_frames")
        _check_range("deploy", self, "opset", 13, 21)
        if self.exporter == "dynamo" and self.opset < 18:  # torch.export's exporter writes opset 18 and up
            _fail("deploy.opset", "18 or more with deploy.exporter: dynamo", self.opset)


@dataclass(frozen=True)
class Params:
    data: DataParams
    device: DeviceParams
    synthesize: SynthesizeParams
    prepare: PrepareParams
    model: ModelParams
    train: TrainParams
    inference: InferenceParams
    evaluate: EvaluateParams
    visualize: VisualizeParams
    export: ExportParams
    robustness: RobustnessParams
    deploy: DeployParams


def _coerce(key: str, hint: Any, value: Any) -> Any:
    """Check one YAML value against its annotation; lists become tuples."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        if value not in typing.get_args(hint) or isinstance(value, bool):
            _fail(key, "one of " + ", ".join(map(repr, typing.get_args(hint))), value)
        return value
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            _fail(key, "a list", value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(f"{key}[{i}]", args[0], v) for i, v in enumerate(value))
        if len(value) != len(args):
            _fail(key, f"a list of {len(args)} values", value)
        return tuple(_coerce(f"{key}[{i}]", a, v) for i, (a, v) in enumerate(zip(args, value)))
    if hint is bool:
        if not isinstance(value, bool):
            _fail(key, "true or false", value)
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(key, "an integer", value)
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(key, "a number", value)
        if not abs(value) <= sys.float_info.max:  # NaN (which passes every range check), inf, or an int too big
            _fail(key, "a finite number", value)
        return float(value)
    elif hint is str:
        if not isinstance(value, str):
            _fail(key, "a string", value)
    return value


def _build_section(cls: type, name: str, raw: Any) -> Any:
    if not isinstance(raw, dict):
        _fail(name, "a mapping of keys", raw)
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(fields))
    missing = [f for f in fields if f not in raw]
    if unknown:
        raise CitypipeError(f"params: unknown key {name}.{unknown[0]} (known: {', '.join(fields)})")
    if missing:
        raise CitypipeError(f"params: missing key {name}.{missing[0]}")
    values = {f: _coerce(f"{name}.{f}", hints[f], raw[f]) for f in fields}
    section = cls(**values)
    object.__setattr__(section, "_section", name)  # after validation: __post_init__'s reads are not the code's
    return section


def params_from_dict(raw: Any) -> Params:
    """Validate a parsed params.yaml (a dict of sections) into `Params`."""
    if not isinstance(raw, dict):
        _fail("params", "a mapping of sections", raw)
    hints = typing.get_type_hints(Params)
    sections = [f.name for f in dataclasses.fields(Params)]
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise CitypipeError(f"params: unknown section {unknown[0]} (known: {', '.join(sections)})")
    missing = [s for s in sections if s not in raw]
    if missing:
        raise CitypipeError(f"params: missing section {missing[0]}")
    return Params(**{s: _build_section(hints[s], s, raw[s]) for s in sections})


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping: PyYAML keeps the last value
    silently, while DVC refuses the file, so the stages would run with a value DVC never showed."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                seen = key in first_line
            except TypeError:  # an unhashable key: SafeLoader's own error names it
                break
            if seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {first_line[key]})", key_node.start_mark)
            first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """'duplicate key 'lr' (first on line 52) at line 53' from PyYAML's multi-line message."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem:
        mark = error.problem_mark or error.context_mark
        return f"{error.problem} at line {mark.line + 1}" if mark else error.problem
    return " ".join(str(error).split())


def parse_yaml(text: str, name: str | Path) -> Any:
    """YAML text -> Python values with safe tags only and no duplicate keys; errors in one line naming `name`."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as error:
        raise CitypipeError(f"{name}: not valid YAML ({_yaml_problem(error)})") from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise CitypipeError(f"{name}: not valid YAML (collections nested too deeply)") from None


def load_params(path: str | Path = "params.yaml", overrides: dict[str, Any] | None = None) -> Params:
    """Read and validate params.yaml; `overrides` maps 'section.key' to a value (CLI flags)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise CitypipeError(f"{path}: file not found (expected the pipeline's params.yaml)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CitypipeError(f"{path}: cannot read ({first_line(error)}; expected the pipeline's params.yaml)") from None
    raw = parse_yaml(text, path)
    if raw is None:
        raise CitypipeError(f"{path}: the file is empty (expected the pipeline's params.yaml)")
    for dotted, value in (overrides or {}).items():
        section, key = dotted.split(".", 1)
        if not isinstance(raw, dict) or not isinstance(raw.get(section), dict):
            raise CitypipeError(f"{path}: params: missing section {section}")
        raw[section][key] = value
    try:
        params = params_from_dict(raw)
    except CitypipeError as error:
        raise CitypipeError(f"{path}: {error}") from None
    if os.environ.get(TRACE_VARIABLE):
        _start_trace(os.environ[TRACE_VARIABLE])
    return params


def section_dict(section: Any) -> dict[str, Any]:
    """A section as a plain dict of YAML-friendly values (tuples as lists), e.g. for checkpoints."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(section).items()}
