"""CitySynth: write an embedded dataset in the official Cityscapes layout, deterministically.

Each frame gets its own random stream from (seed, split, index), so the bytes do not depend on the
number of worker threads. The polygons JSON is written first; the label, instance and colour PNGs
are rendered from it with cityscapesscripts' own drawing code.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cityscapesscripts.helpers.annotation import Annotation
from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
from cityscapesscripts.preparation.json2labelImg import createLabelImage

from citypipe.atomic import atomic_dir, atomic_path, write_png
from citypipe.data import layout
from citypipe.parallel import map_with_progress
from citypipe.synth.render import object_index_map, render_image
from citypipe.synth.scene import GUEST_CLASSES, make_scene

_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class FrameJob:
    root: Path
    split: str
    city: str
    index: int  # position in the split
    seed: int
    height: int
    width: int


def frame_jobs(root: Path, seed: int, height: int, width: int, images: dict[str, int],
               cities: dict[str, tuple[str, ...]]) -> list[FrameJob]:
    """Frames are dealt round-robin over each split's cities."""
    return [FrameJob(root, split, cities[split][i % len(cities[split])], i, seed, height, width)
            for split in layout.SPLITS for i in range(images[split])]


def polygons_json(objects: list, height: int, width: int) -> str:
    payload = {"imgHeight": height, "imgWidth": width,
               "objects": [{"label": o.label, "polygon": [list(p) for p in o.polygon], "deleted": 0}
                           for o in objects]}
    return json.dumps(payload, indent=4)


def write_frame(job: FrameJob) -> str:
    rng = np.random.default_rng([job.seed, _SPLIT_CODES[job.split], job.index])
    fid = layout.frame_id(job.city, job.index // 100, job.index % 100 * 19 + 19)
    objects = make_scene(rng, job.height, job.width, GUEST_CLASSES[job.index % len(GUEST_CLASSES)])
    image = render_image(objects, object_index_map(objects, job.height, job.width), rng)
    if job.split == "test":  # like the real test split: gtFine files without labels
        objects = []
    text = polygons_json(objects, job.height, job.width)
    annotation = Annotation()
    annotation.fromJsonText(text)
    write_png(layout.image_path(job.root, job.split, fid), image)
    with atomic_path(layout.gt_path(job.root, job.split, fid, "polygons")) as tmp:
        tmp.write_text(text)
    write_png(layout.gt_path(job.root, job.split, fid, "labelIds"),
              np.asarray(createLabelImage(annotation, "ids"), np.uint8))
    # json2instanceImg's own save fails on Pillow 13 (mode "I" PNG): save the 16-bit PNG ourselves
    write_png(layout.gt_path(job.root, job.split, fid, "instanceIds"),
              np.asarray(createInstanceImage(annotation, "ids"), np.int32).astype(np.uint16))
    color = createLabelImage(annotation, "color")
    with atomic_path(layout.gt_path(job.root, job.split, fid, "color")) as tmp:
        color.save(tmp, format="PNG")
    return fid


def synthesize(root: str | Path, seed: int, height: int, width: int, images: dict[str, int],
               cities: dict[str, tuple[str, ...]], workers: int) -> int:
    """Write CitySynth to `root` (replaced whole, atomically); returns the number of frames."""
    root = Path(root)
    with atomic_dir(root) as tmp_root:
        jobs = frame_jobs(tmp_root, seed, height, width, images, cities)
        map_with_progress(write_frame, jobs, workers, "synthesize")
    return len(jobs)
