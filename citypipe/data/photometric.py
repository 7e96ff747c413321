"""mmseg's PhotoMetricDistortion (train.photometric: mmseg) on RGB uint8 crops, with cv2's 8-bit HSV.

Each step with probability 0.5, clipped and truncated to uint8 after each (mmseg's `convert`):
brightness +U(-32, 32); contrast xU(0.5, 1.5), either right after brightness or last (a fair coin,
mmseg's `mode`); saturation xU(0.5, 1.5) on HSV's S; hue +randint(-18, 18) (numpy's: -18..17) on
HSV's H, modulo 180. The draws come from the caller's generator in mmseg's order, so a sample's
distortion is a function of its seed. HSV is cv2's 8-bit convention (H in 0..179), reimplemented
here so the package needs no OpenCV; tests compare it with cv2.cvtColor (equal on every colour).

Speed: at the recipe's 512x1024 crops this was ~40-60 ms of a training sample's CPU, the largest
stage once the decoded-frame cache removes PNG decoding (docs/BENCHMARKS.md). So each per-value step
is a table: `convert` of a uint8 is a 256-entry lookup, S a function of (V, V - min), H of
(numerator, V - min), the HSV -> RGB factor of (H, S). The tables hold the formulas' own results,
so the pixels are those of the direct computation (tests compare the two on all 2^24 colours).
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


@functools.cache
def _saturation_table() -> np.ndarray:
    """(65536,) uint8: S = (diff x SDIV[v] + round) >> shift at [v << 8 | diff], diff = V - min."""
    v, diff = np.arange(256, dtype=np.int32)[:, None], np.arange(256, dtype=np.int32)[None, :]
    return ((diff * _SDIV[v] + _ROUND) >> _SHIFT).astype(np.uint8).ravel()


_HUE_NUMERATOR_MIN, _HUE_NUMERATOR_MAX = -255, 5 * 255  # g - b >= -diff; r - g + 4 diff <= 5 diff


@functools.cache
def _hue_table() -> np.ndarray:
    """(1531 x 256,) uint8: H = (numerator x HDIV[diff] + round) >> shift, +180 if negative, at
    [(numerator + 255) << 8 | diff]."""
    numerator = np.arange(_HUE_NUMERATOR_MIN, _HUE_NUMERATOR_MAX + 1, dtype=np.int32)[:, None]
    h = (numerator * _HDIV[None, :] + _ROUND) >> _SHIFT
    return np.where(h < 0, h + 180, h).astype(np.uint8).ravel()


def rgb_to_hsv(image: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (..., 3) uint8 HSV as cv2.cvtColor(COLOR_RGB2HSV): H 0..179, S and V 0..255.

    H's numerator is g - b where V is red, b - r + 2 diff where green, r - g + 4 diff where blue (red
    wins ties, then green), picked by 0/1 masks: several times faster than np.where in numpy."""
    r, g, b = (np.ascontiguousarray(image[..., i]) for i in range(3))
    v = np.maximum(np.maximum(r, g), b)
    diff = v - np.minimum(np.minimum(r, g), b)  # uint8: v >= min
    wide = np.int16  # numerators lie in -255..1275
    r16, g16, b16, diff16 = r.astype(wide), g.astype(wide), b.astype(wide), diff.astype(wide)
    red = (v == r).view(np.uint8).astype(wide)
    green = (v == g).view(np.uint8).astype(wide) * (1 - red)
    numerator = (g16 - b16) * red + (b16 - r16 + 2 * diff16) * green + (r16 - g16 + 4 * diff16) * (1 - red - green)
    hue_index = (numerator - _HUE_NUMERATOR_MIN).astype(np.int32) << 8
    hue_index |= diff
    saturation_index = v.astype(np.int32) << 8
    saturation_index |= diff
    out = np.empty(image.shape, np.uint8)
    out[..., 0] = np.take(_hue_table(), hue_index)
    out[..., 1] = np.take(_saturation_table(), saturation_index)
    out[..., 2] = v
    return out


@functools.cache
def _hsv_factors() -> np.ndarray:
    """(65536, 3) float32: at H << 8 | S, the factor of v that cv2 gives R, G and B: 1, 1 - s,
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
    table = np.take_along_axis(factors, rgb_of_sector[sector.astype(np.intp) % 6][:, None, :], axis=-1)
    return table.reshape(256 * 256, 3)  # np.take on one index is faster than indexing by two


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 HSV (cv2's 8-bit convention) -> (..., 3) uint8 RGB as cv2.cvtColor(COLOR_HSV2RGB) computes
    it in its SIMD path (OpenCV 4.x/5.x on x86): float32 v x factor, x255, truncated. That path takes
    each row in blocks of 4 vector widths (64 pixels with AVX-512), so it is every pixel of a
    1024-wide crop; cv2 rounds instead of truncating in a row's remainder (and older builds
    everywhere): within 1 level of this."""
    f32 = np.float32
    v = hsv[..., 2].astype(f32)
    v *= f32(1) / f32(255)
    index = hsv[..., 0].astype(np.intp) << 8
    index |= hsv[..., 1]
    rgb = np.take(_hsv_factors(), index, axis=0)  # (..., 3) float32 factors
    rgb *= v[..., None]  # v x factor, then x 255: cv2's order (float32 products are not associative)
    rgb *= f32(255)
    return rgb.astype(np.uint8)  # truncates, as np.trunc did: the values lie in 0..255


def _convert_values(values: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """mmseg's convert: float32 x alpha + beta, clipped to 0..255, truncated to uint8."""
    return np.clip(values.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def _convert(values: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """_convert_values of uint8 values, through its 256-entry table (~8x faster on a 512x1024 crop)."""
    return np.take(_convert_values(np.arange(256, dtype=np.uint8), alpha, beta), values)


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
        hsv[..., 0] = np.take(((np.arange(256) + plan.hue) % 180).astype(np.uint8), hsv[..., 0])  # H < 180
        out = hsv_to_rgb(hsv)
    if not plan.contrast_first and plan.contrast is not None:
        out = _convert(out, alpha=plan.contrast)
    return out


def mmseg_photometric_distortion(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return apply_photometric_plan(image, draw_photometric_plan(rng))
