"""mmseg's PhotoMetricDistortion (train.photometric: mmseg) on RGB uint8 crops, with cv2's 8-bit HSV.

Each step with probability 0.5, clipped and truncated to uint8 after each (mmseg's `convert`):
brightness +U(-32, 32); contrast xU(0.5, 1.5), either right after brightness or last (a fair coin,
mmseg's `mode`); saturation xU(0.5, 1.5) on HSV's S; hue +randint(-18, 18) (numpy's: -18..17) on
HSV's H, modulo 180. The draws come from the caller's generator in mmseg's order, so a sample's
distortion is a function of its seed. HSV is cv2's 8-bit convention (H in 0..179), reimplemented
here so the package needs no OpenCV; tests compare it with cv2.cvtColor (equal on every colour).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

_SHIFT = 12  # cv2's hsv_shift: fixed point for the 8-bit RGB -> HSV divisions
_ROUND = 1 << (_SHIFT - 1)
_SDIV = np.array([0] + [round((255 << _SHIFT) / v) for v in range(1, 256)], np.int32)  # (256,) for S = diff / V
_HDIV = np.array([0] + [round((180 << _SHIFT) / (6 * d)) for d in range(1, 256)], np.int32)  # (256,) for H
# cv2's HSV -> RGB sector table: for each sixth of the hue circle, which of (v, p, q, t) is (b, g, r)
_SECTORS = np.array([[1, 3, 0], [1, 0, 2], [3, 0, 1], [0, 2, 1], [0, 1, 3], [2, 1, 0]])


def rgb_to_hsv(image: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (..., 3) uint8 HSV as cv2.cvtColor(COLOR_RGB2HSV): H 0..179, S and V 0..255."""
    r, g, b = (image[..., i].astype(np.int32) for i in range(3))
    v = np.maximum(np.maximum(r, g), b)
    diff = v - np.minimum(np.minimum(r, g), b)
    s = (diff * _SDIV[v] + _ROUND) >> _SHIFT
    h = np.where(v == r, g - b, np.where(v == g, b - r + 2 * diff, r - g + 4 * diff))  # red wins ties, then green
    h = (h * _HDIV[diff] + _ROUND) >> _SHIFT
    h += np.where(h < 0, 180, 0).astype(np.int32)
    return np.stack([h, s, v], axis=-1).astype(np.uint8)


@functools.cache
def _hsv_factors() -> np.ndarray:
    """(256, 256, 3) float32: for each (H, S), the factor of v that cv2 gives R, G and B: 1, 1 - s,
    1 - s f or 1 - s (1 - f) by the hue's sector (H >= 180 wraps around, as in cv2), with 1 - s*f
    fused as an FMA does (float32 x float32 is exact in float64; one rounding)."""
    f32 = np.float32
    h = np.arange(256, dtype=f32) * (f32(6) / f32(180))  # 0 <= h < 6 for H in 0..179
    sector = np.trunc(h)
    f = h - sector  # (256,) float32
    f_wide, rest_wide = f.astype(np.float64)[:, None], (f32(1) - f).astype(np.float64)[:, None]  # (256, 1)
    s = np.arange(256, dtype=f32) * (f32(1) / f32(255))  # (256,)
    wide_s = s.astype(np.float64)[None, :]
    factors = np.stack([np.ones((256, 256), f32), np.broadcast_to(f32(1) - s, (256, 256)),
                        (1.0 - wide_s * f_wide).astype(f32), (1.0 - wide_s * rest_wide).astype(f32)], axis=-1)  # (256, 256, 4)
    rgb_of_sector = _SECTORS[:, ::-1]  # cv2's table gives (b, g, r)
    return np.take_along_axis(factors, rgb_of_sector[sector.astype(np.intp) % 6][:, None, :], axis=-1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 HSV (cv2's 8-bit convention) -> (..., 3) uint8 RGB as cv2.cvtColor(COLOR_HSV2RGB) computes
    it in its SIMD path (OpenCV 4.x/5.x on x86): float32 v x factor, x255, truncated. That path takes
    each row in blocks of 4 vector widths (64 pixels with AVX-512), so it is every pixel of a
    1024-wide crop; cv2 rounds instead of truncating in a row's remainder (and older builds
    everywhere): within 1 level of this."""
    f32 = np.float32
    v = hsv[..., 2].astype(f32) * (f32(1) / f32(255))
    factor = _hsv_factors()[hsv[..., 0], hsv[..., 1]]  # (..., 3)
    return np.trunc(v[..., None] * factor * f32(255)).astype(np.uint8)


def _convert(values: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """mmseg's convert: float32 x alpha + beta, clipped to 0..255, truncated to uint8."""
    return np.clip(values.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class PhotometricPlan:
    """One draw of the distortion; None = the step is skipped."""

    brightness: float | None  # added, in -32..32
    contrast: float | None  # factor, 0.5..1.5
    contrast_first: bool  # mmseg's mode 1: contrast right after brightness, else last
    saturation: float | None  # factor on S, 0.5..1.5
    hue: int | None  # added to H (mod 180), -18..17


def draw_photometric_plan(rng: np.random.Generator) -> PhotometricPlan:
    """The draws in mmseg's order: brightness, mode, [contrast if mode 1], saturation, hue, [contrast if mode 0]."""
    brightness = rng.uniform(-32, 32) if rng.integers(2) else None
    contrast_first = bool(rng.integers(2))
    contrast = None
    if contrast_first:
        contrast = rng.uniform(0.5, 1.5) if rng.integers(2) else None
    saturation = rng.uniform(0.5, 1.5) if rng.integers(2) else None
    hue = int(rng.integers(-18, 18)) if rng.integers(2) else None
    if not contrast_first:
        contrast = rng.uniform(0.5, 1.5) if rng.integers(2) else None
    return PhotometricPlan(brightness, contrast, contrast_first, saturation, hue)


def apply_photometric_plan(image: np.ndarray, plan: PhotometricPlan) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> the same distorted, step by step as mmseg."""
    out = image if plan.brightness is None else _convert(image, beta=plan.brightness)
    if plan.contrast_first and plan.contrast is not None:
        out = _convert(out, alpha=plan.contrast)
    if plan.saturation is not None:
        hsv = rgb_to_hsv(out)
        hsv[..., 1] = _convert(hsv[..., 1], alpha=plan.saturation)
        out = hsv_to_rgb(hsv)
    if plan.hue is not None:
        hsv = rgb_to_hsv(out)
        hsv[..., 0] = (hsv[..., 0].astype(np.int64) + plan.hue) % 180
        out = hsv_to_rgb(hsv)
    if not plan.contrast_first and plan.contrast is not None:
        out = _convert(out, alpha=plan.contrast)
    return out


def mmseg_photometric_distortion(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return apply_photometric_plan(image, draw_photometric_plan(rng))
