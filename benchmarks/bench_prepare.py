"""prepare-labels vs cityscapesscripts' createTrainIdLabelImgs (json2labelImg per polygons file),
on the same CitySynth frames at 1024x2048; outputs are checked to be identical.

    cd benchmarks && python bench_prepare.py [--images 48] [--workers 2] [--repeats 3]

Each figure is the median of --repeats full passes over the same files, after one warm-up pass.
createTrainIdLabelImgs has no parallel mode: it converts one file after another.
"""
import argparse
import tempfile
from pathlib import Path

import numpy as np
from cityscapesscripts.preparation.json2labelImg import json2labelImg
from common import machine, median_seconds, table
from PIL import Image

from citypipe.data import layout
from citypipe.data.layout import cache_path
from citypipe.prepare.label_cache import prepare_labels
from citypipe.synth.writer import synthesize


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, official = Path(tmp) / "data", Path(tmp) / "official"
        official.mkdir()
        synthesize(root, 0, 1024, 2048, {"train": args.images, "val": 1, "test": 1},
                   {"train": ("aachen",), "val": ("lindau",), "test": ("bonn",)}, args.workers)
        samples = layout.find_samples(root, "train") + layout.find_samples(root, "val")

        def official_pass() -> None:
            for s in samples:
                json2labelImg(str(s.polygons), str(official / f"{s.frame_id}_gtFine_labelTrainIds.png"), "trainIds")

        t_official = median_seconds(official_pass, repeats=args.repeats, warmup=1)
        rates = [(workers, median_seconds(lambda: prepare_labels(root, Path(tmp) / f"cache{workers}", (), workers),
                                          repeats=args.repeats, warmup=1))
                 for workers in sorted({1, args.workers})]
        for workers, _ in rates:
            for s in samples:
                ours = np.asarray(Image.open(cache_path(Path(tmp) / f"cache{workers}", s.split, s.frame_id)))
                assert np.array_equal(ours, np.asarray(Image.open(official / f"{s.frame_id}_gtFine_labelTrainIds.png")))
    n = len(samples)
    rows = [("cityscapesscripts createTrainIdLabelImgs (json2labelImg)", 1, f"{n / t_official:.1f}", "1.0x")]
    rows += [("citypipe prepare-labels (incl. validation, class counts)", w, f"{n / t:.1f}", f"{t_official / t:.1f}x")
             for w, t in rates]
    print(f"prepare-labels, {n} frames at 1024x2048; {machine()}; identical trainId PNGs: yes")
    print(table(rows, ("method", "workers", "images/s", "speed-up")))


if __name__ == "__main__":
    main()
