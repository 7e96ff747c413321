"""The 16 corruptions of Cityscapes-C by name and family, and the one entry point: `corrupt`, a pure function
of (image, corruption, severity, seed, frame id). Its random stream is a numpy Generator seeded from a SHA-256 of
(seed, frame id, corruption, severity), not Python's salted hash(): the same pixels on any machine, in any
DataLoader worker, in any order."""
from __future__ import annotations

import hashlib
from typing import Callable

import numpy as np

from citypipe.errors import CitypipeError
from citypipe.corruptions import blur, digital, noise, weather

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]

# name -> (family, function), in Kamann & Rother's order (their Table 1)
CORRUPTIONS: dict[str, tuple[str, Corruption]] = {
    "motion_blur": ("blur", blur.motion_blur),
    "defocus_blur": ("blur", blur.defocus_blur),
    "glass_blur": ("blur", blur.glass_blur),
    "gaussian_blur": ("blur", blur.gaussian_blur),
    "gaussian_noise": ("noise", noise.gaussian_noise),
    "impulse_noise": ("noise", noise.impulse_noise),
    "shot_noise": ("noise", noise.shot_noise),
    "speckle_noise": ("noise", noise.speckle_noise),
    "brightness": ("digital", digital.brightness),
    "contrast": ("digital", digital.contrast),
    "saturate": ("digital", digital.saturate),
    "jpeg_compression": ("digital", digital.jpeg_compression),
    "snow": ("weather", weather.snow),
    "spatter": ("weather", weather.spatter),
    "fog": ("weather", weather.fog),
    "frost": ("weather", weather.frost),
}
SEVERITIES = (1, 2, 3, 4, 5)


def corruption_rng(seed: int, frame_id: str, corruption: str, severity: int) -> np.random.Generator:
    """A Generator of its own per (seed, frame, corruption, severity)."""
    digest = hashlib.sha256(f"{seed}\x00{frame_id}\x00{corruption}\x00{severity}".encode()).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:16], "little")))


def check_corruption(name: str, severity: int, where: str) -> None:
    if name not in CORRUPTIONS:
        raise CitypipeError(f"{where}: unknown corruption {name!r} (known: {', '.join(CORRUPTIONS)})")
    if severity not in SEVERITIES:
        raise CitypipeError(f"{where}: severity {severity!r} of {name}: expected one of 1, 2, 3, 4, 5")


def corrupt(image: np.ndarray, corruption: str, severity: int, seed: int, frame_id: str) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W, 3) uint8, `corruption` at `severity` (1..5)."""
    check_corruption(corruption, severity, "corrupt")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise CitypipeError(f"{frame_id}: expected an (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
    function = CORRUPTIONS[corruption][1]
    return function(image, severity, corruption_rng(seed, frame_id, corruption, severity))


def parse_corruption(text: str) -> tuple[str, int]:
    """'fog:3' -> ('fog', 3), for `citypipe infer --corrupt`."""
    name, _, severity = text.partition(":")
    if not severity.isdigit():
        raise CitypipeError(f"--corrupt {text}: expected NAME:SEVERITY, e.g. fog:3 (known: {', '.join(CORRUPTIONS)})")
    check_corruption(name, int(severity), f"--corrupt {text}")
    return name, int(severity)
