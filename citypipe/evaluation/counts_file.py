"""The per-image counts artifact, plots/eval/per_image_counts.npy: what `citypipe compare` reads back per
experiment, so a paired comparison needs no inference. numpy only (no torch), so `citypipe compare` starts fast.

One structured numpy array, a row per scored frame in metrics/per_image.csv's order, with fields frame_id,
confusion (K, K) gt x pred counts, boundary_intersection (K,) and boundary_union (K,). `np.save` writes a
fixed header and the raw rows, so the same counts give the same bytes (np.savez would not: its zip
entries carry the time of writing); `np.load` reads it without pickle.
"""
from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from citypipe.evaluation.analysis import AnalysisCounts

COUNTS_FIELDS = ("frame_id", "confusion", "boundary_intersection", "boundary_union")


def counts_array(counts: AnalysisCounts) -> np.ndarray:
    """The per-image artifact: a structured (N,) array with COUNTS_FIELDS."""
    k = counts.confusion.shape[1]
    width = max([1, *(len(f) for f in counts.frame_ids)])
    dtype = np.dtype([("frame_id", f"<U{width}"), ("confusion", "<i8", (k, k)),
                      ("boundary_intersection", "<i8", (k,)), ("boundary_union", "<i8", (k,))])
    array = np.zeros(len(counts.frame_ids), dtype=dtype)
    array["frame_id"] = counts.frame_ids
    array["confusion"], array["boundary_intersection"] = counts.confusion, counts.boundary_intersection
    array["boundary_union"] = counts.boundary_union
    return array


def read_counts_array(data: bytes, source: str, classes: int | None = None) -> np.ndarray:
    """Bytes of per_image_counts.npy -> the structured array; ValueError naming `source` when it is not one
    (of `classes` classes, when given)."""
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"{source}: not a .npy file ({error})") from None
    if array.dtype.names is None or set(COUNTS_FIELDS) - set(array.dtype.names) or array.ndim != 1:
        raise ValueError(f"{source}: expected a structured array with fields {', '.join(COUNTS_FIELDS)}")
    shapes = [array.dtype[field].shape for field in COUNTS_FIELDS[1:]]
    if classes is not None and shapes != [(classes, classes), (classes,), (classes,)]:
        raise ValueError(f"{source}: expected counts of {classes} classes, got confusion of shape {shapes[0]}")
    return array


