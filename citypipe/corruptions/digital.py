"""Digital corruptions (ImageNet-C): brightness and saturation in HSV, contrast about the mean, JPEG. Deterministic:
the Generator argument is unused, kept for one signature across corruptions. (H, W, 3) uint8 in and out."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from citypipe.corruptions.filters import to_uint8

BRIGHTNESS_SHIFT = (0.1, 0.2, 0.3, 0.4, 0.5)  # added to HSV value
CONTRAST_FACTOR = (0.4, 0.3, 0.2, 0.1, 0.05)  # distance from the per-channel mean kept
SATURATE = ((0.3, 0.0), (0.1, 0.0), (2.0, 0.0), (5.0, 0.1), (20.0, 0.2))  # HSV saturation s -> s * a + b
JPEG_QUALITY = (25, 18, 15, 10, 7)


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) float64 in [0, 1] -> HSV in [0, 1], as skimage.color.rgb2hsv (hue 0 where the pixel is grey)."""
    v = rgb.max(-1)
    delta = v - rgb.min(-1)
    safe = np.where(delta == 0, 1.0, delta)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    # where two channels tie for the max, the later case wins (blue over green over red), as in skimage
    hue = np.where(b == v, 4.0 + (r - g) / safe, np.where(g == v, 2.0 + (b - r) / safe, (g - b) / safe))
    hue = np.where(delta == 0, 0.0, (hue / 6.0) % 1.0)
    s = np.where(delta == 0, 0.0, delta / np.where(v == 0, 1.0, v))
    return np.stack([hue, s, v], axis=-1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Inverse of rgb_to_hsv, as skimage.color.hsv2rgb: six hue sectors."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    sector = np.floor(h * 6)
    f = h * 6 - sector
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    choices = np.stack([np.stack(c, axis=-1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    index = (sector.astype(np.uint8) % 6)[None, ..., None]  # (1, H, W, 1)
    return np.take_along_axis(choices, np.broadcast_to(index, (1,) + choices.shape[1:]), axis=0)[0]


def brightness(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    hsv = rgb_to_hsv(image / 255.0)
    hsv[..., 2] = np.clip(hsv[..., 2] + BRIGHTNESS_SHIFT[severity - 1], 0, 1)
    return to_uint8(np.clip(hsv_to_rgb(hsv), 0, 1) * 255)


def contrast(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    x = image / 255.0
    means = np.mean(x, axis=(0, 1), keepdims=True)  # (1, 1, 3)
    return to_uint8(np.clip((x - means) * CONTRAST_FACTOR[severity - 1] + means, 0, 1) * 255)


def saturate(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    scale, offset = SATURATE[severity - 1]
    hsv = rgb_to_hsv(image / 255.0)
    hsv[..., 1] = np.clip(hsv[..., 1] * scale + offset, 0, 1)
    return to_uint8(np.clip(hsv_to_rgb(hsv), 0, 1) * 255)


def jpeg_compression(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """PIL's encoder at the severity's quality (its defaults: 4:2:0 subsampling, standard tables), decoded again."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=JPEG_QUALITY[severity - 1])
    return np.array(Image.open(buffer).convert("RGB"))
