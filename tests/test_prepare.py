import shutil

import numpy as np
import pytest
from cityscapesscripts.preparation.json2labelImg import json2labelImg
from PIL import Image

from citypipe.data import layout
from citypipe.data.layout import cache_path
from citypipe.errors import CitypipeError
from citypipe.prepare.class_stats import class_weights, sample_weights
from citypipe.prepare.label_cache import prepare_labels
from citypipe.prepare.outputs import class_table_csv


def test_cache_equals_cityscapesscripts_trainids_from_polygons(prepared, synth_root, tmp_path):
    cache, _ = prepared
    for split in ("train", "val"):
        for s in layout.find_samples(synth_root, split):
            official = tmp_path / f"{s.frame_id}_gtFine_labelTrainIds.png"
            json2labelImg(str(s.polygons), str(official), "trainIds")
            ours = np.asarray(Image.open(cache_path(cache, split, s.frame_id)))
            assert np.array_equal(ours, np.asarray(Image.open(official)))


def test_counts_cover_every_pixel(prepared, synth_root):
    _, results = prepared
    ids, counts = results["train"]
    assert counts.shape == (len(ids), 20)
    assert (counts.sum(1) == 64 * 128).all()


def test_class_weights_methods():
    counts = np.zeros((2, 20), np.int64)
    counts[0, [0, 1, 19]] = [80, 20, 0]
    counts[1, [0, 2]] = [90, 10]
    none = class_weights(counts, "none", 1.02)
    assert (none == 1).all()
    enet = class_weights(counts, "inverse_log", 1.02)
    assert enet[0] == pytest.approx(1 / np.log(1.02 + 170 / 200))
    assert enet[1] > enet[0] and enet[3] == 0  # rarer weighs more; absent classes unused
    median = class_weights(counts, "median_frequency", 1.02)
    # f_road = 170/200, f_sidewalk = 20/100, f_building = 10/100; median = 0.2
    assert median[:3] == pytest.approx([0.2 / 0.85, 1.0, 2.0])


def test_sample_weights_favour_images_with_rare_classes():
    counts = np.zeros((4, 20), np.int64)
    counts[:, 0] = 100
    counts[3, 16] = 5  # only image 3 has a train
    weights = sample_weights(counts, "rare_class")
    assert weights.mean() == pytest.approx(1.0)
    assert weights[3] == pytest.approx(4 * weights[0])
    assert (sample_weights(counts, "none") == 1).all()


def test_class_table_lists_19_classes(prepared):
    _, results = prepared
    lines = class_table_csv(results["train"][1]).strip().splitlines()
    assert lines[0] == "class,train_id,pixels,share_percent,images" and len(lines) == 20


def _copy(synth_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(synth_root, root)
    return root, layout.find_samples(root, "train")[0]


def _bad_value(s):
    arr = np.asarray(Image.open(s.label_ids)).copy()
    arr[0, 0] = 200
    Image.fromarray(arr).save(s.label_ids)


def _other_size(s):
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(s.label_ids)


@pytest.mark.parametrize("break_it, message", [
    (_bad_value, "value 200 is no Cityscapes labelId"),
    (lambda s: s.label_ids.unlink(), "missing label file"),
    (_other_size, "differs from its image"),
    (lambda s: s.label_ids.write_bytes(b"\x89PNG not really"), "cannot read PNG"),
    (lambda s: Image.new("RGB", Image.open(s.label_ids).size).save(s.label_ids), "expected 8-bit single channel"),
    (lambda s: Image.new("I;16", (4, 4)).save(s.label_ids.with_name("aachen_000099_000019_gtFine_labelIds.png")),
     "extra label file"),
])
def test_bad_labels_fail_with_the_file_named_and_leave_no_cache(synth_root, tmp_path, break_it, message):
    root, sample = _copy(synth_root, tmp_path)
    break_it(sample)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "previous.txt").write_text("an earlier good cache")
    with pytest.raises(CitypipeError, match=message) as error:
        prepare_labels(root, cache, (), workers=1)
    assert "aachen_0000" in str(error.value)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".cache")] == []
    assert (cache / "previous.txt").read_text() == "an earlier good cache"  # untouched


def test_empty_split_and_non_cityscapes_root(synth_root, tmp_path):
    with pytest.raises(CitypipeError, match="not a Cityscapes data root"):
        prepare_labels(tmp_path, tmp_path / "cache", (), workers=1)
    root, _ = _copy(synth_root, tmp_path)
    for p in (root / "leftImg8bit" / "val").rglob("*.png"):
        p.unlink()
    with pytest.raises(CitypipeError, match="empty split"):
        prepare_labels(root, tmp_path / "cache", (), workers=1)


def test_city_filter(synth_root, tmp_path):
    results = prepare_labels(synth_root, tmp_path / "cache", ("aachen", "frankfurt"), workers=2)
    assert all(fid.startswith("aachen") for fid in results["train"][0])
    assert all(fid.startswith("frankfurt") for fid in results["val"][0])
    with pytest.raises(CitypipeError, match="data.cities"):
        prepare_labels(synth_root, tmp_path / "cache2", ("atlantis",), workers=1)


def test_two_worker_threads_write_the_same_cache_and_counts(prepared, synth_root, tmp_path):
    cache, results = prepared
    threaded = prepare_labels(synth_root, tmp_path / "cache", (), workers=2)
    for split, (ids, counts) in results.items():
        assert threaded[split][0] == ids and np.array_equal(threaded[split][1], counts)
        for fid in ids:
            assert cache_path(tmp_path / "cache", split, fid).read_bytes() == cache_path(cache, split, fid).read_bytes()


def test_an_error_in_a_worker_thread_stops_the_run(synth_root, tmp_path):
    root, sample = _copy(synth_root, tmp_path)
    _bad_value(sample)
    with pytest.raises(CitypipeError, match="value 200"):
        prepare_labels(root, tmp_path / "cache", (), workers=2)
    assert not (tmp_path / "cache").exists()
