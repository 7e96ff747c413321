"""prepare-labels vs cityscapesscripts' createTrainIdLabelImgs (json2labelImg per polygons file),
on the same CitySynth frames at 1024x2048; outputs are checked to be identical.

    python benchmarks/bench_prepare.py [--images 24] [--workers 2]
"""
import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from cityscapesscripts.preparation.json2labelImg import json2labelImg
from PIL import Image

from citypipe.data import layout
from citypipe.data.prepare import cache_path, prepare_labels
from citypipe.data.synth import synthesize
from common import machine, table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        synthesize(root, 0, 1024, 2048, {"train": args.images, "val": 1, "test": 1},
                   {"train": ("aachen",), "val": ("lindau",), "test": ("bonn",)}, args.workers)
        samples = layout.find_samples(root, "train") + layout.find_samples(root, "val")
        start = time.perf_counter()
        for s in samples:
            json2labelImg(str(s.polygons), str(Path(tmp) / f"{s.frame_id}_gtFine_labelTrainIds.png"), "trainIds")
        t_official = time.perf_counter() - start
        rates = []
        for workers in sorted({1, args.workers}):
            start = time.perf_counter()
            prepare_labels(root, Path(tmp) / f"cache{workers}", (), workers)
            rates.append((workers, time.perf_counter() - start))
        for s in samples:
            ours = np.asarray(Image.open(cache_path(Path(tmp) / "cache1", s.split, s.frame_id)))
            assert np.array_equal(ours, np.asarray(Image.open(Path(tmp) / f"{s.frame_id}_gtFine_labelTrainIds.png")))
    n = len(samples)
    rows = [("cityscapesscripts createTrainIdLabelImgs (json2labelImg)", 1, f"{n / t_official:.1f}", "1.0x")]
    rows += [("citypipe prepare-labels (incl. validation, class counts)", w, f"{n / t:.1f}", f"{t_official / t:.1f}x") for w, t in rates]
    print(f"prepare-labels, {n} frames at 1024x2048; {machine()}; identical trainId PNGs: yes")
    print(table(rows, ("method", "workers", "images/s", "speed-up")))


if __name__ == "__main__":
    main()
