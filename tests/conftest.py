"""Shared fixtures: a small CitySynth dataset and its trainId cache, made once per test session."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from citypipe.prepare.label_cache import prepare_labels
from citypipe.synth.writer import synthesize

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


def small_training(synth_root: Path, prepared: tuple[Path, dict], out: Path, prepared_weights: Path | None = None,
                   **overrides):
    """A function that trains DeepLabV3+ ResNet-18 on the fixture data into `out` (2 short CPU epochs).

    The class and sample weights are written into `out/weights`, or read from `prepared_weights`.
    """
    from citypipe.params import load_params
    from citypipe.prepare.outputs import write_prepare_outputs
    from citypipe.training.trainer import TrainPaths, run_training

    cache, results = prepared
    weights = prepared_weights or out / "weights"
    if prepared_weights is None:
        write_prepare_outputs(results["train"][1], results["train"][0], "inverse_log", 1.02, "rare_class",
                              weights / "table.csv", weights / "class.json", weights / "sample.json")
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml", {
        "data.root": str(synth_root), "train.epochs": 2, "train.batch_size": 2, "train.base_size": [64, 128],
        "train.crop_size": [64, 128], "train.val_size": [64, 128], "train.workers": 0,
        "device.type": "cpu", **overrides})
    paths = TrainPaths(cache, weights / "class.json", weights / "sample.json", out / "checkpoints", out / "dvclive",
                       out / "train.log")
    return lambda: run_training(params.data, params.model, params.train, params.device, paths)


def pytest_collection_modifyitems(items) -> None:
    """A test that needs the trained fixture model is slow wherever it is (training it takes tens of seconds)."""
    for item in items:
        if "trained_checkpoint" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def trained_checkpoint(synth_root, prepared, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    small_training(synth_root, prepared, out, **{"train.val_every": 2})()
    return out / "checkpoints" / "best.pt"
