"""`citypipe infer`'s work: segment image files, a folder or a split, and write overlays and masks.

Predicts with a checkpoint through the one `Predictor`, or with an exported ONNX model through the
deployment runtime (`OnnxSegmenter`, as the evaluate-onnx stage scores it). The test-time settings
default to those the model records: a checkpoint's validation size and training crop, an ONNX model's
input_size and the training scale export-onnx copied into its metadata; so a model is never run at a
scale it has not seen unless asked, and a size far from the training scale gets a warning.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from citypipe.atomic import refuse_overwriting, write_png
from citypipe.corruptions.corrupt import corrupt
from citypipe.data.frames import open_image
from citypipe.deploy.runtime import DeployInference, OnnxSegmenter
from citypipe.errors import CitypipeError, is_out_of_memory
from citypipe.models.checkpoint import load_checkpoint, model_from_state
from citypipe.params import DeviceParams, scale_to_zero, stride_leaves_gaps
from citypipe.prediction.inference import InferenceConfig
from citypipe.prediction.predictor import Predictor
from citypipe.runtime import runtime_for
from citypipe.submission.files import to_label_ids
from citypipe.visualization.panels import overlay_figure

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
FAR_FROM_TRAINING = 2.0  # warn when the network input is over 2x larger or smaller than the training scale


@dataclass(frozen=True)
class InferOptions:
    """What the command line asked for; None = the model's own setting."""

    mode: str | None
    size: tuple[int, int] | None
    crop_size: tuple[int, int] | None
    stride: tuple[int, int] | None
    flip: bool | None
    scales: tuple[float, ...] | None
    mask: str  # none | trainids | labelids
    alpha: float
    corruption: tuple[str, int] | None = None  # --corrupt NAME:SEVERITY: segment the Cityscapes-C version
    corrupt_seed: int = 0  # the robustness stage's robustness.seed gives the stage's own pixels


def corrupted(picture: np.ndarray, corruption: tuple[str, int] | None, seed: int, source: Path) -> np.ndarray:
    """(H, W, 3) uint8 as the robustness stage corrupts this frame: its frame id is the file name less
    `_leftImg8bit`, so with the stage's seed these are the stage's own pixels."""
    if corruption is None:
        return picture
    frame_id = source.name.removesuffix(source.suffix).removesuffix("_leftImg8bit")
    return corrupt(picture, corruption[0], corruption[1], seed, frame_id)


def _inside(path: Path, folder: Path) -> bool:
    return Path(os.path.realpath(folder)) in Path(os.path.realpath(path)).parents


def image_files(image: Path, output: Path | None = None) -> tuple[Path, list[Path]]:
    """(the folder outputs mirror, the images): a folder is searched recursively (split/city/...), but not
    the `output` folder inside it: the overlays of a first run are not images to segment on the next."""
    if image.is_dir():
        skip = output if output is not None and _inside(output, image) else None
        files = sorted(p for p in image.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                       and (skip is None or not _inside(p, skip)))
        if not files:
            raise CitypipeError(f"{image}: folder has no images ({', '.join(IMAGE_SUFFIXES)}), sub-folders included")
        return image, files
    if not image.is_file():
        raise CitypipeError(f"{image}: no such image or folder")
    return image.parent, [image]


def output_files(output: Path, base: Path, source: Path, many: bool) -> dict[str, Path]:
    """Where one image's overlay and masks go: OUT/<path below base>/<stem>_overlay.png, or OUT itself."""
    if many:
        stem = output / source.relative_to(base).parent / source.stem
        return {kind: stem.with_name(f"{stem.name}_{kind}.png") for kind in ("overlay", "trainIds", "labelIds", "corrupted")}
    return {"overlay": output,
            **{kind: output.with_name(f"{output.stem}_{kind}.png") for kind in ("trainIds", "labelIds", "corrupted")}}


def check_distinct(targets: dict[Path, dict[str, Path]]) -> None:
    """Two images whose outputs would be one file (photo.png and photo.jpg both give photo_overlay.png): one
    overlay would silently replace the other, so neither is written."""
    written: dict[Path, Path] = {}
    for source, paths in targets.items():
        overlay = paths["overlay"]
        if overlay in written:
            raise CitypipeError(f"{written[overlay]} and {source}: both would be written to {overlay} (the same name "
                                "but for the suffix); rename one, or segment them separately")
        written[overlay] = source


def check_output(output: Path, many: bool) -> None:
    if not many and output.is_dir():
        raise CitypipeError(f"--output {output}: is a folder; give a file name for the overlay (e.g. {output / 'overlay.png'})")
    if many and output.exists() and not output.is_dir():
        raise CitypipeError(f"--output {output}: is a file; give a folder for a folder of images")


@dataclass(frozen=True)
class Model:
    """What infer predicts with: the settings the model records, in the shape of a checkpoint's stored params
    ({"train": {"base_size", "crop_size"}, "validation": {"size"}}, any of them may be missing), and
    predict((H, W, 3) uint8, config, source file) -> (H, W) uint8 trainIds."""

    stored: dict[str, Any]
    predict: Callable[[np.ndarray, InferenceConfig, Path], np.ndarray]


def checkpoint_model(checkpoint: Path, device: DeviceParams, amp: bool) -> Model:
    """A checkpoint's network on params' device, predicting through `Predictor` (fp32 unless `amp`)."""
    state = load_checkpoint(checkpoint)
    runtime = runtime_for(device)
    network = model_from_state(checkpoint, state, runtime.device, runtime.channels_last)
    return Model(state.get("params") or {},
                 lambda picture, config, source: predict_one(Predictor(network, runtime, config, amp), picture, source))


def onnx_settings(metadata: dict[str, Any]) -> dict[str, Any]:
    """An exported model's metadata as the settings a checkpoint stores: whole images at its input_size
    (the size it was exported and verified at), its training scale where export-onnx recorded it (files
    exported before it did have none: slide windows then default to input_size, and no scale warning)."""
    train = metadata.get("train") or {}
    return {"train": {key: train[key] for key in ("base_size", "crop_size") if train.get(key)},
            "validation": {"size": metadata["input_size"]} if metadata.get("input_size") else {}}


def onnx_model(path: Path, threads: int) -> Model:
    """An exported model (model.onnx or model_int8.onnx), on the CPU through the deployment runtime; its
    settings from the metadata inside the graph (model.json's content, so the file alone suffices)."""
    segmenter = OnnxSegmenter(path, threads)

    def predict(picture: np.ndarray, config: InferenceConfig, source: Path) -> np.ndarray:
        images = np.ascontiguousarray(picture.transpose(2, 0, 1)[None])  # (1, 3, H, W) uint8
        return segmenter.predict(images, DeployInference(**dataclasses.asdict(config)))[0]

    return Model(onnx_settings(segmenter.metadata), predict)


def inference_config(stored: dict[str, Any], options: InferOptions, image_size: tuple[int, int]) -> InferenceConfig:
    """The model's validation settings (`stored`: a checkpoint's params, or onnx_settings), overridden by
    the options given.

    Slide windows default to the training crop, 2/3 of it apart (mmseg's overlap). A model that records
    no settings (a checkpoint not written by the train stage) predicts at the image's own size.
    """
    train = stored.get("train", {})
    validated = stored.get("validation") or {}
    mode = options.mode or "whole"
    size = tuple(options.size or validated.get("size") or image_size)
    crop = tuple(options.crop_size or train.get("crop_size") or size)
    stride = tuple(options.stride or (max(1, c * 2 // 3) for c in crop))
    if mode == "slide" and stride_leaves_gaps(stride, crop):
        raise CitypipeError(f"--stride {' '.join(map(str, stride))}: expected at most --crop-size "
                            f"{' '.join(map(str, crop))} on each axis (a larger stride leaves pixels unpredicted)")
    flip = options.flip if options.flip is not None else False
    scales = options.scales or (1.0,)
    return InferenceConfig(mode, size, crop, stride, flip, scales)


def scale_warning(config: InferenceConfig, stored: dict[str, Any], image_size: tuple[int, int]) -> str | None:
    """A warning when the network would see images far (over 2x) from train.base_size, the only scale at
    which it has seen objects; None when it is close or the model records no training size."""
    base = stored.get("train", {}).get("base_size")
    if not base:
        return None
    seen = config.size if config.mode == "whole" else image_size
    ratios = [s * scale / b for s, b in zip(seen, base) for scale in config.scales]
    if max(ratios) <= FAR_FROM_TRAINING and min(ratios) >= 1 / FAR_FROM_TRAINING:
        return None
    return (f"the network sees {seen[0]}x{seen[1]} images, far from its training scale {base[0]}x{base[1]} "
            "(train.base_size): expect poor predictions; see --size / --mode slide")


def check_scales(source: Path, config: InferenceConfig, image_size: tuple[int, int]) -> None:
    """A scale that rounds the network input (whole: config.size; slide: the image) to zero pixels cannot be
    predicted: say which, before the model runs."""
    size = config.size if config.mode == "whole" else image_size
    bad = scale_to_zero(size, config.scales)
    if bad is not None:
        raise CitypipeError(f"--scales {bad}: {source} at {size[0]}x{size[1]} would be {round(size[0] * bad)}x"
                            f"{round(size[1] * bad)} pixels (expected scales that keep at least 1 pixel)")


def infer_images(image: Path, output: Path, load_model: Callable[[], Model], options: InferOptions) -> int:
    """Segment `image` (a file, or a folder searched recursively) with the model `load_model` gives (called
    once the inputs and outputs are checked); write overlays (and masks) under `output`; returns the
    number of images."""
    many = image.is_dir()
    base, inputs = image_files(image, output if many else None)
    check_output(output, many)
    targets = {source: output_files(output, base, source, many) for source in inputs}
    check_distinct(targets)
    refuse_overwriting(inputs, [path for source in inputs for kind, path in targets[source].items()
                                if kind == "overlay" or kind.lower() == options.mask])
    model = load_model()
    warned = False
    for source in inputs:
        picture = corrupted(np.array(open_image(source)), options.corruption, options.corrupt_seed, source)  # (H, W, 3) uint8
        config = inference_config(model.stored, options, picture.shape[:2])
        check_scales(source, config, picture.shape[:2])
        if not warned:
            warning = scale_warning(config, model.stored, picture.shape[:2])
            if warning:
                print(f"warning: {warning}", file=sys.stderr)
            warned = True
        train_ids = model.predict(picture, config, source)
        targets = output_files(output, base, source, many)
        overlay_figure(picture, train_ids, options.alpha, source.name, targets["overlay"])
        if options.corruption is not None:  # what the network saw, beside the overlay
            write_png(targets["corrupted"], picture)
        if options.mask == "trainids":
            write_png(targets["trainIds"], train_ids)
        elif options.mask == "labelids":
            write_png(targets["labelIds"], to_label_ids(train_ids))
    return len(inputs)


def predict_one(predictor: Predictor, picture: np.ndarray, source: Path) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) uint8 trainIds; running out of memory names the image and the option to change."""
    tensor = torch.from_numpy(picture).permute(2, 0, 1)[None].to(predictor.runtime.device)
    try:
        return predictor.predict(tensor)[0].cpu().numpy()
    except (RuntimeError, MemoryError) as error:  # torch.OutOfMemoryError is a RuntimeError
        if not is_out_of_memory(error):
            raise
        size = predictor.config.size
        raise CitypipeError(f"{source}: out of memory at {size[0]}x{size[1]} on {predictor.runtime.device} "
                            f"(use --size to run the network smaller)") from None
