"""Shared fixtures: a small CitySynth dataset and its trainId cache, made once per test session."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from citypipe.data.prepare import prepare_labels
from citypipe.data.synth import synthesize

os.environ.setdefault("DVC_NO_ANALYTICS", "1")

HEIGHT, WIDTH = 64, 128
IMAGES = {"train": 10, "val": 6, "test": 2}
CITIES = {"train": ("aachen", "bochum"), "val": ("frankfurt", "lindau", "munster"), "test": ("berlin",)}


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("citysynth") / "data"
    synthesize(root, seed=7, height=HEIGHT, width=WIDTH, images=IMAGES, cities=CITIES, workers=1)
    return root


@pytest.fixture(scope="session")
def prepared(synth_root, tmp_path_factory) -> tuple[Path, dict]:
    cache = tmp_path_factory.mktemp("prepared") / "trainids"
    results = prepare_labels(synth_root, cache, (), workers=1)
    return cache, results


@pytest.fixture
def official_evaluator(monkeypatch):
    """cityscapesscripts' evaluator, with numpy 2's removed np.in1d aliased for this test only."""
    if not hasattr(np, "in1d"):
        monkeypatch.setattr(np, "in1d", lambda a, b, invert=False: np.isin(a, b, invert=invert).ravel(), raising=False)
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official

    monkeypatch.setattr(official.args, "quiet", True)
    monkeypatch.setattr(official.args, "JSONOutput", False)
    monkeypatch.setattr(official.args, "colorized", False)
    return official
