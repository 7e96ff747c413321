"""The official Cityscapes directory layout and file names, for CitySynth and the real dataset.

    {root}/leftImg8bit/{split}/{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit.png
    {root}/gtFine/{split}/{city}/{city}_{seq:06d}_{frame:06d}_gtFine_{labelIds,instanceIds,color}.png
    {root}/gtFine/{split}/{city}/{city}_{seq:06d}_{frame:06d}_gtFine_polygons.json
"""
from __future__ import annotations

import contextlib
import io
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cityscapesscripts.helpers.csHelpers import getCsFileInfo

from citypipe.errors import CitypipeError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    """One frame of a split: its id ('{city}_{seq}_{frame}') and the paths of its files."""

    split: str
    city: str
    frame_id: str
    image: Path
    label_ids: Path
    instance_ids: Path
    polygons: Path


def frame_id(city: str, sequence: int, frame: int) -> str:
    return f"{city}_{sequence:06d}_{frame:06d}"


def image_path(root: Path, split: str, fid: str) -> Path:
    return Path(root) / "leftImg8bit" / split / fid.split("_")[0] / f"{fid}_leftImg8bit.png"


def gt_path(root: Path, split: str, fid: str, kind: str) -> Path:
    """kind: labelIds, instanceIds, color, polygons (.json), labelTrainIds."""
    ext = "json" if kind == "polygons" else "png"
    return Path(root) / "gtFine" / split / fid.split("_")[0] / f"{fid}_gtFine_{kind}.{ext}"


def cache_path(cache: Path, split: str, fid: str) -> Path:
    """prepare-labels' trainId PNG of a frame: {cache}/{split}/{city}/{id}_gtFine_labelTrainIds.png,
    the name cityscapesscripts' createTrainIdLabelImgs gives its output."""
    return Path(cache) / split / fid.split("_")[0] / f"{fid}_gtFine_labelTrainIds.png"


def frame_cache_path(cache: Path, split: str, fid: str) -> Path:
    """prepare-labels' decoded image of a frame (prepare.image_cache), beside its trainIds:
    {cache}/{split}/{city}/{id}_leftImg8bit.npy, an uncompressed (H, W, 3) uint8 array."""
    return Path(cache) / split / fid.split("_")[0] / f"{fid}_leftImg8bit.npy"


def _file_info(image: Path) -> Any:
    """cityscapesscripts' parse of a file name; on a bad name it prints and calls sys.exit, so both
    are caught here and the file is named instead."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return getCsFileInfo(str(image))
    except (Exception, SystemExit):
        raise CitypipeError(f"{image}: not a Cityscapes file name (expected {{city}}_{{seq}}_{{frame}}_leftImg8bit.png)") from None


def _sample(root: Path, split: str, image: Path) -> Sample:
    info = _file_info(image)
    fid = f"{info.city}_{info.sequenceNb}_{info.frameNb}"
    return Sample(split, info.city, fid, image, gt_path(root, split, fid, "labelIds"),
                  gt_path(root, split, fid, "instanceIds"), gt_path(root, split, fid, "polygons"))


def find_samples(root: str | Path, split: str, cities: tuple[str, ...] = ()) -> list[Sample]:
    """Every frame of `split` (optionally only `cities`), sorted by id; fails on a non-Cityscapes root."""
    root = Path(root)
    split_dir = root / "leftImg8bit" / split
    if not (root / "leftImg8bit").is_dir() or not (root / "gtFine").is_dir():
        raise CitypipeError(f"{root}: not a Cityscapes data root (expected folders leftImg8bit/ and gtFine/)")
    if not split_dir.is_dir():
        raise CitypipeError(f"{split_dir}: missing split folder (expected leftImg8bit/{split}/{{city}}/)")
    city_dirs = sorted(d for d in split_dir.iterdir() if d.is_dir())
    if cities:
        city_dirs = _filter_cities(root, split_dir, city_dirs, cities)
    samples = [_sample(root, split, p) for d in city_dirs for p in sorted(d.glob("*_leftImg8bit.png"))]
    if not samples:
        raise CitypipeError(f"{split_dir}: empty split (no *_leftImg8bit.png under {split}/{{city}}/)")
    samples = sorted(samples, key=lambda s: s.frame_id)
    _check_unique(samples)
    _check_cities(samples)
    return samples


def _filter_cities(root: Path, split_dir: Path, city_dirs: list[Path], cities: tuple[str, ...]) -> list[Path]:
    """data.cities is a filter per split: each split keeps the named cities it has (the real splits share
    no city, so [aachen, frankfurt] trains on aachen and validates on frankfurt). A name that is a city of
    no split is a typo, and a split left with no city is an error: neither passes silently."""
    known = {d.name for d in (root / "leftImg8bit").glob("*/*") if d.is_dir()}
    misspelt = [c for c in cities if c not in known]
    if misspelt:
        raise CitypipeError(f"data.cities: {misspelt[0]!r} is a city of no split in {root / 'leftImg8bit'} "
                            f"(known: {', '.join(sorted(known))})")
    kept = [d for d in city_dirs if d.name in cities]
    if not kept:
        raise CitypipeError(f"data.cities: none of {list(cities)} is a city of {split_dir} (the filter is per split: "
                            f"name at least one of {', '.join(d.name for d in city_dirs)} too)")
    return kept


def _check_unique(samples: list[Sample]) -> None:
    """A frame present twice (copied into another city's folder) would be trained on and scored twice."""
    for first, second in itertools.pairwise(samples):  # sorted by id: duplicates are neighbours
        if first.frame_id == second.frame_id:
            raise CitypipeError(f"{first.image} and {second.image}: duplicate frame id {first.frame_id} "
                                "(expected each frame once, in its own city's folder)")


def _check_cities(samples: list[Sample]) -> None:
    """A frame moved into another city's folder: its labels are looked for under its own city's."""
    for sample in samples:
        if sample.city != sample.image.parent.name:
            raise CitypipeError(f"{sample.image}: frame of city {sample.city!r} in the folder of city "
                                f"{sample.image.parent.name!r} (expected it under {sample.split}/{sample.city}/)")
