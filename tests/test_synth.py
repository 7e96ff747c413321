import hashlib
from pathlib import Path

import numpy as np
import pytest
from cityscapesscripts.helpers.csHelpers import getCsFileInfo
from cityscapesscripts.helpers.labels import id2label
from conftest import CITIES, HEIGHT, IMAGES, WIDTH
from PIL import Image

from citypipe.data import layout
from citypipe.labels import NUM_CLASSES, label_id_to_train_id_lut
from citypipe.synth.writer import synthesize


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_names_parse_with_cityscapesscripts(synth_root):
    for split in layout.SPLITS:
        samples = layout.find_samples(synth_root, split)
        assert len(samples) == IMAGES[split]
        assert {s.city for s in samples} <= set(CITIES[split])
        for s in samples:
            for path in (s.image, s.label_ids, s.instance_ids, s.polygons,
                         layout.gt_path(synth_root, split, s.frame_id, "color")):
                assert path.is_file(), path
                info = getCsFileInfo(str(path))
                assert f"{info.city}_{info.sequenceNb}_{info.frameNb}" == s.frame_id
            assert Image.open(s.image).size == (WIDTH, HEIGHT)
            assert Image.open(s.label_ids).mode == "L"


def test_same_seed_same_bytes_whatever_the_worker_count(tmp_path):
    args = dict(seed=3, height=64, width=128, images={"train": 3, "val": 2, "test": 1},
                cities={"train": ("ulm",), "val": ("lindau",), "test": ("bonn",)})
    synthesize(tmp_path / "a", workers=1, **args)
    synthesize(tmp_path / "b", workers=2, **args)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    synthesize(tmp_path / "c", workers=1, **{**args, "seed": 4})
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_every_evaluated_class_and_void_classes_occur(synth_root):
    counts = np.zeros(256, np.int64)
    for s in layout.find_samples(synth_root, "train"):
        counts += np.bincount(np.asarray(Image.open(s.label_ids)).ravel(), minlength=256)
    train_ids = set(np.flatnonzero(np.bincount(label_id_to_train_id_lut()[np.flatnonzero(counts)], minlength=256)[:NUM_CLASSES]))
    assert train_ids == set(range(NUM_CLASSES))
    assert all(counts[id_] > 0 for id_ in (1, 2, 3))  # ego vehicle, rectification border, out of roi
    share = counts / counts.sum()
    assert share[7] > 0.15 and share[11] > 0.1  # road and building dominate
    assert share[25] < 0.01 and share[32] < 0.01  # rider and motorcycle are rare


def test_instance_ids_follow_the_official_encoding(synth_root):
    for s in layout.find_samples(synth_root, "val"):
        with Image.open(s.instance_ids) as image:
            instances = np.asarray(image).astype(np.int64)
        labels = np.asarray(Image.open(s.label_ids)).astype(np.int64)
        is_instance = instances >= 1000
        assert (instances[is_instance] // 1000 == labels[is_instance]).all()
        assert (instances[~is_instance] == labels[~is_instance]).all()
        assert all(id2label[int(i) // 1000].hasInstances for i in np.unique(instances[is_instance]))
    assert Image.open(layout.find_samples(synth_root, "val")[0].instance_ids).mode.startswith("I")


def test_test_split_has_images_and_empty_labels(synth_root):
    for s in layout.find_samples(synth_root, "test"):
        assert np.asarray(Image.open(s.image)).std() > 10
        assert not np.asarray(Image.open(s.label_ids)).any()


def test_official_evaluator_scores_ground_truth_as_perfect(synth_root, official_evaluator):
    samples = layout.find_samples(synth_root, "val")
    gts = [str(s.label_ids) for s in samples]
    result = official_evaluator.evaluateImgLists(gts, gts, official_evaluator.args)
    present = {id2label[i].name for s in samples for i in np.unique(np.asarray(Image.open(s.label_ids)))}
    scores = result["classScores"]
    for name, score in scores.items():
        if name in present and not np.isnan(score):
            assert score == pytest.approx(1.0)
    assert result["averageScoreClasses"] == pytest.approx(1.0)
