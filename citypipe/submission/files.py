"""Test-server submissions: trainId predictions -> official labelIds PNGs, a zip, and a validator.

Files are named {city}_{seq}_{frame}_leftImg8bit.png (uint8, the input's size), the form that
cityscapesscripts' evaluator and the benchmark server match against ground truth.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from citypipe.atomic import atomic_path
from citypipe.data import layout
from citypipe.errors import CitypipeError
from citypipe.labels import evaluated_labels, train_id_to_label_id_lut


def submission_name(frame_id: str) -> str:
    return f"{frame_id}_leftImg8bit.png"


def to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    """(H, W) uint8 trainIds -> (H, W) uint8 official labelIds."""
    return train_id_to_label_id_lut()[train_ids]


# Every entry gets this date and mode, so the same predictions always give the same zip bytes (and
# DVC hash): ZipFile.write would store each file's mtime, which changes on every identical rerun.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can hold
ZIP_MODE = 0o644


def zip_folder(folder: Path, zip_path: Path) -> None:
    with atomic_path(zip_path) as tmp:
        with zipfile.ZipFile(tmp, "w") as archive:
            for path in sorted(Path(folder).glob("*.png")):
                entry = zipfile.ZipInfo(path.name, date_time=ZIP_DATE)
                entry.compress_type = zipfile.ZIP_DEFLATED
                entry.external_attr = ZIP_MODE << 16
                archive.writestr(entry, path.read_bytes())


def validate_submission(folder: Path, samples: list[layout.Sample]) -> None:
    """Every frame has exactly one PNG of its image's size, mode L, holding only evaluated labelIds."""
    allowed = np.zeros(256, dtype=bool)
    allowed[[l.id for l in evaluated_labels()]] = True
    expected = {submission_name(s.frame_id): s for s in samples}
    found = {p.name for p in Path(folder).glob("*.png")}
    if found != set(expected):
        extra, missing = sorted(found - set(expected)), sorted(set(expected) - found)
        raise CitypipeError(f"{folder}: submission has {len(found)} files for {len(expected)} images "
                            f"({'missing ' + missing[0] if missing else 'unexpected ' + extra[0]})")
    for name, sample in expected.items():
        with Image.open(folder / name) as prediction, Image.open(sample.image) as image:
            if prediction.mode != "L":
                raise CitypipeError(f"{folder / name}: mode {prediction.mode}, expected 8-bit L")
            if prediction.size != image.size:
                raise CitypipeError(f"{folder / name}: size {prediction.size} differs from {sample.image.name} {image.size}")
            values = np.unique(np.asarray(prediction))
        if not allowed[values].all():
            raise CitypipeError(f"{folder / name}: value {int(values[~allowed[values]][0])} is not an evaluated labelId")
