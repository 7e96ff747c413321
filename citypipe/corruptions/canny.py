"""The water-drop shading of ImageNet-C's spatter (severities 1-3), which the reference builds from OpenCV calls:
Canny edges of the drop field, distance to the nearest edge (capped at 20), blurred, histogram-equalised, embossed
and blurred again. Written here in numpy after OpenCV's definitions (integer Sobel with repeated border,
L1 magnitude, OpenCV's non-maximum suppression and hysteresis; the 5x5 chamfer distance with a = 1, b = 1.4,
c = 2.1969), so the stage needs no OpenCV."""
from __future__ import annotations

import numpy as np

TG22 = 13573  # tan(22.5 deg) in OpenCV's Canny fixed point (<< 15)
EMBOSS = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
CHAMFER = [(dy, dx, w) for dy in range(-2, 3) for dx in range(-2, 3) for w in [
    {1: 1.0, 2: 1.4, 5: 2.1969}.get(dy * dy + dx * dx)] if w is not None]  # (offset, weight) of the 5x5 L2 mask
CAP = 20.0  # the reference truncates the distance here


def _shifted(padded: np.ndarray, dy: int, dx: int, pad: int, shape: tuple[int, int]) -> np.ndarray:
    """View of `padded` (padded by `pad`) such that out[y, x] = original[y + dy, x + dx]."""
    return padded[pad + dy:pad + dy + shape[0], pad + dx:pad + dx + shape[1]]


def correlate3x3(x: np.ndarray, kernel: np.ndarray, mode: str) -> np.ndarray:
    """3x3 correlation in int64 (exact) or float64, border by np.pad `mode`."""
    padded = np.pad(x, 1, mode=mode)
    out = np.zeros(x.shape, dtype=np.int64 if x.dtype.kind in "iub" else np.float64)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if kernel[dy + 1, dx + 1]:
                out = out + kernel[dy + 1, dx + 1] * _shifted(padded, dy, dx, 1, x.shape)
    return out


def canny(image: np.ndarray, low: int, high: int) -> np.ndarray:
    """(H, W) uint8 -> (H, W) bool edges: OpenCV's Canny with a 3x3 Sobel and the L1 gradient norm."""
    img = image.astype(np.int64)
    dx = correlate3x3(img, np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]), "edge")
    dy = correlate3x3(img, np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]]), "edge")
    mag = np.abs(dx) + np.abs(dy)
    m = np.pad(mag, 1)  # neighbours outside the image count as 0
    left, right = _shifted(m, 0, -1, 1, mag.shape), _shifted(m, 0, 1, 1, mag.shape)
    up, down = _shifted(m, -1, 0, 1, mag.shape), _shifted(m, 1, 0, 1, mag.shape)
    xs, ys = np.abs(dx), np.abs(dy) << 15
    tg22x = xs * TG22
    tg67x = tg22x + (xs << 16)
    s = np.where((dx ^ dy) < 0, -1, 1)
    up_diag = np.where(s < 0, _shifted(m, -1, 1, 1, mag.shape), _shifted(m, -1, -1, 1, mag.shape))  # row above, x - s
    down_diag = np.where(s < 0, _shifted(m, 1, -1, 1, mag.shape), _shifted(m, 1, 1, 1, mag.shape))  # row below, x + s
    horizontal, vertical = ys < tg22x, ys > tg67x
    is_max = np.where(horizontal, (mag > left) & (mag >= right),
                      np.where(vertical, (mag > up) & (mag >= down), (mag > up_diag) & (mag > down_diag)))
    candidate = (mag > low) & is_max
    edges = candidate & (mag > high)
    while True:  # hysteresis: weak candidates 8-connected to an edge become edges
        p = np.pad(edges, 1)
        grown = candidate & np.logical_or.reduce([_shifted(p, a, b, 1, edges.shape) for a in (-1, 0, 1) for b in (-1, 0, 1)])
        if (grown == edges).all():
            return edges
        edges = grown


def chamfer_distance(edges: np.ndarray) -> np.ndarray:
    """(H, W) float32 distance to the nearest edge pixel along 5x5 chamfer paths, capped at CAP (OpenCV's
    distanceTransform(DIST_L2, 5) then THRESH_TRUNC at 20), by relaxing until nothing changes."""
    dist = np.where(edges, 0.0, CAP).astype(np.float32)
    while True:
        p = np.pad(dist, 2, constant_values=np.inf)
        relaxed = dist
        for dy, dx, w in CHAMFER:
            relaxed = np.minimum(relaxed, _shifted(p, dy, dx, 2, dist.shape) + np.float32(w))
        if (relaxed == dist).all():
            return dist
        dist = relaxed


def box3(x: np.ndarray) -> np.ndarray:
    """OpenCV's blur(x, (3, 3)): the 3x3 mean, reflect-101 border, float64."""
    return correlate3x3(x.astype(np.float64), np.ones((3, 3)), "reflect") / 9.0


def equalize_hist(x: np.ndarray) -> np.ndarray:
    """OpenCV's equalizeHist on uint8: the cumulative histogram from the first occupied level, scaled to 255."""
    hist = np.bincount(x.ravel(), minlength=256)
    first = int(np.flatnonzero(hist)[0])
    if hist[first] == x.size:
        return np.full_like(x, first)
    scale = np.float32(255.0) / np.float32(x.size - hist[first])
    lut = np.rint((np.cumsum(hist) - hist[first]).astype(np.float32) * scale)
    return np.clip(lut, 0, 255).astype(np.uint8)[x]


def water_distance(level: np.ndarray) -> np.ndarray:
    """(H, W) uint8 drop field -> (H, W) float32 shading weights, as the reference's OpenCV chain computes them."""
    dist = chamfer_distance(canny(level, 50, 150))
    dist = box3(dist).astype(np.uint8)
    dist = equalize_hist(dist)
    dist = np.clip(correlate3x3(dist, EMBOSS, "reflect"), 0, 255).astype(np.uint8)
    return np.rint(box3(dist)).astype(np.float32)
