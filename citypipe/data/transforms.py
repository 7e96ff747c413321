"""Paired image/label transforms for training, on uint8 arrays, driven by an explicit generator.

Random scale and crop are fused: only the source region that lands in the crop is resized, so a
1024x2048 frame is never scaled whole just to keep 512x1024 of it. The image's filter is
train.resize: PIL's bilinear (antialiased when shrinking) with a box, or cv2's INTER_LINEAR (no
antialiasing, mmseg's), computed here bit for bit. Labels always take PIL's nearest neighbour.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from citypipe.data.photometric import mmseg_photometric_distortion
from citypipe.labels import IGNORE_INDEX


@dataclass(frozen=True)
class TrainTransform:
    base_size: tuple[int, int]  # (H, W) at scale 1.0
    scale_range: tuple[float, float]
    crop_size: tuple[int, int]  # (H, W)
    flip_prob: float  # probability of a horizontal flip
    photometric: str  # "none" | "simple" (photometric_distortion) | "mmseg" (photometric.py)
    cat_max_ratio: float  # retry a crop (up to 10 times) with < 2 classes or one class at this share or more
    resize: str  # the image's filter: "antialias" (PIL) | "bilinear" (cv2's INTER_LINEAR)

    def __call__(self, image: Image.Image | np.ndarray, label: Image.Image,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """image: an RGB PIL image or its (H, W, 3) uint8 pixels (prepare-labels' frame cache, memory-mapped);
        -> (crop_h, crop_w, 3) uint8 image, (crop_h, crop_w) uint8 trainIds (padding = 255)."""
        scale = rng.uniform(*self.scale_range)
        scaled = (max(1, round(self.base_size[0] * scale)), max(1, round(self.base_size[1] * scale)))
        for _ in range(10):  # mmseg's RandomCrop: up to 10 tries, then the last window
            window = _crop_window(scaled, self.crop_size, rng)
            crop_label = _resized_crop(label, scaled, window, self.crop_size, Image.NEAREST, IGNORE_INDEX)
            if self.cat_max_ratio >= 1.0 or _crop_accepted(crop_label, self.cat_max_ratio):
                break
        if self.resize == "antialias":
            source = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
            crop_image = _resized_crop(source, scaled, window, self.crop_size, Image.BILINEAR, 0)
        else:
            crop_image = bilinear_resized_crop(np.asarray(image), scaled, window, self.crop_size)
        if rng.random() < self.flip_prob:
            crop_image, crop_label = crop_image[:, ::-1], crop_label[:, ::-1]
        if self.photometric == "simple":
            crop_image = photometric_distortion(crop_image, rng)
        elif self.photometric == "mmseg":
            crop_image = mmseg_photometric_distortion(crop_image, rng)
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


def _linear_taps(start: int, length: int, scaled: int, source: int,
                 clamp_weights: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """cv2's INTER_LINEAR taps for scaled-image pixels start..start+length: the centre-aligned source
    position (d + 0.5) x source/scaled - 0.5 in float32, weights in 11-bit fixed point. -> (i0, i1, w0, w1).

    Past the border cv2 reads the edge pixel; along x it also moves the whole weight onto it
    (clamp_weights), along y it keeps both weights on the clamped rows (with its rounding)."""
    position = ((np.arange(start, start + length) + 0.5) * (source / scaled) - 0.5).astype(np.float32)
    i0 = np.floor(position).astype(np.int64)
    frac = position - i0.astype(np.float32)
    if clamp_weights:
        frac[(i0 < 0) | (i0 >= source - 1)] = 0
    i1, i0 = np.clip(i0 + 1, 0, source - 1), np.clip(i0, 0, source - 1)
    scale = np.float32(2048)  # INTER_RESIZE_COEF_SCALE
    return i0, i1, np.round((1 - frac) * scale).astype(np.int32), np.round(frac * scale).astype(np.int32)


def bilinear_resized_crop(source: np.ndarray, scaled: tuple[int, int], corner: tuple[int, int],
                          crop: tuple[int, int]) -> np.ndarray:
    """cv2.resize(source, scaled, INTER_LINEAR)[window] bit for bit, computing only the window: the
    horizontal pass in int32 on the rows the window reads, then cv2's vertical fixed-point rounding.
    source: (H, W, C) uint8 -> (crop_h, crop_w, C) uint8, padded at the bottom/right with 0."""
    y0, x0 = corner
    valid_h, valid_w = min(crop[0], scaled[0] - y0), min(crop[1], scaled[1] - x0)
    iy0, iy1, by0, by1 = _linear_taps(y0, valid_h, scaled[0], source.shape[0], clamp_weights=False)
    ix0, ix1, ax0, ax1 = _linear_taps(x0, valid_w, scaled[1], source.shape[1], clamp_weights=True)
    channels, first, last = source.shape[2], int(iy0.min()), int(iy1.max()) + 1
    rows = source[first:last].reshape(last - first, -1)  # (R, W*C): the source rows the window reads
    lanes = np.arange(channels)
    horizontal = np.take(rows, (ix0[:, None] * channels + lanes).ravel(), axis=1) * np.repeat(ax0, channels)
    horizontal += np.take(rows, (ix1[:, None] * channels + lanes).ravel(), axis=1) * np.repeat(ax1, channels)
    horizontal = (horizontal >> 4).reshape(last - first, valid_w, channels)  # (R, w, C) int32
    top = (horizontal[iy0 - first] * by0[:, None, None]) >> 16
    top += (horizontal[iy1 - first] * by1[:, None, None]) >> 16
    region = ((top + 2) >> 2).astype(np.uint8)  # (h, w, C)
    if (valid_h, valid_w) == tuple(crop):
        return region
    canvas = np.zeros((crop[0], crop[1], channels), dtype=np.uint8)
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
