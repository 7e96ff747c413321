"""prepare-labels' outputs besides the cache: class table, class weights, sample weights."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from citypipe.atomic import write_json, write_text
from citypipe.labels import class_names
from citypipe.prepare import class_stats


def class_table_csv(counts: np.ndarray) -> str:
    """CSV with one row per class: pixels, share of labelled pixels (%), images containing it."""
    pixels, images = class_stats.class_pixels(counts), class_stats.class_images(counts)
    total = max(1, int(pixels.sum()))
    rows = ["class,train_id,pixels,share_percent,images"]
    rows += [f"{name},{i},{int(pixels[i])},{100 * pixels[i] / total:.4f},{int(images[i])}"
             for i, name in enumerate(class_names())]
    return "\n".join(rows) + "\n"


def write_prepare_outputs(counts: np.ndarray, frame_ids: list[str], class_weighting: str,
                          inverse_log_c: float, sample_weighting: str, class_table: Path,
                          class_weights_json: Path, sample_weights_json: Path) -> None:
    weights = class_stats.class_weights(counts, class_weighting, inverse_log_c)
    write_text(class_table, class_table_csv(counts))
    write_json(class_weights_json, {"method": class_weighting,
                                    "weights": {n: float(w) for n, w in zip(class_names(), weights)}})
    per_image = class_stats.sample_weights(counts, sample_weighting)
    write_json(sample_weights_json, {"method": sample_weighting,
                                     "weights": {f: float(w) for f, w in zip(frame_ids, per_image)}})
