"""The 19 evaluated Cityscapes classes and the labelId <-> trainId tables.

Everything is derived from cityscapesscripts' official label table, never retyped.
"""
from __future__ import annotations

import functools

import numpy as np
from cityscapesscripts.helpers.labels import labels as CS_LABELS

IGNORE_INDEX = 255
NUM_CLASSES = 19


@functools.cache
def evaluated_labels() -> tuple:
    """The official Label tuples with a trainId in 0..18, ordered by trainId."""
    chosen = [l for l in CS_LABELS if 0 <= l.trainId < IGNORE_INDEX and not l.ignoreInEval]
    chosen.sort(key=lambda l: l.trainId)
    assert [l.trainId for l in chosen] == list(range(NUM_CLASSES))
    return tuple(chosen)


def class_names() -> list[str]:
    """The 19 class names, spelled as cityscapesscripts spells them, in trainId order."""
    return [l.name for l in evaluated_labels()]


def train_id_colors() -> np.ndarray:
    """(256, 3) uint8 palette: the official colour of each trainId, black for 255 and unused ids."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for label in evaluated_labels():
        palette[label.trainId] = label.color
    return palette


def valid_label_ids() -> frozenset[int]:
    """Every labelId that may appear in a gtFine labelIds PNG (0..33)."""
    return frozenset(l.id for l in CS_LABELS if l.id >= 0)


def label_id_to_train_id_lut() -> np.ndarray:
    """(256,) uint8 LUT: labelId -> trainId; ignored classes and non-labelIds map to 255."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for label in CS_LABELS:
        if label.id >= 0 and 0 <= label.trainId < IGNORE_INDEX:
            lut[label.id] = label.trainId
    return lut


def train_id_to_label_id_lut() -> np.ndarray:
    """(256,) uint8 LUT: trainId -> labelId of the evaluated class; 255 -> 0 (unlabeled)."""
    lut = np.zeros(256, dtype=np.uint8)
    for label in evaluated_labels():
        lut[label.trainId] = label.id
    return lut
