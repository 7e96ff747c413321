"""Blur corruptions (ImageNet-C). (H, W, 3) uint8 image + numpy Generator -> (H, W, 3) uint8."""
from __future__ import annotations

import math

import numpy as np

from citypipe.corruptions.filters import (
    correlate_2d_symmetric,
    correlate_axis,
    gaussian_filter,
    motion_blur_layer,
    stable,
    to_uint8,
)

MOTION = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))  # (radius, sigma) of the one-sided streak
DEFOCUS = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))  # (disk radius, anti-alias sigma)
GLASS = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))  # (sigma, max shift, iterations)
GAUSSIAN_SIGMA = (1, 2, 3, 4, 6)


def motion_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    radius, sigma = MOTION[severity - 1]
    return to_uint8(motion_blur_layer(image, radius, sigma, rng.uniform(-45, 45)))


def disk_kernel(radius: int, alias_sigma: float) -> np.ndarray:
    """(2R+1, 2R+1) float64, R = max(radius, 8): the reference's defocus kernel. An aliased disk (x^2 + y^2 <= r^2)
    normalised in float32, smoothed by OpenCV's GaussianBlur (3x3 up to r = 8, else 5x5) with its reflect-101
    border at the kernel's own edge, which folds mass back in: at r = 10 the kernel sums to 1.0108 (the
    reference brightens by about 1%), kept as published."""
    big_r = max(radius, 8)
    ksize = 3 if radius <= 8 else 5
    offsets = np.arange(-big_r, big_r + 1)
    disk = (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius ** 2).astype(np.float32)
    disk /= disk.sum()
    g = stable([math.exp(-(k * k) / (2 * alias_sigma * alias_sigma)) for k in range(-(ksize // 2), ksize // 2 + 1)])
    smoothed = correlate_axis(correlate_axis(disk.astype(np.float64), g, 0, "reflect"), g, 1, "reflect")
    return smoothed.astype(np.float32).astype(np.float64)  # OpenCV keeps the kernel in float32


def defocus_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """The reference's disk kernel applied as OpenCV's filter2D would (correlation, reflect-101 border)."""
    kernel = disk_kernel(*DEFOCUS[severity - 1])
    return to_uint8(np.clip(correlate_2d_symmetric(image / 255.0, kernel), 0, 1) * 255)


def gaussian_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return to_uint8(np.clip(gaussian_filter(image / 255.0, GAUSSIAN_SIGMA[severity - 1]), 0, 1) * 255)


def glass_shuffle(image: np.ndarray, max_shift: int, iterations: int, rng: np.random.Generator) -> np.ndarray:
    """ImageNet-C's local pixel shuffle, vectorised and exact. The reference visits every interior pixel (h, w),
    h = H-d..d+1 and w = W-d..d+1 descending, draws (dx, dy) uniform in [-d, d) and "swaps" x[h, w] with
    x[h + dy, w + dx] by a tuple assignment of numpy views, which copies one way: x[h, w] takes the source's
    value, the source keeps it. So the result of one sweep is out[p] = out[src(p)] where the source was visited
    before p (it lies below, or right on the same row), else the original x[src(p)]: chains resolved here by
    pointer jumping (log of the chain length passes) instead of the raster loop's H x W Python steps."""
    x = image.copy()
    height, width = x.shape[:2]
    d = max_shift
    rows, cols = np.arange(height - d, d, -1), np.arange(width - d, d, -1)  # visit order: descending
    grid_h, grid_w = (g.ravel() for g in np.meshgrid(rows, cols, indexing="ij"))  # (P,) in visit order
    visit = np.full(height * width, -1)
    visit[grid_h * width + grid_w] = np.arange(grid_h.size)
    where = grid_h * width + grid_w  # flat positions of the visited pixels
    for _ in range(iterations):
        shifts = rng.integers(-d, d, size=(grid_h.size, 2))  # (P, 2): (dx, dy) per pixel, drawn in visit order
        source = (grid_h + shifts[:, 1]) * width + (grid_w + shifts[:, 0])
        pointer = np.arange(height * width)  # position -> where its value comes from
        pointer[where] = source
        live = np.zeros(height * width, dtype=bool)  # the source is itself rewritten before this pixel is
        live[where] = (visit[source] >= 0) & (visit[source] < np.arange(grid_h.size))
        while live.any():
            pointer, live = np.where(live, pointer[pointer], pointer), live & live[pointer]
        x = x.reshape(height * width, -1)[pointer].reshape(x.shape)
    return x


def glass_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma, max_shift, iterations = GLASS[severity - 1]
    blurred = (gaussian_filter(image / 255.0, sigma) * 255).astype(np.uint8)
    shuffled = glass_shuffle(blurred, max_shift, iterations, rng)
    return to_uint8(np.clip(gaussian_filter(shuffled / 255.0, sigma), 0, 1) * 255)
