"""prepare-labels: labelIds PNGs -> trainId cache, with per-image class pixel counts.

The cache mirrors gtFine: {cache}/{split}/{city}/{id}_gtFine_labelTrainIds.png, the name
cityscapesscripts' createTrainIdLabelImgs gives its output. With prepare.image_cache it also holds
each train frame's decoded image, {id}_leftImg8bit.npy beside its trainIds (data/frames.py), which
the training loader reads ~40x faster than the PNG. Images are processed one at a time in worker
threads, so the full 5,000-image Cityscapes never sits in memory.
"""
from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np
from PIL import Image

from citypipe.atomic import atomic_dir
from citypipe.data import layout
from citypipe.data.frames import image_size, write_cached_frame
from citypipe.errors import CitypipeError
from citypipe.labels import NUM_CLASSES, label_id_to_train_id_lut, valid_label_ids
from citypipe.parallel import map_with_progress
from citypipe.prepare.label_png import encode_label_png


@dataclass(frozen=True)
class LabelJob:
    sample: layout.Sample
    output: Path
    frame_output: Path | None = None  # where to cache the decoded image (prepare.image_cache), or None


def read_label_ids(path: Path) -> np.ndarray:
    """(H, W) uint8 labelIds; clear errors for a missing, corrupt or wrong-mode PNG.

    imagecodecs' libpng decoder: 1.5x Pillow's decode plus copy on label maps, and it releases the GIL.
    """
    if not path.is_file():
        raise CitypipeError(f"{path}: missing label file (every leftImg8bit image needs its gtFine_labelIds.png)")
    try:
        data = path.read_bytes()
        _check_pixel_count(path, data)
        label_ids = imagecodecs.png_decode(data)
    except CitypipeError:
        raise
    except Exception as error:
        raise CitypipeError(f"{path}: cannot read PNG ({error})") from None
    if label_ids.dtype != np.uint8 or label_ids.ndim != 2:
        raise CitypipeError(f"{path}: labelIds PNG decodes to {label_ids.dtype} {label_ids.shape}, "
                            "expected 8-bit single channel (H, W)")
    return label_ids


def max_label_pixels() -> int:
    """Pillow's limit for images (it refuses twice MAX_IMAGE_PIXELS as a decompression bomb), for labels too."""
    return 2 * (Image.MAX_IMAGE_PIXELS or 0) or 2 ** 62


def _check_pixel_count(path: Path, data: bytes) -> None:
    """A tiny PNG can declare 60000x60000 pixels: read the size from its header and refuse it before
    the decoder allocates the whole map (3.6 GB there)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        if width * height > max_label_pixels():
            raise CitypipeError(f"{path}: labelIds PNG of {width}x{height} pixels is over the limit of "
                                f"{max_label_pixels()} (Pillow's for images; a decompression bomb?)")


@functools.cache
def _tables() -> tuple[np.ndarray, np.ndarray]:
    """(256,) bool: which values are labelIds; (256,) uint8 labelId -> trainId LUT."""
    valid = np.zeros(256, dtype=bool)
    valid[list(valid_label_ids())] = True
    return valid, label_id_to_train_id_lut()


def convert_one(job: LabelJob) -> np.ndarray:
    """Write one trainId PNG; returns (20,) int64 pixel counts: trainIds 0..18, then ignored.

    Every step releases the GIL (decode, Pillow's C histogram, np.take, zlib; Pillow's image decode
    and np.save's write too), so threads scale.
    """
    label_ids = read_label_ids(job.sample.label_ids)  # (H, W) uint8
    if job.frame_output is None:
        height, width = image_size(job.sample.image)  # the header only
    else:
        height, width = write_cached_frame(job.sample.image, job.frame_output)
    if label_ids.shape != (height, width):
        raise CitypipeError(f"{job.sample.label_ids}: label size {label_ids.shape[1]}x{label_ids.shape[0]} "
                            f"differs from its image {job.sample.image.name} ({width}x{height})")
    valid, lut = _tables()
    # Pillow's histogram of a uint8 map: 0.7 ms per 1024x2048 frame, 3x np.bincount (which widens to int64)
    label_counts = np.asarray(Image.fromarray(label_ids).histogram(), dtype=np.int64)  # (256,) pixels per labelId
    bad = np.flatnonzero((label_counts > 0) & ~valid)
    if bad.size:
        raise CitypipeError(f"{job.sample.label_ids}: value {bad[0]} is no Cityscapes labelId (expected 0..33)")
    job.output.write_bytes(encode_label_png(np.take(lut, label_ids)))  # inside prepare_labels' temporary folder
    train_counts = np.zeros(256, dtype=np.int64)
    np.add.at(train_counts, lut, label_counts)
    return np.concatenate([train_counts[:NUM_CLASSES], [train_counts[NUM_CLASSES:].sum()]])


def check_no_extra_labels(root: Path, split: str, samples: list[layout.Sample], cities: tuple[str, ...]) -> None:
    """A labelIds file without its image means a broken download or copy: fail loudly."""
    expected = {s.label_ids for s in samples}
    for path in sorted((Path(root) / "gtFine" / split).glob("*/*_gtFine_labelIds.png")):
        if (not cities or path.parent.name in cities) and path not in expected:
            raise CitypipeError(f"{path}: extra label file with no leftImg8bit image")


def prepare_labels(root: str | Path, cache: str | Path, cities: tuple[str, ...], workers: int,
                   splits: tuple[str, ...] = ("train", "val"),
                   image_cache: bool = False) -> dict[str, tuple[list[str], np.ndarray]]:
    """Build the trainId cache (replaced whole, atomically), with the train split's decoded images
    where `image_cache` (only the training loader decodes a frame per sample; evaluation reads each
    val frame once per validation).

    Returns {split: (frame ids, (N, 20) int64 per-image pixel counts)}.
    """
    plan = {split: layout.find_samples(root, split, cities) for split in splits}
    for split, samples in plan.items():
        check_no_extra_labels(Path(root), split, samples, cities)
    results: dict[str, tuple[list[str], np.ndarray]] = {}
    with atomic_dir(cache) as tmp:
        jobs = [LabelJob(s, layout.cache_path(tmp, split, s.frame_id),
                         layout.frame_cache_path(tmp, split, s.frame_id) if image_cache and split == "train" else None)
                for split in splits for s in plan[split]]
        for folder in {job.output.parent for job in jobs}:
            folder.mkdir(parents=True, exist_ok=True)
        counts = map_with_progress(convert_one, jobs, workers, "prepare-labels")
        start = 0
        for split in splits:
            n = len(plan[split])
            results[split] = ([s.frame_id for s in plan[split]], np.stack(counts[start:start + n]))
            start += n
    return results
