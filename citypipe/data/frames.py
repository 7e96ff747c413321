"""A frame's pixels: its PNG decoded, or the decoded copy prepare-labels caches (prepare.image_cache).

Decoding a 1024x2048 PNG costs ~68 ms of one core, two thirds of a training sample at the real recipe
(docs/BENCHMARKS.md); reading the same pixels from an uncompressed .npy costs ~2 ms. Both paths give
the same (H, W, 3) uint8 pixels: the cache is written from open_image's own decode.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from citypipe.errors import CitypipeError, first_line


def decoded(path: Path, what: str) -> Image.Image:
    """Open and decode `path` now: PIL decodes lazily, so a truncated file would otherwise fail later,
    outside this try, without its name."""
    try:
        image = Image.open(path)
        image.load()
        return image
    except Exception as error:
        raise CitypipeError(f"{path}: cannot read {what} ({first_line(error)})") from None


def open_image(path: Path) -> Image.Image:
    image = decoded(path, "image")
    if image.mode == "F" or (image.mode == "I" and np.asarray(image).min() < 0):
        # a float or signed image (a TIFF under a .png name): no colour scale to read it by; as 8 bits it is black
        raise CitypipeError(f"{path}: image of mode {image.mode} (floating-point or signed pixels); expected 8- or "
                            "16-bit RGB or greyscale")
    return to_rgb8(image)


def to_rgb8(image: Image.Image) -> Image.Image:
    """Any PIL image -> 8-bit RGB. 16-bit greyscale keeps its high byte (PIL's convert would clip it to white)."""
    if image.mode.startswith("I;16") or (image.mode == "I" and np.asarray(image).max() > 255):
        image = Image.fromarray((np.asarray(image).astype(np.uint32) >> 8).astype(np.uint8))
    return image.convert("RGB") if image.mode != "RGB" else image


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) from the image file's header, without decoding its pixels."""
    try:
        with Image.open(path) as image:
            return image.size[1], image.size[0]
    except Exception as error:
        raise CitypipeError(f"{path}: cannot read image ({first_line(error)})") from None


def write_cached_frame(image: Path, target: Path) -> tuple[int, int]:
    """Decode `image` as the loader does and save its pixels to `target` as an uncompressed .npy;
    returns (H, W). The caller writes into a temporary folder (prepare-labels' atomic_dir)."""
    pixels = np.asarray(open_image(image))  # (H, W, 3) uint8
    np.save(target, pixels, allow_pickle=False)
    return pixels.shape[0], pixels.shape[1]


def read_cached_frame(cached: Path, image: Path) -> np.ndarray:
    """(H, W, 3) uint8 pixels of `image` from its .npy copy, memory-mapped: the resize then reads only
    the rows its crop needs. A copy that is unreadable, truncated or of another size than the image's
    header says is stale: one line naming it, never different pixels."""
    try:
        pixels = np.load(cached, mmap_mode="r", allow_pickle=False)  # a truncated file fails here (mmap length)
    except Exception as error:
        raise CitypipeError(f"{cached}: cannot read the cached frame ({first_line(error)}); "
                            "rerun prepare-labels") from None
    height, width = image_size(image)
    if pixels.dtype != np.uint8 or pixels.shape != (height, width, 3):
        raise CitypipeError(f"{cached}: cached frame is {pixels.dtype} {pixels.shape}, but {image.name} is "
                            f"{width}x{height} (expected uint8 ({height}, {width}, 3)); stale: rerun prepare-labels")
    return pixels


def train_frame(image: Path, cached: Path) -> Image.Image | np.ndarray:
    """The training loader's read: the cached pixels where prepare-labels wrote them, else the PNG.
    Which one is decided by the file's presence, not by a param: the cache folder is a dependency of
    the train stage, so DVC already tracks it, and prepare-labels replaces that folder whole, so
    copies from an earlier prepare.image_cache: true never outlive it."""
    return read_cached_frame(cached, image) if cached.is_file() else open_image(image)
