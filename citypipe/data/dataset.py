"""Datasets over the official layout: training crops and full-resolution evaluation frames.

Workers return uint8 tensors; normalisation happens on the device (4x less to copy).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from citypipe.data.layout import Sample, cache_path
from citypipe.data.transforms import TrainTransform
from citypipe.errors import CitypipeError, first_line

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _decoded(path: Path, what: str) -> Image.Image:
    """Open and decode `path` now: PIL decodes lazily, so a truncated file would otherwise fail later,
    outside this try, without its name."""
    try:
        image = Image.open(path)
        image.load()
        return image
    except Exception as error:
        raise CitypipeError(f"{path}: cannot read {what} ({first_line(error)})") from None


def open_image(path: Path) -> Image.Image:
    image = _decoded(path, "image")
    if image.mode == "F" or (image.mode == "I" and np.asarray(image).min() < 0):
        # a float or signed image (a TIFF under a .png name): no colour scale to read it by; as 8 bits it is black
        raise CitypipeError(f"{path}: image of mode {image.mode} (floating-point or signed pixels); expected 8- or "
                            "16-bit RGB or greyscale")
    return to_rgb8(image)


def to_rgb8(image: Image.Image) -> Image.Image:
    """Any PIL image -> 8-bit RGB. 16-bit greyscale keeps its high byte (PIL's convert would clip it to white)."""
    if image.mode.startswith("I;16") or (image.mode == "I" and np.asarray(image).max() > 255):
        image = Image.fromarray((np.asarray(image).astype(np.uint32) >> 8).astype(np.uint8))
    return image.convert("RGB") if image.mode != "RGB" else image


def normalize(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) uint8 -> float, ImageNet-normalised, on the images' device."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1) * 255
    return (images.float() - mean) / std


def open_cached_label(cache: Path, sample: Sample) -> Image.Image:
    """The sample's trainId PNG from prepare-labels' cache; a clear error when the cache is stale."""
    path = cache_path(cache, sample.split, sample.frame_id)
    if not path.is_file():
        raise CitypipeError(f"{path}: missing from the trainId cache (rerun prepare-labels)")
    return _decoded(path, "trainId label")


class TrainCrops(Dataset):
    """Indexed by (sample index, seed): the sampler supplies each draw's augmentation seed, so a
    draw is augmented the same way whatever the number of workers or ranks."""

    def __init__(self, samples: list[Sample], cache: Path, transform: TrainTransform) -> None:
        self.samples, self.cache, self.transform = samples, Path(cache), transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = key
        sample = self.samples[index]
        image, label = self.transform(open_image(sample.image), open_cached_label(self.cache, sample),
                                      np.random.default_rng(seed))
        return torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(label)  # (3, h, w), (h, w) uint8


class EvalFrames(Dataset):
    """Full-resolution frames: (3, H, W) uint8 image, (H, W) uint8 trainIds, (H, W) int32 instanceIds."""

    def __init__(self, samples: list[Sample], cache: Path | None, with_labels: bool = True) -> None:
        self.samples, self.cache, self.with_labels = samples, cache, with_labels

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        image = torch.from_numpy(np.array(open_image(sample.image))).permute(2, 0, 1)
        item = {"image": image, "frame_id": sample.frame_id}
        if self.with_labels:
            label = np.array(open_cached_label(self.cache, sample))
            if label.shape != tuple(image.shape[1:]):
                raise CitypipeError(f"{cache_path(self.cache, sample.split, sample.frame_id)}: label size {label.shape} "
                                    f"differs from image {tuple(image.shape[1:])} (rerun prepare-labels)")
            item["label"] = torch.from_numpy(label)
            item["instances"] = torch.from_numpy(read_instance_ids(sample.instance_ids, label.shape))
        return item


INSTANCE_MODES = ("I", "I;16", "I;16B", "I;16L")  # the official instanceIds PNGs: 16-bit (or 32-bit) integers


def read_instance_ids(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) int32 instanceIds (labelId * 1000 + instance). An 8-bit file cannot hold those ids (24000+):
    it would silently drop the frame's instances out of iIoU, so it is refused."""
    image = _decoded(path, "instanceIds")
    if image.mode not in INSTANCE_MODES:
        raise CitypipeError(f"{path}: instanceIds PNG has mode {image.mode}, expected 16-bit integers (mode I;16 or I, "
                            "ids like 26001 = labelId x 1000 + instance)")
    ids = np.array(image, dtype=np.int32)
    if ids.shape != tuple(shape):
        raise CitypipeError(f"{path}: instanceIds size {ids.shape[1]}x{ids.shape[0]} differs from its frame's "
                            f"{shape[1]}x{shape[0]}")
    return ids


def collate_frames(items: list[dict]) -> dict:
    """A batch of EvalFrames items; frames of another size than the batch's first are named (the default
    collate stops with a stack traceback instead)."""
    first = items[0]
    for item in items[1:]:
        if item["image"].shape != first["image"].shape:
            size, other = tuple(item["image"].shape[1:]), tuple(first["image"].shape[1:])
            raise CitypipeError(f"{item['frame_id']}: frame size {size[1]}x{size[0]} differs from {first['frame_id']}'s "
                                f"{other[1]}x{other[0]} in one batch (expected one size per split, or batch_size 1)")
    return torch.utils.data.default_collate(items)
