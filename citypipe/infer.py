"""`citypipe infer`'s work: segment image files, a folder or a split, and write overlays and masks.

Predicts through the one `Predictor`; the test-time settings default to those the checkpoint was
validated with (whole images at train.val_size), so a model is never run at a scale it has not seen
unless asked, and a size far from the training scale gets a warning.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from citypipe.atomic import refuse_overwriting, write_png
from citypipe.corruptions.corrupt import corrupt
from citypipe.data.dataset import open_image
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
    """What the command line asked for; None = the checkpoint's own setting."""

    mode: str | None
    size: tuple[int, int] | None
    crop_size: tuple[int, int] | None
    stride: tuple[int, int] | None
    flip: bool | None
    scales: tuple[float, ...] | None
    amp: bool
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


def image_files(image: Path) -> tuple[Path, list[Path]]:
    """(the folder outputs mirror, the images): a folder is searched recursively (split/city/...)."""
    if image.is_dir():
        files = sorted(p for p in image.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
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


def check_output(output: Path, many: bool) -> None:
    if not many and output.is_dir():
        raise CitypipeError(f"--output {output}: is a folder; give a file name for the overlay (e.g. {output / 'overlay.png'})")
    if many and output.exists() and not output.is_dir():
        raise CitypipeError(f"--output {output}: is a file; give a folder for a folder of images")


def inference_config(stored: dict[str, Any], options: InferOptions, image_size: tuple[int, int]) -> InferenceConfig:
    """The checkpoint's validation settings (`stored`: its params), overridden by the options given.

    Slide windows default to the training crop, 2/3 of it apart (mmseg's overlap). A checkpoint that
    records no settings (not written by the train stage) predicts at the image's own size.
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
    which it has seen objects; None when it is close or the checkpoint records no training size."""
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


def infer_images(image: Path, output: Path, checkpoint: Path, device: DeviceParams, options: InferOptions) -> int:
    """Segment `image` (a file, or a folder searched recursively); write overlays (and masks) under
    `output`; returns the number of images."""
    base, inputs = image_files(image)
    many = image.is_dir()
    check_output(output, many)
    refuse_overwriting(inputs, [path for source in inputs for kind, path in output_files(output, base, source, many).items()
                                if kind == "overlay" or kind.lower() == options.mask])
    state = load_checkpoint(checkpoint)
    stored = state.get("params") or {}
    runtime = runtime_for(device)
    network = model_from_state(checkpoint, state, runtime.device, runtime.channels_last)
    warned = False
    for source in inputs:
        picture = corrupted(np.array(open_image(source)), options.corruption, options.corrupt_seed, source)  # (H, W, 3) uint8
        config = inference_config(stored, options, picture.shape[:2])
        check_scales(source, config, picture.shape[:2])
        if not warned:
            warning = scale_warning(config, stored, picture.shape[:2])
            if warning:
                print(f"warning: {warning}", file=sys.stderr)
            warned = True
        train_ids = predict_one(Predictor(network, runtime, config, options.amp), picture, source)
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
