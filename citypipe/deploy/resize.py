"""Bilinear resizing in numpy that follows torch.nn.functional.interpolate (mode="bilinear",
align_corners=False), with and without antialias, so the torch-free runtime resizes as prediction does.

Both are separable: per axis, each output sample is a weighted sum of a few input samples ("taps").
Plain bilinear has 2 taps (source index scale*(i+0.5)-0.5, clamped at 0); antialias widens the
triangle filter by the shrink factor (PIL's and torch's `_upsample_bilinear2d_aa` rule), which for
enlarging is the same as plain bilinear. The weights are computed as torch computes them (bit-identical, tested); applying
them sums in another order, so results differ from torch's in the last bits (measured in tests/test_deploy.py).
"""
from __future__ import annotations

import numpy as np


F32 = np.float32


def _bilinear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(out, 2) source indices and weights of bilinear, align_corners=False."""
    # torch: scale = (float)in/out; src = scale * (i + 0.5) - 0.5 in float32, compiled as one fused
    # multiply-add (a single rounding), which float64 arithmetic rounded once to float32 reproduces
    scale = np.float64(F32(in_size / out_size))
    src = np.maximum((scale * (np.arange(out_size) + 0.5) - 0.5).astype(F32), F32(0))
    low = np.minimum(src.astype(np.int64), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    frac = (src - low).astype(F32)
    return np.stack([low, high], 1), np.stack([1 - frac, frac], 1)


def _antialias_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(out, taps) source indices and normalised triangle-filter weights (zero-padded to equal length),
    in float32 step by step as torch computes them (the weights come out bit-identical)."""
    scale = F32(in_size / out_size)
    support = scale if scale >= 1 else F32(1.0)  # the filter widens by the shrink factor
    inv_scale = F32(1.0) / scale if scale >= 1 else F32(1.0)
    taps = int(np.ceil(support)) * 2 + 1
    indices = np.zeros((out_size, taps), dtype=np.int64)
    weights = np.zeros((out_size, taps), dtype=F32)
    for i in range(out_size):
        center = scale * F32(i + 0.5)
        first = max(int(center - support + F32(0.5)), 0)
        count = min(int(center + support + F32(0.5)), in_size) - first
        offsets = np.arange(count)
        w = np.maximum(F32(1) - np.abs(((offsets + first).astype(F32) - center + F32(0.5)) * inv_scale), F32(0))
        total = F32(0)
        for value in w:  # torch sums sequentially in float32
            total = F32(total + value)
        indices[i, :count] = first + offsets
        weights[i, :count] = w / total
    return indices, weights


def _apply(x: np.ndarray, axis: int, indices: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted sum of taps along `axis`; weights broadcast over the other axes."""
    shape = [1] * x.ndim
    shape[axis] = indices.shape[0]
    out = np.zeros(x.shape[:axis] + (indices.shape[0],) + x.shape[axis + 1:], dtype=np.float32)
    for k in range(indices.shape[1]):
        out += np.take(x, indices[:, k], axis=axis) * weights[:, k].reshape(shape)
    return out


def resize_bilinear(x: np.ndarray, size: tuple[int, int], antialias: bool = False) -> np.ndarray:
    """(N, C, h, w) float -> (N, C, H, W) float32 at size (H, W), as F.interpolate(mode="bilinear",
    align_corners=False, antialias=antialias)."""
    taps = _antialias_taps if antialias else _bilinear_taps
    x = x.astype(np.float32, copy=False)
    if x.shape[-2] != size[0]:
        x = _apply(x, x.ndim - 2, *taps(x.shape[-2], size[0]))
    if x.shape[-1] != size[1]:
        x = _apply(x, x.ndim - 1, *taps(x.shape[-1], size[1]))
    return x
