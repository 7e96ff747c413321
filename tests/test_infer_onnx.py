"""`citypipe infer --onnx`: the exported model predicts what the checkpoint predicts, with the settings its
metadata records, writing the same files; its misuses are one-line errors.

The model is the session's small trained DeepLabV3+ (conftest `trained_checkpoint`, train.base_size,
crop_size and val_size all 64x128) exported as the export-onnx stage exports it (at 64x128). Tolerances
are tests/test_deploy.py's: whole image and sliding window at the image's own resolution (nothing
resized, nothing padded): >= 99.99% of pixels; modes that resize the image (the runtime rounds the
resized image to uint8): >= 99.9%.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from PIL import Image

from citypipe.cli import main
from citypipe.data import layout
from citypipe.deploy.export import ExportOnnxPaths, export_checkpoint_onnx
from citypipe.deploy.runtime import METADATA_KEY, DeployInference, OnnxSegmenter, read_image
from citypipe.params import load_params
from citypipe.visualization.panels import overlay_figure

REPO = Path(__file__).resolve().parents[1]
PARAMS = str(REPO / "params.yaml")


@pytest.fixture(scope="module")
def exported(synth_root, trained_checkpoint, tmp_path_factory) -> Path:
    """models/model.onnx of the trained test model, through the export-onnx stage's function."""
    out = tmp_path_factory.mktemp("models")
    p = load_params(PARAMS, {"data.root": str(synth_root), "device.type": "cpu"})
    export_checkpoint_onnx(p.data, p.deploy, (64, 128), 2, ExportOnnxPaths(trained_checkpoint, out / "model.onnx",
                                                                            out / "model.json"))
    return out / "model.onnx"


def with_metadata(source: Path, target: Path, change) -> Path:
    """A copy of `source` whose graph metadata is change(metadata): the same weights, other recorded settings."""
    proto = onnx.load(str(source))
    metadata = json.loads(next(p.value for p in proto.metadata_props if p.key == METADATA_KEY))
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(change(metadata))})
    onnx.save(proto, str(target))
    return target


def infer(*args: str) -> tuple[int, str, str]:
    """`citypipe infer ARGS` -> (exit code, stdout, stderr)."""
    result = CliRunner().invoke(main, ["infer", *map(str, args)])
    return result.exit_code, result.stdout, result.stderr


def masks(folder: Path) -> dict[Path, np.ndarray]:
    return {p.relative_to(folder): np.asarray(Image.open(p)) for p in sorted(folder.rglob("*_trainIds.png"))}


def test_export_records_the_training_scale(exported):
    metadata = OnnxSegmenter(exported).metadata
    assert metadata["train"] == {"base_size": [64, 128], "crop_size": [64, 128]}
    assert json.loads(exported.with_name("model.json").read_text())["train"] == metadata["train"]


# options -> the share of pixels (over the 6 val frames) on which --onnx must predict the checkpoint's trainId
PARITY = {
    "whole": ([], 0.9999),
    "slide": (["--mode", "slide", "--crop-size", "32", "64", "--stride", "16", "32"], 0.9999),
    "slide-flip": (["--mode", "slide", "--crop-size", "48", "64", "--stride", "32", "48", "--flip"], 0.9999),
    "multi-scale-flip": (["--scales", "0.75,1.0,1.25", "--flip"], 0.999),
}


@pytest.mark.parametrize("name", sorted(PARITY))
def test_onnx_predicts_the_checkpoints_masks_on_a_split(name, exported, trained_checkpoint, synth_root, tmp_path):
    """--split val (3 cities, 6 frames) with each model: the same tree of files, the same trainIds."""
    options, agreement = PARITY[name]
    common = ["--split", "val", "--data-root", synth_root, "--params", PARAMS, "--mask", "trainids", *options]
    assert infer(*common, "--checkpoint", trained_checkpoint, "--device", "cpu", "--output", tmp_path / "pt")[0] == 0
    code, out, err = infer(*common, "--onnx", exported, "--output", tmp_path / "onnx")
    assert code == 0, err
    assert "6 image(s)" in out
    want, got = masks(tmp_path / "pt"), masks(tmp_path / "onnx")
    assert len(want) == 6 and want.keys() == got.keys()
    assert sorted(p.relative_to(tmp_path / "pt") for p in (tmp_path / "pt").rglob("*.png")) == \
        sorted(p.relative_to(tmp_path / "onnx") for p in (tmp_path / "onnx").rglob("*.png"))
    same = sum(int((want[k] == got[k]).sum()) for k in want)
    assert same / sum(m.size for m in want.values()) >= agreement


def test_the_onnx_overlay_is_visualizes_figure_of_its_mask(exported, synth_root, tmp_path):
    """Overlay, --alpha, --mask labelids and --corrupt as with a checkpoint: the overlay is the figure
    visualize draws (same function, same bytes) of the corrupted image and the predicted mask."""
    image = layout.find_samples(synth_root, "val")[0].image
    code, _, err = infer(image, "--onnx", exported, "--params", PARAMS, "--output", tmp_path / "o.png",
                         "--mask", "labelids", "--alpha", "0.3", "--corrupt", "fog:3")
    assert code == 0, err
    corrupted = np.asarray(Image.open(tmp_path / "o_corrupted.png"))
    assert corrupted.shape == (64, 128, 3) and (corrupted != np.asarray(Image.open(image).convert("RGB"))).any()
    train_ids = OnnxSegmenter(exported).predict(np.ascontiguousarray(corrupted.transpose(2, 0, 1)[None]),
                                                DeployInference("whole", (64, 128), (64, 128), (42, 85), False, (1.0,)))[0]
    label_ids = np.array(OnnxSegmenter(exported).metadata["train_id_to_label_id"], np.uint8)[train_ids]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o_labelIds.png")), label_ids)
    overlay_figure(corrupted, train_ids, 0.3, image.name, tmp_path / "again.png")
    assert (tmp_path / "o.png").read_bytes() == (tmp_path / "again.png").read_bytes()


def test_the_defaults_are_the_models_metadata(exported, synth_root, tmp_path):
    """A model whose metadata says input_size 32x64 and crop 32x64 predicts whole images at 32x64 and slides
    32x64 windows 21x42 apart (2/3) unless told otherwise; a size far from train.base_size gets the warning."""
    small = with_metadata(exported, tmp_path / "small.onnx",
                          lambda m: {**m, "input_size": [32, 64], "train": {"base_size": [64, 128], "crop_size": [32, 64]}})
    image = layout.find_samples(synth_root, "val")[0].image
    images = read_image(image)
    segmenter = OnnxSegmenter(small)
    for mode, want in (("whole", DeployInference("whole", (32, 64), (32, 64), (21, 42), False, (1.0,))),
                       ("slide", DeployInference("slide", (32, 64), (32, 64), (21, 42), False, (1.0,)))):
        code, _, err = infer(image, "--onnx", small, "--params", PARAMS, "--mode", mode, "--mask", "trainids",
                             "--output", tmp_path / f"{mode}.png")
        assert code == 0, err
        assert not [line for line in err.splitlines() if line.startswith("warning:")], err
        expected = segmenter.predict(images, want)[0]
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / f"{mode}_trainIds.png")), expected)
    # the metadata's setting, not the export's 64x128 nor the checkpoint's: it changes the prediction here
    at_64x128 = segmenter.predict(images, DeployInference("whole", (64, 128), (64, 128), (42, 85), False, (1.0,)))[0]
    assert (np.asarray(Image.open(tmp_path / "whole_trainIds.png")) != at_64x128).any()
    code, _, err = infer(image, "--onnx", small, "--params", PARAMS, "--size", "256", "512", "--output",
                         tmp_path / "big.png")
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert code == 0 and len(warnings) == 1 and "far from its training scale 64x128" in warnings[0], err


def test_a_model_exported_before_the_training_scale_was_recorded_still_runs(exported, synth_root, tmp_path):
    """No `train` in the metadata: slide windows of input_size, no scale warning (nothing to compare with)."""
    old = with_metadata(exported, tmp_path / "old.onnx", lambda m: {k: v for k, v in m.items() if k != "train"})
    image = layout.find_samples(synth_root, "val")[0].image
    code, _, err = infer(image, "--onnx", old, "--params", PARAMS, "--mode", "slide", "--mask", "trainids",
                         "--output", tmp_path / "slide.png")
    assert code == 0, err
    want = OnnxSegmenter(old).predict(read_image(image), DeployInference("slide", (64, 128), (64, 128), (42, 85),
                                                                         False, (1.0,)))[0]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "slide_trainIds.png")), want)
    code, _, err = infer(image, "--onnx", old, "--params", PARAMS, "--size", "256", "512", "--output",
                         tmp_path / "big.png")
    assert code == 0 and "warning:" not in err, err


def test_a_deploy_folder_with_only_the_model_is_enough(exported, synth_root, tmp_path, monkeypatch):
    """No params.yaml, no checkpoint, no model.json: the .onnx file alone runs; --split then needs --data-root."""
    shutil.copy(exported, tmp_path / "model.onnx")
    monkeypatch.chdir(tmp_path)
    image = layout.find_samples(synth_root, "val")[0].image
    code, _, err = infer(image, "--onnx", "model.onnx", "--output", "o.png")
    assert code == 0, err
    assert Path("o.png").is_file() and not Path("checkpoints").exists()
    code, _, err = infer("--split", "val", "--onnx", "model.onnx", "--output", "out")
    assert code == 1 and err.strip() == "error: --split val: give --data-root (no params.yaml to read data.root from)"


def test_misuse_of_onnx_is_a_one_line_error(exported, trained_checkpoint, tmp_path):
    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    data = exported.read_bytes()
    (tmp_path / "truncated.onnx").write_bytes(data[: len(data) // 2])
    cases = {
        "not found": ["--onnx", tmp_path / "missing.onnx"],
        "not a loadable ONNX model": ["--onnx", tmp_path / "truncated.onnx"],
        "--amp is PyTorch's autocast": ["--onnx", exported, "--amp"],
        "give --checkpoint or --onnx, not both": ["--onnx", exported, "--checkpoint", trained_checkpoint],
        "--device cuda: --onnx runs on the CPU": ["--onnx", exported, "--device", "cuda"],
    }
    for expected, options in cases.items():
        code, _, err = infer(tmp_path / "a.png", "--params", PARAMS, "--output", tmp_path / "o.png", *options)
        assert code == 1 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
        assert expected in err, err
    assert not (tmp_path / "o.png").exists()
