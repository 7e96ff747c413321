"""Noise corruptions (ImageNet-C): constants per severity 1..5 from Hendrycks & Dietterich, as imagecorruptions
1.1.2 packages them. Each takes a (H, W, 3) uint8 image and a numpy Generator, and returns (H, W, 3) uint8."""
from __future__ import annotations

import numpy as np

from citypipe.corruptions.filters import to_uint8

GAUSSIAN_SIGMA = (0.08, 0.12, 0.18, 0.26, 0.38)  # std of additive noise on [0, 1] pixels
SHOT_PHOTONS = (60, 25, 12, 5, 3)  # Poisson rate per unit intensity (fewer photons, more noise)
IMPULSE_AMOUNT = (0.03, 0.06, 0.09, 0.17, 0.27)  # share of values set to 0 or 1 (salt and pepper, half each)
SPECKLE_SIGMA = (0.15, 0.2, 0.35, 0.45, 0.6)  # std of multiplicative noise


def gaussian_noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    x = image / 255.0
    return to_uint8(np.clip(x + rng.normal(0.0, GAUSSIAN_SIGMA[severity - 1], x.shape), 0, 1) * 255)


def shot_noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    photons = SHOT_PHOTONS[severity - 1]
    x = image / 255.0
    return to_uint8(np.clip(rng.poisson(x * photons) / float(photons), 0, 1) * 255)


def impulse_noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Each value (per channel) is hit with probability `amount`; a hit is salt (1) or pepper (0) with equal odds,
    drawn as skimage.util.random_noise(mode='s&p') draws them: two uniform fields, hit = u1 <= amount, salt = u2 <= 0.5."""
    x = image / 255.0
    hit = rng.random(x.shape) <= IMPULSE_AMOUNT[severity - 1]
    salt = rng.random(x.shape) <= 0.5
    x[hit & salt] = 1.0
    x[hit & ~salt] = 0.0
    return to_uint8(x * 255)


def speckle_noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    x = image / 255.0
    return to_uint8(np.clip(x + x * rng.normal(0.0, SPECKLE_SIGMA[severity - 1], x.shape), 0, 1) * 255)
