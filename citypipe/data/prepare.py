"""prepare-labels: labelIds PNGs -> trainId cache, with per-image class pixel counts.

The cache mirrors gtFine: {cache}/{split}/{city}/{id}_gtFine_labelTrainIds.png, the name
cityscapesscripts' createTrainIdLabelImgs gives its output. Images are processed one at a time
in worker processes, so the full 5,000-image Cityscapes never sits in memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from citypipe.atomic import atomic_dir, write_png
from citypipe.data import layout
from citypipe.errors import CitypipeError
from citypipe.parallel import map_with_progress
from citypipe.labels import NUM_CLASSES, label_id_to_train_id_lut, valid_label_ids



@dataclass(frozen=True)
class LabelJob:
    sample: layout.Sample
    output: Path


def cache_path(cache: Path, split: str, fid: str) -> Path:
    return Path(cache) / split / fid.split("_")[0] / f"{fid}_gtFine_labelTrainIds.png"


def read_label_ids(path: Path) -> np.ndarray:
    """(H, W) uint8 labelIds; clear errors for a missing, corrupt or wrong-mode PNG."""
    if not path.is_file():
        raise CitypipeError(f"{path}: missing label file (every leftImg8bit image needs its gtFine_labelIds.png)")
    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "P"):
                raise CitypipeError(f"{path}: labelIds PNG has mode {image.mode}, expected 8-bit single channel (L)")
            return np.asarray(image)
    except CitypipeError:
        raise
    except Exception as error:
        raise CitypipeError(f"{path}: cannot read PNG ({error})") from None


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) from the PNG header only."""
    try:
        with Image.open(path) as image:
            return image.size[1], image.size[0]
    except Exception as error:
        raise CitypipeError(f"{path}: cannot read image ({error})") from None


def to_train_ids(label_ids: np.ndarray, path: Path) -> np.ndarray:
    """(H, W) uint8 labelIds -> (H, W) uint8 trainIds; rejects values that are no labelId."""
    valid = np.zeros(256, dtype=bool)
    valid[list(valid_label_ids())] = True
    present = np.flatnonzero(np.bincount(label_ids.ravel(), minlength=256))
    bad = [int(v) for v in present if not valid[v]]
    if bad:
        raise CitypipeError(f"{path}: value {bad[0]} is no Cityscapes labelId (expected 0..33)")
    return label_id_to_train_id_lut()[label_ids]


def convert_one(job: LabelJob) -> np.ndarray:
    """Write one trainId PNG; returns (20,) int64 pixel counts: trainIds 0..18, then ignored."""
    label_ids = read_label_ids(job.sample.label_ids)
    height, width = image_size(job.sample.image)
    if label_ids.shape != (height, width):
        raise CitypipeError(f"{job.sample.label_ids}: label size {label_ids.shape[1]}x{label_ids.shape[0]} "
                            f"differs from its image {job.sample.image.name} ({width}x{height})")
    train_ids = to_train_ids(label_ids, job.sample.label_ids)
    write_png(job.output, train_ids)
    counts = np.bincount(train_ids.ravel(), minlength=256)
    return np.concatenate([counts[:NUM_CLASSES], [counts[NUM_CLASSES:].sum()]]).astype(np.int64)


def check_no_extra_labels(root: Path, split: str, samples: list[layout.Sample], cities: tuple[str, ...]) -> None:
    """A labelIds file without its image means a broken download or copy: fail loudly."""
    expected = {s.label_ids for s in samples}
    for path in sorted((Path(root) / "gtFine" / split).glob("*/*_gtFine_labelIds.png")):
        if (not cities or path.parent.name in cities) and path not in expected:
            raise CitypipeError(f"{path}: extra label file with no leftImg8bit image")


def prepare_labels(root: str | Path, cache: str | Path, cities: tuple[str, ...], workers: int,
                   splits: tuple[str, ...] = ("train", "val")) -> dict[str, tuple[list[str], np.ndarray]]:
    """Build the trainId cache (replaced whole, atomically).

    Returns {split: (frame ids, (N, 20) int64 per-image pixel counts)}.
    """
    plan = {split: layout.find_samples(root, split, cities) for split in splits}
    for split, samples in plan.items():
        check_no_extra_labels(Path(root), split, samples, cities)
    results: dict[str, tuple[list[str], np.ndarray]] = {}
    with atomic_dir(cache) as tmp:
        jobs = [LabelJob(s, cache_path(tmp, split, s.frame_id)) for split in splits for s in plan[split]]
        counts = map_with_progress(convert_one, jobs, workers, "prepare-labels")
        start = 0
        for split in splits:
            n = len(plan[split])
            results[split] = ([s.frame_id for s in plan[split]], np.stack(counts[start:start + n]))
            start += n
    return results
