"""Boundary IoU, trimap IoU, per-image scores and instance recall against slow independent implementations
(scipy.ndimage erosion and chessboard distance transforms, OpenCV's erode as the reference code uses it,
plain Python loops) on random and hand-made frames: ignored pixels, classes on one side only, masks on the border."""
from __future__ import annotations

import csv
import io
import math

import cv2
import numpy as np
import pytest
import torch
from scipy import ndimage

from citypipe.evaluation.analysis import FrameAnalysis
from citypipe.evaluation.boundary import band_levels, boundary_distance, near_other_label
from citypipe.evaluation.confusion import ConfusionMatrix
from citypipe.evaluation.counts_file import counts_array, read_counts_array
from citypipe.evaluation.instances import REFERENCE_PIXELS, SIZE_EDGES
from citypipe.evaluation.per_image import (
    analysis_headline,
    analysis_tables,
    instance_recall_csv,
    per_image_csv,
    trimap_csv,
    write_analysis,
)
from citypipe.labels import class_names, label_id_to_train_id_lut

K = 19
WIDTHS = (1, 2, 4, 8)


# ---------------------------------------------------------------- independent references

def reference_boundary(mask: np.ndarray, d: int) -> np.ndarray:
    """Cheng et al.'s mask_to_boundary, literally: pad one zero row/column, erode d times (3x3), crop."""
    eroded = ndimage.binary_erosion(np.pad(mask, 1), structure=np.ones((3, 3), bool), iterations=d)[1:-1, 1:-1]
    return mask & ~eroded


def opencv_boundary(mask: np.ndarray, d: int) -> np.ndarray:
    padded = cv2.copyMakeBorder(mask.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=d)[1:-1, 1:-1]
    return mask & (eroded == 0)


def reference_band(label: np.ndarray, k: int) -> np.ndarray:
    """Pixels within chessboard distance k of a pixel with another ground-truth label (frame edge: no boundary)."""
    band = np.zeros(label.shape, bool)
    for value in np.unique(label):
        inside = label == value
        if inside.all():
            continue
        distance = ndimage.distance_transform_cdt(inside, metric="chessboard")  # to the nearest other label
        band |= inside & (distance <= k)
    return band


def reference_confusion(label: np.ndarray, prediction: np.ndarray, where: np.ndarray) -> np.ndarray:
    mat = np.zeros((K, K), np.int64)
    for g, p in zip(label[where].tolist(), prediction[where].tolist()):
        if g != 255:
            mat[g, p] += 1
    return mat


def reference_boundary_counts(label, prediction, d):
    """(K,) intersections and unions of the class boundaries over non-ignored ground-truth pixels."""
    valid = label != 255
    inter, union = np.zeros(K, np.int64), np.zeros(K, np.int64)
    for c in range(K):
        b_gt, b_pred = reference_boundary(label == c, d) & valid, reference_boundary(prediction == c, d) & valid
        inter[c], union[c] = (b_gt & b_pred).sum(), (b_gt | b_pred).sum()
    return inter, union


def reference_instances(instances, prediction):
    """[(trainId, area, found)] by a loop over instance ids."""
    lut, out = label_id_to_train_id_lut(), []
    for value in np.unique(instances):
        if value < 1000 or lut[value // 1000] == 255:
            continue
        pixels = instances == value
        area, hits = int(pixels.sum()), int((prediction[pixels] == lut[value // 1000]).sum())
        out.append((int(lut[value // 1000]), area, hits * 2 >= area))
    return out


def reference_bin(area: int, height: int, width: int) -> int:
    scaled = area * REFERENCE_PIXELS / (height * width)
    return max(i for i, edge in enumerate(SIZE_EDGES) if scaled >= edge)


# ---------------------------------------------------------------- frames

def blocky(rng, height, width, block, classes):
    coarse = rng.choice(classes, size=(-(-height // block), -(-width // block)))
    return np.kron(coarse, np.ones((block, block), np.int64))[:height, :width].astype(np.uint8)


def random_frames(seed: int, count: int = 3, height: int = 24, width: int = 40):
    """(label, prediction, instances) triples: blocky ground truth with ignored regions and border-touching
    classes, a prediction that is shifted and partly noisy, and instances (cars, persons, a caravan)."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        label = blocky(rng, height, width, int(rng.integers(3, 8)), [0, 1, 2, 8, 10, 11, 13, 255])
        prediction = np.roll(label, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), (0, 1))
        noise = rng.random(label.shape) < 0.1
        prediction = np.where(noise, rng.integers(0, K, label.shape), prediction)
        prediction[prediction == 255] = 5  # a class absent from the ground truth
        instances = np.full(label.shape, 7, np.int32)  # labelId 7 (road): no instance
        for i, (label_id, size) in enumerate([(26, 6), (24, 3), (26, 1), (30, 4), (33, 10)]):  # car, person, car, caravan, bicycle
            y, x = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
            instances[y:y + size, x:x + size] = label_id * 1000 + i
        frames.append((label, prediction.astype(np.uint8), instances))
    return frames


def hand_made_frame():
    """12x16: a car touching the top-left corner (exactly half predicted right), a person on the right edge
    (one pixel short of half), ignored pixels, a class only in the prediction (sky) and one only in the gt (bus)."""
    label = np.zeros((12, 16), np.uint8)  # road
    label[:4, :4] = 13  # car in the corner
    label[5:9, 13:] = 11  # person on the right edge
    label[10:, 2:6] = 15  # bus, never predicted
    label[:, 8] = 255  # an ignored column
    prediction = label.copy()
    prediction[prediction == 255] = 0
    prediction[:2, :4] = 0  # half of the car
    prediction[5:9, 13:][np.unravel_index(np.arange(7), (4, 3))] = 0  # 7 of 12 person pixels wrong
    prediction[10:, 2:6] = 0
    prediction[6:8, 5:7] = 10  # sky, not in the ground truth
    instances = np.full(label.shape, 7, np.int32)
    instances[:4, :4] = 26000
    instances[5:9, 13:] = 24001
    return label, prediction, instances


def run_analysis(frames, ratio=0.05, widths=WIDTHS, batch=2):
    analysis = FrameAnalysis("cpu", ratio, widths)
    for start in range(0, len(frames), batch):
        chunk = frames[start:start + batch]
        shapes = {f[0].shape for f in chunk}
        if len(shapes) > 1:  # frames of different sizes go one by one
            for f in chunk:
                analysis.update(*(torch.from_numpy(a[None]) for a in (f[1], f[0], f[2])), [f"x_{start}_0"])
            continue
        stack = [torch.from_numpy(np.stack([f[i] for f in chunk])) for i in range(3)]
        analysis.update(stack[1], stack[0], stack[2], [f"city{start + i}_000000_{i:06d}" for i in range(len(chunk))])
    return analysis.result()


# ---------------------------------------------------------------- tests

@pytest.mark.parametrize("d", [1, 2, 3, 5, 13])
@pytest.mark.parametrize("seed", [0, 1])
def test_class_boundaries_equal_erosion_per_class(seed, d):
    label, prediction, _ = random_frames(seed, count=1)[0]
    for labels in (label, prediction):
        ours = near_other_label(torch.from_numpy(labels[None]), d, border=True)[0].numpy()
        for c in np.unique(labels):
            mask = labels == c
            np.testing.assert_array_equal(ours & mask, reference_boundary(mask, d))
            np.testing.assert_array_equal(ours & mask, opencv_boundary(mask, d))


def test_boundary_distance_is_the_reference_rounding():
    assert boundary_distance(1024, 2048, 0.005) == 11  # round(11.45)
    assert boundary_distance(128, 256, 0.005) == 1  # round(1.43)
    assert boundary_distance(10, 10, 0.001) == 1  # max(1, 0)


@pytest.mark.parametrize("seed", [0, 3])
def test_trimap_bands_equal_chessboard_distance(seed):
    label = random_frames(seed, count=1)[0][0]
    level = band_levels(torch.from_numpy(label[None]), WIDTHS)[0].numpy()
    for i, k in enumerate(WIDTHS):
        np.testing.assert_array_equal(level <= i, reference_band(label, k))
    uniform = np.full((6, 9), 4, np.uint8)  # no boundary at all: the frame edge is none
    assert (band_levels(torch.from_numpy(uniform[None]), WIDTHS) == len(WIDTHS)).all()


@pytest.mark.parametrize("frames", [random_frames(0, 4), random_frames(5, 3, 17, 23), [hand_made_frame()]],
                         ids=["random", "odd-size", "hand-made"])
@pytest.mark.parametrize("ratio", [0.05, 0.2])
def test_counts_equal_the_slow_loops(frames, ratio):
    counts = run_analysis(frames, ratio)
    trimap = np.zeros((len(WIDTHS), K, K), np.int64)
    for i, (label, prediction, _) in enumerate(frames):
        np.testing.assert_array_equal(counts.confusion[i], reference_confusion(label, prediction, np.ones(label.shape, bool)))
        inter, union = reference_boundary_counts(label, prediction, boundary_distance(*label.shape, ratio))
        np.testing.assert_array_equal(counts.boundary_intersection[i], inter)
        np.testing.assert_array_equal(counts.boundary_union[i], union)
        for j, k in enumerate(WIDTHS):
            trimap[j] += reference_confusion(label, prediction, reference_band(label, k))
    np.testing.assert_array_equal(counts.trimap_confusion, trimap)


def test_per_image_confusion_equals_the_confusion_matrix_per_update():
    frames = random_frames(2, 3)
    cm = ConfusionMatrix("cpu", keep_per_image=True)
    for label, prediction, _ in frames:
        cm.update(torch.from_numpy(label), torch.from_numpy(prediction))
    np.testing.assert_array_equal(run_analysis(frames).confusion, torch.stack(cm.per_update).numpy())


def test_instance_recall_equals_a_loop_over_instances():
    frames = random_frames(4, 4) + [hand_made_frame()]
    counts = run_analysis(frames)
    total, found = np.zeros((K, len(SIZE_EDGES)), np.int64), np.zeros((K, len(SIZE_EDGES)), np.int64)
    for label, prediction, instances in frames:
        for train_id, area, was_found in reference_instances(instances, prediction):
            total[train_id, reference_bin(area, *label.shape)] += 1
            found[train_id, reference_bin(area, *label.shape)] += was_found
    np.testing.assert_array_equal(counts.instances_total, total)
    np.testing.assert_array_equal(counts.instances_found, found)
    assert total[:11].sum() == 0 and total.sum() > 0  # only classes with instances; caravans left out


def test_hand_made_frame_scores():
    label, prediction, instances = hand_made_frame()
    counts = run_analysis([(label, prediction, instances)], ratio=0.05)
    tables = analysis_tables(counts)
    # 12x16 frame: bins scale by 192 / 2^21; the car (16 px) and the person (12 px) are >= 256^2 in a 1024x2048 frame
    assert tables["instance_count"]["car"][">=256^2"] == 1 and tables["instance_recall"]["car"][">=256^2"] == 1.0
    assert tables["instance_recall"]["person"][">=256^2"] == 0.0  # 5 of 12 pixels right: under half
    assert math.isnan(tables["instance_recall"]["bus"][">=256^2"])  # no bus instance
    boundary = tables["class_boundary_iou"]
    assert boundary["bus"] == 0.0 and boundary["sky"] == 0.0  # one side only: union > 0, intersection 0
    assert math.isnan(boundary["train"])  # on neither side: null, as for IoU
    row = next(csv.DictReader(io.StringIO(per_image_csv(counts))))
    present = [c for c in range(K) if (label == c).any() or ((prediction == c) & (label != 255)).any()]
    ious = []
    for c in present:
        valid = label != 255
        tp = ((label == c) & (prediction == c) & valid).sum()
        ious.append(tp / (((label == c) | (prediction == c)) & valid).sum())
    assert float(row["miou"]) == pytest.approx(sum(ious) / len(ious), abs=1e-6)
    assert float(row["pixel_acc"]) == pytest.approx((label == prediction)[label != 255].mean(), abs=1e-6)
    assert row["train"] == "" and float(row["bus"]) == 0.0 and row["city"] == "city0"


def test_a_frame_all_ignored_scores_nothing():
    label = np.full((8, 8), 255, np.uint8)
    counts = run_analysis([(label, np.zeros_like(label), np.zeros((8, 8), np.int32))])
    assert counts.confusion.sum() == counts.boundary_union.sum() == counts.trimap_confusion.sum() == 0
    row = next(csv.DictReader(io.StringIO(per_image_csv(counts))))
    assert row["miou"] == row["pixel_acc"] == row["boundary_miou"] == ""


def test_boundary_miou_and_its_interval_against_a_loop():
    frames = random_frames(6, 5)
    counts = run_analysis(frames)
    inter, union = counts.boundary_intersection.sum(0), counts.boundary_union.sum(0)
    expected = np.mean([i / u for i, u in zip(inter, union) if u > 0])
    scores = analysis_headline(counts, resamples=200, seed=3)
    assert scores["boundary_miou"] == pytest.approx(expected, rel=1e-12)
    # the draws of eval.json's mIoU interval (same seed), each resample scored by a loop
    rng = np.random.default_rng(3)
    draws = rng.integers(0, len(frames), size=(200, len(frames)))
    values = []
    for row in draws:
        i, u = counts.boundary_intersection[row].sum(0), counts.boundary_union[row].sum(0)
        values.append(np.mean([a / b for a, b in zip(i, u) if b > 0]))
    low, high = np.quantile(values, [0.025, 0.975])
    assert scores["boundary_miou_ci95_low"] == pytest.approx(low, rel=1e-12)
    assert scores["boundary_miou_ci95_high"] == pytest.approx(high, rel=1e-12)


def test_files_are_deterministic_and_read_back(tmp_path):
    counts = run_analysis(random_frames(7, 3))
    for out in ("a", "b"):
        write_analysis(counts, tmp_path / out / "per_image.csv", tmp_path / out / "plots")
    for name in ("per_image.csv", "plots/trimap_miou.csv", "plots/instance_recall.csv", "plots/per_image_counts.npy"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    array = read_counts_array((tmp_path / "a" / "plots" / "per_image_counts.npy").read_bytes(), "x.npy")
    assert tuple(array["frame_id"]) == counts.frame_ids
    np.testing.assert_array_equal(array["confusion"], counts.confusion)
    np.testing.assert_array_equal(array["boundary_union"], counts.boundary_union)
    assert trimap_csv(counts).splitlines()[0] == "band_px,miou" and len(trimap_csv(counts).splitlines()) == 5
    assert instance_recall_csv(counts).splitlines()[1].startswith("<16^2,0,")
    assert counts_array(counts).dtype.names == ("frame_id", "confusion", "boundary_intersection", "boundary_union")
    with pytest.raises(ValueError, match="x.npy: not a .npy file"):
        read_counts_array(b"garbage", "x.npy")


def test_per_image_csv_has_every_class_column():
    header = per_image_csv(run_analysis(random_frames(1, 1))).splitlines()[0].split(",")
    assert header[:5] == ["frame_id", "city", "pixel_acc", "miou", "boundary_miou"] and header[5:] == class_names()


@pytest.mark.parametrize("widths", [(), (0, 1), (2, 1), (1, 1)])
def test_bad_trimap_widths_are_refused(widths):
    with pytest.raises(ValueError, match="trimap_widths"):
        FrameAnalysis("cpu", 0.005, widths)


# ---------------------------------------------------------------- the evaluate and visualize stages' work

def test_evaluate_writes_the_analysis_and_visualize_draws_the_worst_frames(synth_root, prepared, trained_checkpoint,
                                                                            tmp_path):
    """End to end on the fixture data: evaluate's files against the loops on its own exported predictions,
    then visualize's worst-frame panels picked from per_image.csv."""
    import json
    from pathlib import Path

    from PIL import Image

    from citypipe.data import layout
    from citypipe.data.layout import cache_path
    from citypipe.evaluation.evaluate import EvaluatePaths, evaluate_checkpoint
    from citypipe.params import load_params
    from citypipe.submission.export import ExportPaths, export_submission
    from citypipe.visualization.visualize import VisualizePaths, visualize_checkpoint

    cache, _ = prepared
    p = load_params(Path(__file__).resolve().parents[1] / "params.yaml", {
        "data.root": str(synth_root), "device.type": "cpu", "inference.size": [64, 128], "inference.batch_size": 4,
        "inference.workers": 0, "evaluate.bootstrap_resamples": 50, "evaluate.boundary_dilation_ratio": 0.02,
        "export.split": "val", "visualize.num_samples": 1, "visualize.worst_frames": 2})
    evaluate_checkpoint(p.data, p.inference, p.evaluate, p.device, EvaluatePaths(
        cache, trained_checkpoint.parent, tmp_path / "eval.json", tmp_path / "eval_classes.json", tmp_path / "plots",
        tmp_path / "per_image.csv"))
    export_submission(p.data, p.inference, p.export, p.device,
                      ExportPaths(trained_checkpoint.parent, tmp_path / "submission", tmp_path / "submission.zip"))
    lut = label_id_to_train_id_lut()
    frames = []
    for s in layout.find_samples(synth_root, "val"):  # the exported labelIds are evaluate's predictions
        prediction = lut[np.asarray(Image.open(tmp_path / "submission" / f"{s.frame_id}_leftImg8bit.png"))]
        label = np.asarray(Image.open(cache_path(cache, "val", s.frame_id)))
        frames.append((s.frame_id, label, prediction, np.asarray(Image.open(s.instance_ids), dtype=np.int32)))
    array = read_counts_array((tmp_path / "plots" / "per_image_counts.npy").read_bytes(), "npy")
    assert list(array["frame_id"]) == [f[0] for f in frames]
    d = boundary_distance(64, 128, 0.02)
    for row, (_, label, prediction, _) in zip(array, frames):
        np.testing.assert_array_equal(row["confusion"], reference_confusion(label, prediction, np.ones(label.shape, bool)))
        inter, union = reference_boundary_counts(label, prediction, d)
        np.testing.assert_array_equal(row["boundary_intersection"], inter)
        np.testing.assert_array_equal(row["boundary_union"], union)
    headline = json.loads((tmp_path / "eval.json").read_text())
    inter, union = array["boundary_intersection"].sum(0), array["boundary_union"].sum(0)
    assert headline["boundary_miou"] == pytest.approx(np.mean([i / u for i, u in zip(inter, union) if u > 0]), abs=1e-12)
    tables = json.loads((tmp_path / "eval_classes.json").read_text())
    found = sum(f for _, _, pred, inst in frames for _, _, f in reference_instances(inst, pred))
    assert sum(tables["instance_count"]["all"].values()) == sum(len(reference_instances(i, p)) for _, _, p, i in frames)
    recall_rows = list(csv.DictReader(open(tmp_path / "plots" / "instance_recall.csv")))
    assert sum(int(r["found"]) for r in recall_rows) == found
    rows = list(csv.DictReader(open(tmp_path / "per_image.csv")))
    worst = sorted(rows, key=lambda r: float(r["miou"]))[:2]
    visualize_checkpoint(p.data, p.inference, p.evaluate.split, p.visualize, p.device, VisualizePaths(
        cache, trained_checkpoint.parent, tmp_path / "plots" / "confusion_matrix.csv", tmp_path / "per_image.csv",
        tmp_path / "samples", tmp_path / "figures"))
    drawn = sorted(path.name for path in (tmp_path / "samples").glob("worst*_panel.png"))
    assert drawn == [f"worst{i}_{r['frame_id']}_panel.png" for i, r in enumerate(worst, 1)]


def test_worst_frames_are_the_lowest_miou_in_file_order_and_skip_unscored_ones(tmp_path):
    from citypipe.errors import CitypipeError
    from citypipe.visualization.visualize import read_per_image_scores, worst_frames

    path = tmp_path / "per_image.csv"
    path.write_text("frame_id,city,pixel_acc,miou,boundary_miou\na_0_0,a,0.9,0.5,0.1\nb_0_0,b,,,\n"
                    "c_0_0,c,0.8,0.2,\nd_0_0,d,0.7,0.5,0.3\ne_0_0,e,0.1,0.1,0.0\n")
    rows = read_per_image_scores(path)
    assert [r["frame_id"] for r in worst_frames(rows, 3)] == ["e_0_0", "c_0_0", "a_0_0"]  # a before d: a tie
    assert len(worst_frames(rows, 10)) == 4  # b has no scored pixel
    with pytest.raises(CitypipeError, match="not found \\(run the evaluate stage first\\)"):
        read_per_image_scores(tmp_path / "missing.csv")
    (tmp_path / "other.csv").write_text("class,iou\nroad,0.9\n")
    with pytest.raises(CitypipeError, match="not evaluate's per-image CSV"):
        read_per_image_scores(tmp_path / "other.csv")
