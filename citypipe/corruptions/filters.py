"""Filters the corruptions share, written as sums of shifted arrays: only IEEE additions and multiplications in a
fixed order over the pixels, so the same input gives the same bits on any x86-64 machine (no BLAS, no FFT, no
SIMD-dispatched transcendental on pixel arrays). Kernel weights come from Python's `math`, rounded to float32
and back, so a last-bit difference between libm builds cannot reach them."""
from __future__ import annotations

import math

import numpy as np


def stable(weights: list[float]) -> np.ndarray:
    """Kernel weights, normalised, with libm's last-bit noise rounded away (float64 holding float32 values)."""
    rounded = np.array(weights, dtype=np.float32).astype(np.float64)
    return rounded / rounded.sum()


def gaussian_weights(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """(2r+1,) normalised Gaussian, r = int(truncate * sigma + 0.5): scipy.ndimage's kernel (skimage's `gaussian`)."""
    radius = int(truncate * sigma + 0.5)
    return stable([math.exp(-0.5 * k * k / (sigma * sigma)) for k in range(-radius, radius + 1)])


def correlate_axis(x: np.ndarray, weights: np.ndarray, axis: int, mode: str) -> np.ndarray:
    """Correlate float64 `x` along `axis` with symmetric odd-length `weights`; borders padded by np.pad `mode`
    ('edge' = scipy's 'nearest', 'reflect' = OpenCV's BORDER_REFLECT_101)."""
    r = len(weights) // 2
    n = x.shape[axis]
    padded = np.moveaxis(np.pad(x, [(r, r) if a == axis else (0, 0) for a in range(x.ndim)], mode=mode), axis, 0)
    out = weights[r] * padded[r:r + n]
    for k in range(1, r + 1):
        out += weights[r + k] * (padded[r + k:r + k + n] + padded[r - k:r - k + n])
    return np.moveaxis(out, 0, axis)


def gaussian_filter(x: np.ndarray, sigma: float) -> np.ndarray:
    """skimage.filters.gaussian(x, sigma, channel_axis=-1) for (H, W[, C]) float64: mode 'nearest', truncate 4."""
    weights = gaussian_weights(sigma)
    return correlate_axis(correlate_axis(x, weights, 0, "edge"), weights, 1, "edge")


def correlate_2d_symmetric(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlate (H, W[, C]) float64 with a (2R+1, 2R+1) kernel symmetric in dx, border reflect-101 (OpenCV's
    filter2D default). Each kernel row is a plateau (a run of equal values about dx = 0, summed as a difference of
    prefix sums: 2 operations whatever its length) plus its remaining taps in +-dx pairs. A defocus disk is all
    plateaus: 2R+1 box sums instead of (2R+1)^2 taps."""
    big_r = kernel.shape[0] // 2
    h, w = x.shape[:2]
    padded = np.pad(x, [(big_r, big_r), (big_r, big_r)] + [(0, 0)] * (x.ndim - 2), mode="reflect")
    prefix = np.concatenate([np.zeros_like(padded[:, :1]), np.cumsum(padded, axis=1)], axis=1)  # left to right
    tiny = kernel.max() * 1e-12  # OpenCV's anti-alias Gaussian leaves ~1e-22 outside the disk: nothing
    out = np.zeros(x.shape)
    for i, row in enumerate(kernel):
        plateau, half = row[big_r], 0
        while half < big_r and row[big_r + half + 1] == plateau and row[big_r - half - 1] == plateau:
            half += 1
        if plateau > tiny:
            rows = prefix[i:i + h]
            out += plateau * (rows[:, big_r + half + 1:big_r + half + 1 + w] - rows[:, big_r - half:big_r - half + w])
        for dx in range(half + 1, big_r + 1):
            if row[big_r + dx] > tiny:
                out += row[big_r + dx] * (padded[i:i + h, big_r + dx:big_r + dx + w] + padded[i:i + h, big_r - dx:big_r - dx + w])
    return out


def motion_blur_layer(x: np.ndarray, radius: int, sigma: float, angle: float) -> np.ndarray:
    """(H, W[, C]) -> float64: ImageNet-C's motion blur, a one-sided Gaussian of 2r+1 taps along `angle` (degrees),
    each tap the image shifted by whole pixels with its border repeated (slices of one edge-padded copy)."""
    width = 2 * radius + 1
    weights = stable([math.exp(-i * i / (2 * sigma * sigma)) for i in range(width)])
    point = (width * math.sin(math.radians(angle)), width * math.cos(math.radians(angle)))
    hypot = math.hypot(*point)
    shifts = []
    for i in range(width):
        dy = -math.ceil(i * point[0] / hypot - 0.5)
        dx = -math.ceil(i * point[1] / hypot - 0.5)
        if abs(dy) >= x.shape[0] or abs(dx) >= x.shape[1]:
            break  # the streak left the image
        shifts.append((dy, dx))
    pad = max(max(abs(dy), abs(dx)) for dy, dx in shifts)
    h, w = x.shape[:2]
    padded = np.pad(x.astype(np.float64), [(pad, pad), (pad, pad)] + [(0, 0)] * (x.ndim - 2), mode="edge")
    out = np.zeros(x.shape)
    for i, (dy, dx) in enumerate(shifts):
        out += weights[i] * padded[pad - dy:pad - dy + h, pad - dx:pad - dx + w]  # out[y] = x[clip(y - dy)]
    return out


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 255] floats -> uint8 by truncation, as `imagecorruptions.corrupt` converts (np.uint8 of the float)."""
    return np.clip(x, 0, 255).astype(np.uint8)
