"""prepare.image_cache: train frames' decoded pixels cached as .npy beside their trainIds, read by the
training loader in place of the PNG. The same pixels, so the same batches; a stale copy fails in one line."""
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch.utils.data import DataLoader

from citypipe.data import frames, layout
from citypipe.data.dataset import TrainCrops
from citypipe.data.layout import cache_path, frame_cache_path
from citypipe.data.transforms import TrainTransform
from citypipe.errors import CitypipeError
from citypipe.prepare.label_cache import prepare_labels

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def frame_cached(synth_root, tmp_path_factory) -> tuple[Path, dict]:
    cache = tmp_path_factory.mktemp("framecache") / "trainids"
    return cache, prepare_labels(synth_root, cache, (), workers=2, image_cache=True)


def test_cached_frames_are_pillows_pixels_for_the_train_split_only(frame_cached, prepared, synth_root):
    cache, results = frame_cached
    train = layout.find_samples(synth_root, "train")
    for sample in train:
        cached = np.load(frame_cache_path(cache, "train", sample.frame_id))
        assert cached.dtype == np.uint8 and cached.flags.c_contiguous
        assert np.array_equal(cached, np.asarray(Image.open(sample.image).convert("RGB")))
    assert sorted(p.name for p in cache.rglob("*.npy")) == sorted(f"{s.frame_id}_leftImg8bit.npy" for s in train)
    # the trainIds and the counts are those of a run without the frame cache
    plain_cache, plain_results = prepared
    for split, (ids, counts) in plain_results.items():
        assert results[split][0] == ids and np.array_equal(results[split][1], counts)
        for fid in ids:
            assert cache_path(cache, split, fid).read_bytes() == cache_path(plain_cache, split, fid).read_bytes()


def test_off_by_default_no_npy_is_written(prepared):
    cache, _ = prepared
    assert list(cache.rglob("*.npy")) == []


def _batches(samples, cache, transform, keys) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader = DataLoader(TrainCrops(samples, cache, transform), batch_size=4, sampler=keys, num_workers=0)
    return list(loader)


@pytest.mark.parametrize("resize, photometric, scale_range", [
    ("antialias", "simple", (0.75, 1.5)),  # the demo's
    ("bilinear", "mmseg", (0.5, 2.0)),  # the recipe's (at 0.5 the crop is padded)
])
def test_a_training_batch_is_identical_with_and_without_the_frame_cache(frame_cached, prepared, synth_root,
                                                                        monkeypatch, resize, photometric, scale_range):
    samples = layout.find_samples(synth_root, "train")
    transform = TrainTransform((64, 128), scale_range, (48, 96), 0.5, photometric, 0.75, resize)
    keys = [(i % len(samples), 100 + i) for i in range(12)]
    from_png = _batches(samples, prepared[0], transform, keys)

    def no_png(path):
        raise AssertionError(f"decoded the PNG {path} although its frame is cached")

    monkeypatch.setattr(frames, "open_image", no_png)  # the cached run must not decode a single image
    from_npy = _batches(samples, frame_cached[0], transform, keys)
    assert len(from_png) == len(from_npy) == 3
    for (png_images, png_labels), (npy_images, npy_labels) in zip(from_png, from_npy):
        assert png_images.dtype == npy_images.dtype == torch.uint8
        assert torch.equal(png_images, npy_images) and torch.equal(png_labels, npy_labels)


def _copy_cache(frame_cached, tmp_path) -> tuple[Path, Path]:
    cache = tmp_path / "trainids"
    shutil.copytree(frame_cached[0], cache)
    return cache, next(cache.rglob("*.npy"))


@pytest.mark.parametrize("break_it, message", [
    (lambda npy: np.save(npy, np.zeros((32, 128, 3), np.uint8)), r"is uint8 \(32, 128, 3\), but .* is 128x64 .*stale"),
    (lambda npy: np.save(npy, np.zeros((64, 128), np.uint8)), r"is uint8 \(64, 128\), but .*stale"),
    (lambda npy: np.save(npy, np.zeros((64, 128, 3), np.float32)), r"is float32 \(64, 128, 3\), but .*stale"),
    (lambda npy: npy.write_bytes(npy.read_bytes()[:-1000]), "cannot read the cached frame"),  # truncated
    (lambda npy: npy.write_bytes(npy.read_bytes()[:60]), "cannot read the cached frame"),  # inside the header
    (lambda npy: npy.write_bytes(b""), "cannot read the cached frame"),
    (lambda npy: npy.write_bytes(b"\x89PNG not an array"), "cannot read the cached frame"),
])
def test_a_stale_or_corrupt_cached_frame_fails_in_one_line_naming_it(frame_cached, synth_root, tmp_path,
                                                                     break_it, message):
    cache, npy = _copy_cache(frame_cached, tmp_path)
    break_it(npy)
    samples = layout.find_samples(synth_root, "train")
    index = next(i for i, s in enumerate(samples) if frame_cache_path(cache, "train", s.frame_id) == npy)
    transform = TrainTransform((64, 128), (0.75, 1.5), (48, 96), 0.5, "simple", 0.75, "bilinear")
    with pytest.raises(CitypipeError, match=message) as error:
        TrainCrops(samples, cache, transform)[index, 0]
    text = str(error.value)
    assert text.startswith(f"{npy}: ") and "rerun prepare-labels" in text and "\n" not in text


def test_the_stage_writes_the_frame_cache_only_when_the_param_says(synth_root, tmp_path):
    spec = importlib.util.spec_from_file_location("prepare_labels_stage", REPO / "stages" / "prepare_labels.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    text = (REPO / "params.yaml").read_text()
    assert "  image_cache: false " in text  # the demo's default: no copies, the demo's outputs unchanged
    for value in ("false", "true"):
        params = tmp_path / f"params_{value}.yaml"
        params.write_text(text.replace("  image_cache: false ", f"  image_cache: {value} "))
        out = tmp_path / value
        result = CliRunner().invoke(stage.main, [
            "--params", str(params), "--data-root", str(synth_root), "--cache", str(out / "trainids"),
            "--class-table", str(out / "t.csv"), "--class-weights", str(out / "c.json"),
            "--sample-weights", str(out / "s.json")])
        assert result.exit_code == 0, result.output
        assert len(list((out / "trainids").rglob("*.npy"))) == (10 if value == "true" else 0), result.output
    assert "and 10 decoded train images" in result.output
