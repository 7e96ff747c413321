"""Paired image/label transforms for training, on uint8 arrays, driven by an explicit generator.

Random scale and crop are fused: only the source region that lands in the crop is resized
(PIL's resize with a box), so a 1024x2048 frame is never scaled whole just to keep 512x1024 of it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from citypipe.labels import IGNORE_INDEX


@dataclass(frozen=True)
class TrainTransform:
    base_size: tuple[int, int]  # (H, W) at scale 1.0
    scale_range: tuple[float, float]
    crop_size: tuple[int, int]  # (H, W)
    flip_prob: float  # probability of a horizontal flip
    photometric: bool
    cat_max_ratio: float  # retry a crop (up to 10 times) with < 2 classes or one class at this share or more

    def __call__(self, image: Image.Image, label: Image.Image, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """-> (crop_h, crop_w, 3) uint8 image, (crop_h, crop_w) uint8 trainIds (padding = 255)."""
        scale = rng.uniform(*self.scale_range)
        scaled = (max(1, round(self.base_size[0] * scale)), max(1, round(self.base_size[1] * scale)))
        for _ in range(10):  # mmseg's RandomCrop: up to 10 tries, then the last window
            window = _crop_window(scaled, self.crop_size, rng)
            crop_label = _resized_crop(label, scaled, window, self.crop_size, Image.NEAREST, IGNORE_INDEX)
            if self.cat_max_ratio >= 1.0 or _crop_accepted(crop_label, self.cat_max_ratio):
                break
        crop_image = _resized_crop(image, scaled, window, self.crop_size, Image.BILINEAR, 0)
        if rng.random() < self.flip_prob:
            crop_image, crop_label = crop_image[:, ::-1], crop_label[:, ::-1]
        if self.photometric:
            crop_image = photometric_distortion(crop_image, rng)
        return np.ascontiguousarray(crop_image), np.ascontiguousarray(crop_label)


def _crop_window(scaled: tuple[int, int], crop: tuple[int, int], rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner (y, x) of the crop in the scaled image."""
    return int(rng.integers(0, max(scaled[0] - crop[0], 0) + 1)), int(rng.integers(0, max(scaled[1] - crop[1], 0) + 1))


def _resized_crop(source: Image.Image, scaled: tuple[int, int], corner: tuple[int, int], crop: tuple[int, int],
                  resample: int, fill: int) -> np.ndarray:
    """The crop of `source` resized to `scaled`, padded at the bottom/right with `fill`."""
    y0, x0 = corner
    valid_h, valid_w = min(crop[0], scaled[0] - y0), min(crop[1], scaled[1] - x0)
    sy, sx = source.height / scaled[0], source.width / scaled[1]
    box = (x0 * sx, y0 * sy, (x0 + valid_w) * sx, (y0 + valid_h) * sy)
    region = np.array(source.resize((valid_w, valid_h), resample, box=box))  # writable, for torch
    if (valid_h, valid_w) == tuple(crop):
        return region
    canvas = np.full((crop[0], crop[1], *region.shape[2:]), fill, dtype=np.uint8)
    canvas[:valid_h, :valid_w] = region
    return canvas


def _crop_accepted(label: np.ndarray, cat_max_ratio: float) -> bool:
    """mmseg's RandomCrop rule: more than one class (ignore excluded) and no class at cat_max_ratio or above.

    An all-ignore crop (padding, or void regions) has no class at all and is drawn again.
    """
    counts = np.bincount(label.ravel(), minlength=256)[:IGNORE_INDEX]  # (255,) pixels per trainId
    present = counts[counts > 0]
    return bool(present.size > 1 and present.max() / present.sum() < cat_max_ratio)


def photometric_distortion(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """mmseg-style: brightness (+-32), contrast and saturation (x0.5..1.5), each with p=0.5."""
    out = image.astype(np.float32)
    if rng.random() < 0.5:
        out += rng.uniform(-32, 32)
    if rng.random() < 0.5:
        out *= rng.uniform(0.5, 1.5)
    if rng.random() < 0.5:
        gray = out @ np.array([0.299, 0.587, 0.114], np.float32)
        alpha = rng.uniform(0.5, 1.5)
        out = gray[..., None] + alpha * (out - gray[..., None])
    return np.clip(out, 0, 255).astype(np.uint8)
