"""The ONNX deployment: numpy resizing against torch, the torch-free import, parity of the exported
graph and of every inference mode with PyTorch, evaluation through onnxruntime, int8, bad input.

Tolerances, from a measurement on a DeepLabV3+ R-18 trained 3 epochs at 64x128 (logits up to 30),
12 val frames, CPU (docs/BENCHMARKS.md, Deploy): graph logits within 1e-4 of PyTorch's (measured 9.5e-6);
whole, flip and slide: argmax identical on >= 99.99% of pixels (measured: all); modes that resize
the image, which the runtime rounds to uint8 before the graph: >= 99.9% (measured 99.975-99.989%).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from citypipe.data import layout
from citypipe.deploy.export import ExportOnnxPaths, ExportGraph, export_checkpoint_onnx, sample_frames
from citypipe.deploy.predictor import OnnxPredictor
from citypipe.deploy.quantize import quantize_int8
from citypipe.deploy.resize import _antialias_taps, _bilinear_taps, resize_bilinear
from citypipe.deploy.runtime import DeployInference, OnnxSegmenter, sha256_file
from citypipe.errors import CitypipeError
from citypipe.evaluation.evaluate import evaluate
from citypipe.evaluation.scores import compute_scores
from citypipe.labels import NUM_CLASSES
from citypipe.models.checkpoint import load_model
from citypipe.params import load_params
from citypipe.prediction.inference import InferenceConfig, predict
from citypipe.prediction.predictor import Predictor, frame_loader
from citypipe.runtime import Runtime

REPO = Path(__file__).resolve().parents[1]
LOGITS_ATOL = 1e-4


def _params(synth_root: Path, **overrides):
    return load_params(REPO / "params.yaml", {"data.root": str(synth_root), "inference.size": [64, 128],
                                              "device.type": "cpu", **overrides})


@pytest.fixture(scope="module")
def exported(synth_root, trained_checkpoint, tmp_path_factory) -> tuple[Path, Path, dict]:
    """The trained test model through the export-onnx stage's function: (onnx, json, report)."""
    out = tmp_path_factory.mktemp("models")
    p = _params(synth_root)
    paths = ExportOnnxPaths(trained_checkpoint, out / "model.onnx", out / "model.json")
    report = export_checkpoint_onnx(p.data, p.deploy, (64, 128), 2, paths)
    return paths.onnx, paths.meta, report


@pytest.fixture(scope="module")
def torch_model(trained_checkpoint):
    return load_model(trained_checkpoint, None, torch.device("cpu"))


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("in_size,out_size", [(64, 96), (64, 40), (64, 150), (64, 33), (64, 7), (37, 53)])
def test_resize_weights_are_torchs_bit_for_bit(antialias, in_size, out_size):
    """Resizing the identity matrix gives each output's weights: equal to torch's in every bit."""
    expected = F.interpolate(torch.eye(in_size)[None, None], (out_size, in_size), mode="bilinear",
                             align_corners=False, antialias=antialias)[0, 0].numpy()  # (out, in)
    indices, weights = (_antialias_taps if antialias else _bilinear_taps)(in_size, out_size)
    ours = np.zeros((out_size, in_size), dtype=np.float32)
    for k in range(indices.shape[1]):
        np.add.at(ours, (np.arange(out_size), indices[:, k]), weights[:, k])
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("size,new", [((64, 128), (32, 64)), ((64, 128), (96, 192)), ((37, 53), (20, 91))])
def test_resize_matches_interpolate_to_float_noise(antialias, size, new):
    x = torch.rand((2, 19, *size), generator=torch.Generator().manual_seed(0)) * 20 - 10  # logit-like values
    expected = F.interpolate(x, new, mode="bilinear", align_corners=False, antialias=antialias).numpy()
    np.testing.assert_allclose(resize_bilinear(x.numpy(), new, antialias), expected, rtol=0, atol=1e-5)


def test_importing_the_runtime_imports_no_torch():
    code = ("import sys\nimport citypipe.deploy.runtime\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    # what else the interpreter loads by itself: __main__, setuptools' hook, the editable install's finder
    imported = {m for m in eval(result.stdout.strip().splitlines()[-1])
                if m not in ("__main__", "_distutils_hack") and not m.startswith("__editable__")}
    assert "torch" not in imported and "yaml" not in imported and "cityscapesscripts" not in imported
    assert imported <= {"citypipe", "numpy", "onnxruntime", "PIL"}, imported


def test_exported_graph_has_the_documented_interface(exported, trained_checkpoint):
    onnx_path, meta_path, report = exported
    segmenter = OnnxSegmenter(onnx_path, 2, expected_checkpoint_sha256=sha256_file(trained_checkpoint))
    graph_in, graph_out = segmenter.session.get_inputs()[0], segmenter.session.get_outputs()[0]
    assert (graph_in.name, graph_in.type, graph_in.shape) == ("image", "tensor(uint8)", ["N", 3, "H", "W"])
    assert (graph_out.name, graph_out.type, graph_out.shape) == ("logits", "tensor(float)", ["N", 19, "H", "W"])
    import json
    meta = json.loads(meta_path.read_text())
    assert meta == segmenter.metadata and meta["checkpoint"]["sha256"] == sha256_file(trained_checkpoint)
    assert meta["input_size"] == [64, 128] and len(meta["class_names"]) == 19 and meta["train_id_to_label_id"][0] == 7
    assert report["max_abs_logit_diff"] <= LOGITS_ATOL and report["argmax_agreement"] >= 0.9999


@pytest.mark.parametrize("shape", [(1, 3, 64, 128), (3, 3, 64, 128), (2, 3, 70, 130), (1, 3, 33, 47)])
def test_graph_logits_match_pytorch(exported, torch_model, shape):
    images = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    with torch.no_grad():
        expected = ExportGraph(torch_model)(torch.from_numpy(images)).numpy()
    got = OnnxSegmenter(exported[0], 2).logits(images)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=LOGITS_ATOL)


def _val_images(synth_root: Path) -> np.ndarray:
    return np.concatenate(sample_frames(_params(synth_root).data, "val", 6))  # (6, 3, 64, 128)


# (mode, size, crop, stride, flip, scales) and the share of pixels whose prediction must agree
MODES = {
    "whole": (("whole", (64, 128), (64, 128), (64, 128), False, (1.0,)), 0.9999),
    "whole-flip": (("whole", (64, 128), (64, 128), (64, 128), True, (1.0,)), 0.9999),
    "slide": (("slide", (64, 128), (48, 64), (32, 48), False, (1.0,)), 0.9999),
    "slide-flip": (("slide", (64, 128), (48, 64), (32, 48), True, (1.0,)), 0.9999),
    "whole-resized": (("whole", (48, 96), (64, 128), (64, 128), False, (1.0,)), 0.999),
    "multi-scale": (("whole", (64, 128), (64, 128), (64, 128), False, (0.75, 1.0, 1.5)), 0.999),
    "slide-multi-scale-flip": (("slide", (64, 128), (48, 64), (32, 48), True, (0.75, 1.25)), 0.999),
}


@pytest.mark.parametrize("name", sorted(MODES))
def test_every_inference_mode_matches_pytorch(exported, torch_model, synth_root, name):
    settings, agreement = MODES[name]
    images = _val_images(synth_root)
    expected = predict(torch_model, torch.from_numpy(images), InferenceConfig(*settings), NUM_CLASSES).numpy()
    got = OnnxSegmenter(exported[0], 2).predict(images, DeployInference(*settings))
    assert got.shape == expected.shape and got.dtype == np.uint8
    assert (got == expected).mean() >= agreement


def test_evaluate_on_onnx_gives_the_pytorch_miou(exported, torch_model, synth_root, prepared, trained_checkpoint):
    samples = layout.find_samples(synth_root, "val")
    runtime = Runtime(torch.device("cpu"), None, False)
    settings = MODES["whole"][0]
    scores = []
    for predictor in (Predictor(torch_model, runtime, InferenceConfig(*settings), False),
                      OnnxPredictor.from_files(exported[0], trained_checkpoint, DeployInference(*settings), 2)):
        loader = frame_loader(samples, prepared[0], 2, 0, runtime)
        scores.append(compute_scores(evaluate(predictor, loader, show_progress=False)))
    assert abs(scores[0]["miou"] - scores[1]["miou"]) <= 1e-4
    assert abs(scores[0]["pixel_acc"] - scores[1]["pixel_acc"]) <= 1e-4


def test_int8_model_runs_and_mostly_agrees_with_fp32(exported, synth_root, tmp_path):
    frames = sample_frames(_params(synth_root).data, "train", 4)
    quantize_int8(exported[0], tmp_path / "int8.onnx", frames, "minmax", True)
    int8 = OnnxSegmenter(tmp_path / "int8.onnx", 2)
    assert int8.metadata["precision"] == "int8" and int8.metadata["calibration"]["frames"] == 4
    images = _val_images(synth_root)
    settings = DeployInference(*MODES["whole"][0])
    agreement = (int8.predict(images, settings) == OnnxSegmenter(exported[0], 2).predict(images, settings)).mean()
    assert agreement >= 0.9


def test_export_fails_beyond_the_tolerance_and_keeps_no_model(synth_root, trained_checkpoint, tmp_path):
    p = _params(synth_root, **{"deploy.logits_atol": 1e-12})
    paths = ExportOnnxPaths(trained_checkpoint, tmp_path / "model.onnx", tmp_path / "model.json")
    with pytest.raises(CitypipeError, match="differ from PyTorch's by up to .* over deploy.logits_atol 1e-12"):
        export_checkpoint_onnx(p.data, p.deploy, (64, 128), 2, paths)
    assert sorted(tmp_path.iterdir()) == []


def _one_line_error(call) -> str:
    with pytest.raises(CitypipeError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_bad_model_files_and_inputs_get_one_line_errors(exported, tmp_path):
    onnx_path = exported[0]
    data = onnx_path.read_bytes()
    (tmp_path / "truncated.onnx").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.onnx").write_bytes(b"")
    (tmp_path / "text.onnx").write_text("not a model\n")
    for name in ("truncated.onnx", "empty.onnx", "text.onnx"):
        assert "not a loadable ONNX model" in _one_line_error(lambda: OnnxSegmenter(tmp_path / name))
    assert "not found" in _one_line_error(lambda: OnnxSegmenter(tmp_path / "missing.onnx"))
    assert "not from the checkpoint to score" in _one_line_error(
        lambda: OnnxSegmenter(onnx_path, expected_checkpoint_sha256="0" * 64))
    segmenter = OnnxSegmenter(onnx_path, 2)
    for images in (np.zeros((1, 4, 64, 64), np.uint8), np.zeros((1, 3, 64, 64), np.float32),
                   np.zeros((3, 64, 64), np.uint8), np.zeros((1, 3, 0, 64), np.uint8)):
        message = _one_line_error(lambda: segmenter.logits(images))
        assert str(onnx_path) in message and ("uint8 RGB (N, 3, H, W)" in message or "cannot take" in message)


def test_a_slide_scale_that_rounds_the_image_to_zero_pixels_is_one_line(exported, synth_root):
    settings = DeployInference("slide", (64, 128), (64, 128), (32, 64), False, (1.0, 0.005))
    with pytest.raises(CitypipeError, match=r"^inference.scales 0.005: a 64x128 image would be 0x1 pixels"):
        OnnxSegmenter(exported[0], 2).predict(_val_images(synth_root)[:1], settings)
