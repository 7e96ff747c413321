"""The robustness stage: its sets, its frames, its scores against evaluate's, and bytes that do not depend on the
number of DataLoader workers."""
from __future__ import annotations

import json
import math
import typing
from pathlib import Path

import numpy as np
import pytest

from citypipe.corruptions.corrupt import CORRUPTIONS, corrupt
from citypipe.data import layout
from citypipe.data.dataset import EvalFrames
from citypipe.evaluation.evaluate import evaluate
from citypipe.evaluation.scores import compute_scores
from citypipe.params import CorruptionName, RobustnessParams, load_params
from citypipe.prediction.predictor import Predictor, checkpoint_file, frame_loader
from citypipe.robustness.dataset import CLEAN, CorruptedFrames, spread_frames
from citypipe.robustness.evaluate import RobustnessPaths, corruption_sets, curves_csv, robustness_checkpoint, summary
from citypipe.runtime import runtime_for

REPO = Path(__file__).resolve().parents[1]


def test_params_know_exactly_the_corruptions_the_package_defines():
    assert typing.get_args(CorruptionName) == tuple(CORRUPTIONS)


def params(synth_root: Path, **overrides):
    return load_params(REPO / "params.yaml", {
        "data.root": str(synth_root), "device.type": "cpu", "inference.size": [64, 128],
        "robustness.corruptions": ["fog", "gaussian_noise", "motion_blur"], "robustness.severities": [2, 5],
        "robustness.noise_severities": [3], "robustness.frames": 4, "robustness.batch_size": 3, **overrides})


def test_sets_clean_first_then_by_family_and_noise_severities_apart(synth_root):
    sets = corruption_sets(params(synth_root).robustness)
    assert sets == [CLEAN, ("motion_blur", 2), ("motion_blur", 5), ("gaussian_noise", 3), ("fog", 2), ("fog", 5)]


@pytest.mark.parametrize("count,wanted,expected", [(15, 0, list(range(15))), (15, 4, [0, 3, 7, 11]),
                                                   (3, 5, [0, 1, 2]), (6, 6, list(range(6)))])
def test_spread_frames(count, wanted, expected):
    assert spread_frames(count, wanted) == expected


def test_corrupted_frames_are_the_corruption_of_the_clean_frame(synth_root, prepared):
    samples = layout.find_samples(synth_root, "val")[:2]
    frames = EvalFrames(samples, prepared[0])
    dataset = CorruptedFrames(frames, [CLEAN, ("snow", 4)], seed=5)
    assert len(dataset) == 4
    clean, snowy = dataset[1], dataset[3]
    assert clean["set"] == 0 and snowy["set"] == 1 and snowy["frame_id"] == samples[1].frame_id
    image = frames[1]["image"].permute(1, 2, 0).numpy()
    assert np.array_equal(clean["image"].permute(1, 2, 0).numpy(), image)
    assert np.array_equal(snowy["image"].permute(1, 2, 0).numpy(), corrupt(image, "snow", 4, 5, samples[1].frame_id))
    assert np.array_equal(snowy["label"], clean["label"])


def test_summary_means_and_ratios():
    sets = [CLEAN, ("fog", 1), ("fog", 3), ("gaussian_noise", 1)]
    scores = summary(sets, [0.8, 0.6, 0.4, 0.2], 7)
    assert scores["miou_clean"] == 0.8 and scores["miou_corrupted"] == pytest.approx(0.4)
    assert scores["ratio"] == pytest.approx(0.5) and scores["num_sets"] == 3 and scores["num_frames"] == 7
    assert scores["corruptions"]["fog"] == {"family": "weather", "miou": {"1": 0.6, "3": 0.4},
                                            "mean_miou": pytest.approx(0.5), "ratio": pytest.approx(0.625)}
    assert curves_csv(scores).splitlines()[:3] == ["corruption,family,severity,miou", "fog,weather,0,0.800000",
                                                   "fog,weather,1,0.600000"]


def test_stage_bytes_do_not_depend_on_workers_and_clean_is_evaluates_miou(synth_root, prepared, trained_checkpoint, tmp_path):
    written = {}
    for workers in (0, 2):
        p = params(synth_root, **{"robustness.workers": workers})
        out = tmp_path / f"w{workers}"
        paths = RobustnessPaths(prepared[0], trained_checkpoint.parent, out / "robustness.json", out / "curves.csv",
                                out / "corruptions.json")
        scores = robustness_checkpoint(p.data, p.inference, p.robustness, p.device, paths)
        written[workers] = (paths.metrics.read_bytes(), paths.curves.read_bytes(), paths.corruptions.read_bytes())
    assert written[0] == written[2]
    # DVC's metrics file holds the headline numbers only; the whole summary is its own file
    assert list(json.loads(written[0][0])) == ["miou_clean", "miou_corrupted", "ratio"]
    assert json.loads(written[0][2]) == scores
    assert set(scores["corruptions"]) == {"fog", "gaussian_noise", "motion_blur"}
    assert list(scores["corruptions"]["gaussian_noise"]["miou"]) == ["3"]
    assert scores["num_frames"] == 4 and scores["num_sets"] == 5
    # the clean set scores what evaluate scores on the same frames
    samples = [layout.find_samples(synth_root, "val")[i] for i in spread_frames(6, 4)]
    runtime = runtime_for(p.device)
    predictor = Predictor.from_checkpoint(checkpoint_file(trained_checkpoint.parent, p.inference), p.inference, runtime)
    cm = evaluate(predictor, frame_loader(samples, prepared[0], 2, 0, runtime), show_progress=False)
    assert scores["miou_clean"] == pytest.approx(compute_scores(cm)["miou"], abs=1e-12)
    assert 0 < scores["miou_corrupted"] and scores["corruptions"]["gaussian_noise"]["mean_miou"] != scores["miou_clean"]


@pytest.mark.parametrize("change,message", [
    ({"corruptions": []}, "robustness.corruptions"), ({"corruptions": ["fog", "fog"]}, "robustness.corruptions"),
    ({"severities": [0]}, "robustness.severities"), ({"noise_severities": [6]}, "robustness.noise_severities"),
    ({"frames": -1}, "robustness.frames"), ({"batch_size": 0}, "robustness.batch_size"),
])
def test_bad_robustness_params_name_the_key(change, message):
    from citypipe.errors import CitypipeError

    base = dict(corruptions=("fog",), severities=(1,), noise_severities=(1,), seed=0, frames=0, batch_size=1, workers=0)
    with pytest.raises(CitypipeError, match=message):
        RobustnessParams(**{**base, **{k: tuple(v) if isinstance(v, list) else v for k, v in change.items()}})


@pytest.fixture
def untrained_checkpoint(tmp_path) -> Path:
    """What infer draws is not under test here: an untrained ResNet-18 DeepLabV3+ will do."""
    import dataclasses

    from citypipe.models.checkpoint import save_checkpoint
    from citypipe.models.deeplab import ModelConfig, build_model

    config = ModelConfig("deeplabv3plus", "resnet18", 16, False)
    path = tmp_path / "ckpt" / "best.pt"
    save_checkpoint(path, {"model_config": dataclasses.asdict(config), "model": build_model(config).state_dict()})
    return path


def test_infer_corrupt_shows_the_stages_pixels(synth_root, untrained_checkpoint, tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from citypipe.cli import main

    sample = layout.find_samples(synth_root, "val")[0]
    out = tmp_path / "fog.png"
    result = CliRunner().invoke(main, ["infer", str(sample.image), "--checkpoint", str(untrained_checkpoint),
                                       "--output", str(out), "--device", "cpu", "--corrupt", "fog:3",
                                       "--corrupt-seed", "4"])
    assert result.exit_code == 0, result.output
    shown = np.array(Image.open(tmp_path / "fog_corrupted.png"))
    clean = np.array(Image.open(sample.image).convert("RGB"))
    assert np.array_equal(shown, corrupt(clean, "fog", 3, 4, sample.frame_id))
    assert out.is_file()


@pytest.mark.parametrize("spec", ["fog", "haze:2", "fog:9"])
def test_infer_corrupt_rejects_a_bad_spec_in_one_line(spec, synth_root, untrained_checkpoint, tmp_path):
    from click.testing import CliRunner

    from citypipe.cli import main

    sample = layout.find_samples(synth_root, "val")[0]
    result = CliRunner().invoke(main, ["infer", str(sample.image), "--checkpoint", str(untrained_checkpoint),
                                       "--output", str(tmp_path / "x.png"), "--corrupt", spec])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1 and "--corrupt" in result.output


def test_compare_shows_the_robustness_summary_beside_miou():
    from citypipe.compare import experiments_from_exp_show, headline_table

    def entry(rev, miou, robustness=None):
        metrics = {"metrics/eval.json": {"data": {"miou": miou}}}
        if robustness:
            metrics["metrics/robustness.json"] = {"data": robustness}
        return {"rev": rev, "name": rev, "error": None,
                "data": {"rev": rev, "params": {"params.yaml": {"data": {"train": {"lr": miou}}}}, "metrics": metrics}}

    experiments, _ = experiments_from_exp_show([
        entry("main", 0.5, {"miou_clean": 0.5, "miou_corrupted": 0.3, "ratio": 0.6, "corruptions": {}}),
        entry("other", 0.6, {"miou_clean": 0.6, "miou_corrupted": 0.45, "ratio": 0.75}), entry("old", 0.4)])
    table = headline_table(experiments, "main")
    assert table.loc["other", "miou_corrupted"] == 0.45 and table.loc["other", "Δmiou_corrupted"] == pytest.approx(0.15)
    assert table.loc["other", "robustness_ratio"] == 0.75 and math.isnan(table.loc["old", "robustness_ratio"])
    plain = headline_table({n: e for n, e in experiments.items() if n == "old"}, "old")
    assert "miou_corrupted" not in plain.columns  # no robustness run anywhere: no columns
