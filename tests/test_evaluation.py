"""Our scores against cityscapesscripts' evalPixelLevelSemanticLabeling on the same predictions."""
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from citypipe.data import layout
from citypipe.data.layout import cache_path
from citypipe.errors import CitypipeError
from citypipe.evaluation.confusion import ConfusionMatrix
from citypipe.evaluation.evaluate import EvaluatePaths, evaluate_checkpoint
from citypipe.evaluation.scores import compute_scores
from citypipe.labels import IGNORE_INDEX, class_names, label_id_to_train_id_lut
from citypipe.params import load_params
from citypipe.submission.export import ExportPaths, export_submission
from citypipe.submission.files import to_label_ids, validate_submission

PARAMS_YAML = Path(__file__).resolve().parents[1] / "params.yaml"


def fixture_params(synth_root, **overrides):
    """params.yaml for the fixture data: CPU, 64x128 whole-image inference, batch 4, no workers."""
    return load_params(PARAMS_YAML, {"data.root": str(synth_root), "device.type": "cpu", "inference.size": [64, 128],
                                     "inference.crop_size": [64, 128], "inference.stride": [32, 64],
                                     "inference.batch_size": 4, "inference.workers": 0, **overrides})


def run_evaluate(synth_root, cache, checkpoint, out, **overrides) -> dict:
    p = fixture_params(synth_root, **overrides)
    return evaluate_checkpoint(p.data, p.inference, p.evaluate, p.device,
                               EvaluatePaths(cache, checkpoint.parent, out / "eval.json", out / "eval_classes.json",
                                             out / "plots", out / "per_image.csv"))


def _corrupt(train_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An imperfect prediction: shifted, with blocks of wrong classes; never 255."""
    prediction = np.roll(train_ids, shift=(rng.integers(-3, 4), rng.integers(-5, 6)), axis=(0, 1)).copy()
    for _ in range(6):
        y, x = rng.integers(0, 56), rng.integers(0, 112)
        prediction[y:y + 8, x:x + 16] = rng.integers(0, 19)
    prediction[prediction == IGNORE_INDEX] = 0
    return prediction


def _compare(ours: dict, official: dict) -> None:
    def same(a, b):
        assert (a is None or math.isnan(a)) == math.isnan(b), (a, b)
        if not math.isnan(b):
            assert a == pytest.approx(b, abs=1e-6)

    for name in class_names():
        same(ours["class_iou"][name], official["classScores"][name])
    for name, value in ours["class_iiou"].items():
        same(value, official["classInstScores"][name])
    for category, value in ours["category_iou"].items():
        same(value, official["categoryScores"][category])
    for category, value in ours["category_iiou"].items():
        same(value, official["categoryInstScores"][category])
    same(ours["miou"], official["averageScoreClasses"])
    same(ours["iiou"], official["averageScoreInstClasses"])
    same(ours["category_miou"], official["averageScoreCategories"])
    same(ours["category_iiou_mean"], official["averageScoreInstCategories"])


def test_scores_equal_the_official_evaluator(synth_root, prepared, tmp_path, official_evaluator):
    cache, _ = prepared
    rng = np.random.default_rng(0)
    cm = ConfusionMatrix()
    predictions, gts = [], []
    for s in layout.find_samples(synth_root, "val"):
        label = np.array(Image.open(cache_path(cache, "val", s.frame_id)))
        prediction = _corrupt(label, rng)
        cm.update(torch.from_numpy(label), torch.from_numpy(prediction))
        cm.update_instances(torch.from_numpy(np.asarray(Image.open(s.instance_ids), dtype=np.int32)), torch.from_numpy(prediction))
        path = tmp_path / f"{s.frame_id}_pred.png"
        Image.fromarray(to_label_ids(prediction)).save(path)
        predictions.append(str(path))
        gts.append(str(s.label_ids))
    official = official_evaluator.evaluateImgLists(predictions, gts, official_evaluator.args)
    ours = compute_scores(cm)
    _compare(ours, official)
    assert 0.1 < ours["miou"] < 0.95  # a real, imperfect prediction


def test_confusion_matches_a_numpy_reference():
    rng = np.random.default_rng(1)
    target = rng.integers(0, 19, (3, 40, 50))
    target[:, :5] = 255
    prediction = rng.integers(0, 19, (3, 40, 50))
    cm = ConfusionMatrix()
    cm.update(torch.from_numpy(target.astype(np.uint8)), torch.from_numpy(prediction.astype(np.uint8)))
    keep = target != 255
    reference = np.bincount(target[keep] * 19 + prediction[keep], minlength=361).reshape(19, 19)
    assert np.array_equal(cm.mat.numpy(), reference)


def test_absent_classes_are_nan_not_zero():
    cm = ConfusionMatrix()
    cm.update(torch.zeros(4, 4, dtype=torch.uint8), torch.zeros(4, 4, dtype=torch.uint8))
    scores = compute_scores(cm)
    assert scores["class_iou"]["road"] == 1.0 and math.isnan(scores["class_iou"]["train"])
    assert scores["miou"] == 1.0 and scores["pixel_acc"] == 1.0


def test_export_scored_officially_equals_eval_json(synth_root, prepared, trained_checkpoint, tmp_path, official_evaluator):
    cache, _ = prepared
    scores = run_evaluate(synth_root, cache, trained_checkpoint, tmp_path)
    assert json.loads((tmp_path / "eval.json").read_text())["miou"] == pytest.approx(scores["miou"])
    confusion = np.loadtxt(tmp_path / "plots" / "confusion_matrix.csv", delimiter=",", skiprows=1,
                           usecols=range(1, 20), dtype=np.int64)  # (19, 19) gt x pred
    assert np.trace(confusion) / confusion.sum() == pytest.approx(scores["pixel_acc"])
    p = fixture_params(synth_root, **{"export.split": "val"})
    count = export_submission(p.data, p.inference, p.export, p.device,
                              ExportPaths(trained_checkpoint.parent, tmp_path / "submission", tmp_path / "submission.zip"))
    samples = layout.find_samples(synth_root, "val")
    assert count == len(samples)
    predictions = [str(tmp_path / "submission" / f"{s.frame_id}_leftImg8bit.png") for s in samples]
    official = official_evaluator.evaluateImgLists(predictions, [str(s.label_ids) for s in samples], official_evaluator.args)
    headline = json.loads((tmp_path / "eval.json").read_text())
    tables = json.loads((tmp_path / "eval_classes.json").read_text())
    assert not set(headline) & set(tables) and not any(isinstance(v, dict) for v in headline.values())
    assert headline["miou_ci95_low"] <= headline["miou"] <= headline["miou_ci95_high"]
    assert tables["pixel_acc_ci95_low"] <= headline["pixel_acc"] <= tables["pixel_acc_ci95_high"]
    _compare({**headline, **tables}, official)


def test_evaluate_scores_the_checkpoints_own_network_and_needs_labels(synth_root, prepared, trained_checkpoint, tmp_path):
    """The checkpoint carries its architecture: params' `model` section (a train dependency only) is not read."""
    cache, _ = prepared
    scores = run_evaluate(synth_root, cache, trained_checkpoint, tmp_path / "a")
    other = run_evaluate(synth_root, cache, trained_checkpoint, tmp_path / "b", **{"model.arch": "deeplabv3"})
    assert (tmp_path / "a" / "eval.json").read_bytes() == (tmp_path / "b" / "eval.json").read_bytes()
    assert scores["miou"] == other["miou"]
    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(synth_root, unlabelled)
    for label_file in (unlabelled / "gtFine" / "val").rglob("*_labelIds.png"):
        label_file.unlink()
    with pytest.raises(CitypipeError, match="has no labels"):
        run_evaluate(unlabelled, cache, trained_checkpoint, tmp_path)
    assert not (tmp_path / "eval.json").exists()


@pytest.mark.parametrize("mode, hflip, scales", [("slide", False, (1.0,)), ("whole", True, (0.75, 1.0))])
def test_sliding_window_flip_and_multiscale_run_at_full_resolution(synth_root, prepared, trained_checkpoint, tmp_path,
                                                                  mode, hflip, scales):
    cache, _ = prepared
    scores = run_evaluate(synth_root, cache, trained_checkpoint, tmp_path, **{
        "inference.mode": mode, "inference.crop_size": [48, 96], "inference.flip": hflip, "inference.scales": list(scales),
        "inference.batch_size": 2})
    # the same frames predicted here (same pairs, same config), counted with numpy: the same scores
    from citypipe.data.frames import open_image
    from citypipe.labels import NUM_CLASSES
    from citypipe.models.checkpoint import load_model
    from citypipe.prediction.inference import InferenceConfig, predict

    fields = {"mode": mode, "size": (64, 128), "crop_size": (48, 96), "stride": (32, 64), "flip": hflip, "scales": scales}
    model = load_model(trained_checkpoint, None, torch.device("cpu"))
    samples = layout.find_samples(synth_root, "val")
    mat = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    for pair in (samples[i:i + 2] for i in range(0, len(samples), 2)):
        images = torch.stack([torch.from_numpy(np.array(open_image(s.image))).permute(2, 0, 1) for s in pair])
        predicted = predict(model, images, InferenceConfig(**fields), NUM_CLASSES).numpy()
        for s, prediction in zip(pair, predicted):
            label = np.asarray(Image.open(cache_path(cache, "val", s.frame_id)))
            keep = label != IGNORE_INDEX
            mat += np.bincount(label[keep].astype(np.int64) * NUM_CLASSES + prediction[keep],
                               minlength=NUM_CLASSES ** 2).reshape(NUM_CLASSES, NUM_CLASSES)
    tp, union = np.diag(mat), mat.sum(0) + mat.sum(1) - np.diag(mat)
    assert scores["miou"] == pytest.approx(np.mean(tp[union > 0] / union[union > 0]), abs=1e-12)
    assert scores["pixel_acc"] == pytest.approx(tp.sum() / mat.sum(), abs=1e-12)


def test_submission_validator_catches_bad_files(synth_root, tmp_path):
    samples = layout.find_samples(synth_root, "test")
    folder = tmp_path / "sub"
    folder.mkdir()
    for s in samples:
        Image.fromarray(np.full((64, 128), 7, np.uint8)).save(folder / f"{s.frame_id}_leftImg8bit.png")
    validate_submission(folder, samples)
    Image.fromarray(np.full((64, 128), 3, np.uint8)).save(folder / f"{samples[0].frame_id}_leftImg8bit.png")
    with pytest.raises(CitypipeError, match="value 3 is not an evaluated labelId"):
        validate_submission(folder, samples)
    Image.fromarray(np.full((32, 128), 7, np.uint8)).save(folder / f"{samples[0].frame_id}_leftImg8bit.png")
    with pytest.raises(CitypipeError, match="size"):
        validate_submission(folder, samples)
    (folder / f"{samples[0].frame_id}_leftImg8bit.png").unlink()
    with pytest.raises(CitypipeError, match="missing"):
        validate_submission(folder, samples)


def test_label_lut_round_trip():
    lut = label_id_to_train_id_lut()
    assert all(lut[to_label_ids(np.array([t], np.uint8))[0]] == t for t in range(19))


def test_a_stale_trainid_cache_is_named(synth_root, prepared, trained_checkpoint, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(prepared[0], cache)
    missing = next((cache / "val").rglob("*.png"))
    missing.unlink()
    with pytest.raises(CitypipeError, match=f"{missing.name}: missing from the trainId cache"):
        run_evaluate(synth_root, cache, trained_checkpoint, tmp_path)


def test_submission_zip_depends_only_on_the_predictions(tmp_path):
    """An identical rerun must leave the zip's bytes (its DVC hash) unchanged, whatever the file times."""
    import os
    import zipfile

    from citypipe.submission.files import zip_folder

    folder = tmp_path / "labelIds"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 16), 7 + i, np.uint8)).save(folder / f"city_000000_00001{i}_leftImg8bit.png")
    zip_folder(folder, tmp_path / "a.zip")
    for path in folder.iterdir():
        os.utime(path, (1_900_000_000, 1_900_000_000))
    zip_folder(folder, tmp_path / "b.zip")
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        assert sorted(archive.namelist()) == sorted(p.name for p in folder.iterdir())
        assert archive.read(archive.namelist()[0]) == (folder / archive.namelist()[0]).read_bytes()


@pytest.mark.parametrize("amp", [False, True])
def test_evaluate_amp_decides_whether_prediction_runs_under_autocast(amp):
    """inference.amp: false scores in fp32 even where device.amp asks for bf16 (the official path)."""
    from torch import nn

    from citypipe.prediction.inference import InferenceConfig
    from citypipe.prediction.predictor import Predictor
    from citypipe.runtime import Runtime

    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(torch.is_autocast_enabled("cpu"))
            return {"out": torch.zeros(x.shape[0], 19, *x.shape[-2:])}

    predictor = Predictor(Probe(), Runtime(torch.device("cpu"), torch.bfloat16, False),
                          InferenceConfig("whole", (8, 16), (8, 16), (8, 16), False, (1.0,)), amp)
    predictor.predict(torch.zeros(1, 3, 8, 16, dtype=torch.uint8))
    assert seen == [amp]


def test_split_headline_keeps_the_headline_numbers_apart_from_the_rest():
    from citypipe.evaluation.scores import split_headline

    scores = {"pixel_acc": 0.8, "mean_acc": 0.4, "miou": 0.25, "miou_ci95_low": 0.2, "miou_ci95_high": 0.3,
              "pixel_acc_ci95_low": 0.7, "num_images": 15, "class_iou": {"road": 0.9}, "category_iou": {"flat": 0.95}}
    headline, rest = split_headline(scores)
    # mIoU first: `dvc metrics show` prints keys in the file's order
    assert list(headline) == ["miou", "miou_ci95_low", "miou_ci95_high", "pixel_acc", "num_images"]
    assert rest == {"mean_acc": 0.4, "pixel_acc_ci95_low": 0.7, "class_iou": {"road": 0.9}, "category_iou": {"flat": 0.95}}
    assert {**headline, **rest} == scores


def test_per_image_matrices_add_up_to_the_split_matrix():
    """The bootstrap resamples these: each image's own counts, summing to the matrix that is scored."""
    rng = np.random.default_rng(1)
    cm = ConfusionMatrix(keep_per_image=True)
    for _ in range(3):
        target = torch.from_numpy(rng.integers(0, 19, (16, 32)).astype(np.uint8))
        target[:2] = IGNORE_INDEX
        cm.update(target, torch.from_numpy(rng.integers(0, 19, (16, 32)).astype(np.uint8)))
    assert len(cm.per_update) == 3
    assert torch.equal(torch.stack(cm.per_update).sum(0), cm.mat)
    assert int(cm.per_update[0].sum()) == 14 * 32  # ignored rows left out


def test_the_gpu_pair_count_without_a_host_read_equals_a_numpy_reference():
    """The fixed-size scatter that GPUs use (no bincount: its output size is a host read of the max)
    counts what numpy counts, ignored ground truth (255) left out; run here on the CPU."""
    from citypipe.evaluation.confusion import _pair_counts_without_sync

    rng = np.random.default_rng(3)
    target = rng.integers(0, 19, 5000).astype(np.uint8)
    target[rng.random(5000) < 0.2] = IGNORE_INDEX
    prediction = rng.integers(0, 19, 5000).astype(np.uint8)
    counts = _pair_counts_without_sync(torch.from_numpy(target), torch.from_numpy(prediction), 19)
    kept = target != IGNORE_INDEX
    reference = np.zeros((19, 19), np.int64)
    np.add.at(reference, (target[kept], prediction[kept]), 1)
    assert counts.shape == (20 * 19,)
    assert np.array_equal(counts[: 19 * 19].view(19, 19).numpy(), reference)
    assert int(counts[19 * 19:].sum()) == int((~kept).sum())  # the ignored row
