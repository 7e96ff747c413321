"""docs/class_shares.png: CitySynth's per-class pixel shares beside the real Cityscapes ones.

    python tools/class_share_figure.py data/citysynth docs/reference/cityscapes_pixel_share.csv OUT.png
"""
import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from citypipe.labels import evaluated_labels  # noqa: E402


def main(root: str, reference_csv: str, out: str = "docs/class_shares.png") -> None:
    counts = np.zeros(256, np.int64)
    for path in Path(root, "gtFine").glob("[tv]*/*/*_gtFine_labelIds.png"):
        counts += np.bincount(np.asarray(Image.open(path)).ravel(), minlength=256)
    ours = 100 * counts / counts.sum()
    real = {row["name"]: float(row["pixel_share_percent"]) for row in csv.DictReader(open(reference_csv))}
    labels = evaluated_labels()
    y = np.arange(len(labels))
    figure, axes = plt.subplots(figsize=(7, 6))
    # the reference bars are white and hatched: no class colour can be mistaken for them (pole is grey)
    axes.barh(y - 0.2, [real[l.name] for l in labels], 0.4, label="Cityscapes (train+val, fine)", color="white",
              edgecolor="black", hatch="////", linewidth=0.5)
    axes.barh(y + 0.2, [ours[l.id] for l in labels], 0.4, label="CitySynth (demo params), in class colours",
              color=[np.array(l.color) / 255 for l in labels], edgecolor="black", linewidth=0.5)
    axes.set_yticks(y, [l.name for l in labels])
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.set_xlabel("share of all pixels (%), log scale")
    axes.legend(loc="lower right")
    axes.set_title("Class pixel shares: CitySynth vs Cityscapes")
    figure.savefig(out, dpi=100, bbox_inches="tight")
    for l in labels:
        print(f"{l.name:14s} real {real[l.name]:7.3f}%  citysynth {ours[l.id]:7.3f}%")


if __name__ == "__main__":
    main(*sys.argv[1:4])
