"""The export-onnx stage's work: a checkpoint -> models/model.onnx (+ model.json), checked and verified.

The graph takes `image`: uint8 RGB (N, 3, H, W), normalises inside (data/dataset.py's `normalize`)
and returns `logits`: float32 (N, K, H, W) at the input's size, with N, H and W dynamic. Everything a
deployer needs (classes, colours, trainId->labelId, the network's input size, the training scale,
the checkpoint's sha256, the model config) is in model.json and, identically, in the graph's
metadata, so the runtime can check a model file against a checkpoint without the JSON beside it.
"""
from __future__ import annotations

import dataclasses
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from citypipe.atomic import atomic_path, write_json
from citypipe.data import layout
from citypipe.data.dataset import IMAGENET_MEAN, IMAGENET_STD, normalize
from citypipe.data.frames import open_image, to_rgb8
from citypipe.deploy.runtime import METADATA_KEY, OnnxSegmenter, sha256_file
from citypipe.errors import CitypipeError, first_line
from citypipe.labels import IGNORE_INDEX, class_names, train_id_colors, train_id_to_label_id_lut
from citypipe.models.checkpoint import load_checkpoint, model_from_state
from citypipe.models.deeplab import DeepLab, ModelConfig
from citypipe.params import DataParams, DeployParams, Size


class ExportGraph(nn.Module):
    """(N, 3, H, W) uint8 -> (N, K, H, W) float32 logits: what the ONNX graph computes."""

    def __init__(self, model: DeepLab) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(normalize(image))["out"]


@dataclass(frozen=True)
class ExportOnnxPaths:
    checkpoint: Path
    onnx: Path  # models/model.onnx
    meta: Path  # models/model.json


def training_scale(stored: dict) -> dict:
    """The checkpoint's train.base_size and train.crop_size (those it records): `citypipe infer --onnx`
    defaults slide windows to the crop and warns far from the base size, as it does for the checkpoint."""
    train = stored.get("train") or {}
    return {key: list(train[key]) for key in ("base_size", "crop_size") if train.get(key)}


def model_metadata(config: ModelConfig, checkpoint: Path, input_size: Size, deploy: DeployParams,
                   train: dict | None = None) -> dict:
    """model.json: what a deployer needs beside the graph. Nothing machine- or time-dependent (DVC hashes it).
    `train`: training_scale's dict of the checkpoint's stored params."""
    colors = train_id_colors()
    return {
        "format": "citypipe-onnx/1",
        "input": {"name": "image", "dtype": "uint8", "layout": "NCHW, RGB", "normalization": "inside the graph",
                  "mean": [round(m * 255, 6) for m in IMAGENET_MEAN],
                  "std": [round(s * 255, 6) for s in IMAGENET_STD]},
        "output": {"name": "logits", "dtype": "float32", "shape": ["N", config.num_classes, "H", "W"]},
        "input_size": list(input_size),  # (H, W) the network was set to predict at (whole mode)
        "train": train or {},  # the training scale: base_size, crop_size (absent from files exported before it)
        "class_names": class_names(),
        "class_colors": [colors[i].tolist() for i in range(config.num_classes)],
        "train_id_to_label_id": train_id_to_label_id_lut()[:config.num_classes].tolist(),
        "ignore_train_id": IGNORE_INDEX,
        "checkpoint": {"file": checkpoint.name, "sha256": sha256_file(checkpoint)},
        "model_config": dataclasses.asdict(config),
        "exporter": deploy.exporter,
        "opset": deploy.opset,
        "precision": "fp32",
    }


def _trace_to_onnx(graph: ExportGraph, opset: int, exporter: str) -> onnx.ModelProto:
    """torch.onnx.export of `graph` with dynamic N, H, W; the ONNX model in memory."""
    example = torch.zeros((1, 3, 64, 64), dtype=torch.uint8)  # any size: H and W stay symbolic
    with warnings.catch_warnings():
        # normalize's torch.tensor constants are meant as constants; the legacy exporter's deprecation
        # notice is known (params.yaml deploy.exporter offers dynamo)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        if exporter == "torchscript":
            buffer = io.BytesIO()
            torch.onnx.export(graph, (example,), buffer, input_names=["image"], output_names=["logits"],
                              opset_version=opset, dynamo=False, do_constant_folding=True,
                              dynamic_axes={"image": {0: "N", 2: "H", 3: "W"}, "logits": {0: "N", 2: "H", 3: "W"}})
            return onnx.load_from_string(buffer.getvalue())
        dims = {0: torch.export.Dim("N"), 2: torch.export.Dim("H"), 3: torch.export.Dim("W")}
        program = torch.onnx.export(graph, (example,), input_names=["image"], output_names=["logits"],
                                    opset_version=opset, dynamo=True, dynamic_shapes={"image": dims}, verbose=False)
        return program.model_proto


def _inline_identities(proto: onnx.ModelProto) -> None:
    """The legacy exporter shares equal initializers (e.g. all-zero folded biases) through Identity nodes;
    onnxruntime's quantizer wants each Conv's bias as an initializer, so give each its own copy."""
    initializers = {tensor.name: tensor for tensor in proto.graph.initializer}
    for node in list(proto.graph.node):
        if node.op_type == "Identity" and node.input[0] in initializers:
            copy = onnx.TensorProto()
            copy.CopyFrom(initializers[node.input[0]])
            copy.name = node.output[0]
            proto.graph.initializer.append(copy)
            proto.graph.node.remove(node)


def export_onnx(model: DeepLab, metadata: dict, opset: int, exporter: str) -> bytes:
    """`model` (CPU, fp32, eval) as a serialised ONNX graph with `metadata` inside, checked by onnx.checker."""
    graph = ExportGraph(model.float().cpu().eval())
    with torch.no_grad():
        proto = _trace_to_onnx(graph, opset, exporter)
    _inline_identities(proto)
    # the legacy exporter names the class axis symbolically; it is fixed
    proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value = metadata["output"]["shape"][1]
    onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as error:  # onnx.checker.ValidationError, shape inference errors
        raise CitypipeError(f"the exported graph fails onnx.checker ({first_line(error)})") from None
    return proto.SerializeToString()


def sample_frames(data: DataParams, split: str, count: int) -> list[np.ndarray]:
    """`count` frames of `split`, evenly spaced over it: (1, 3, H, W) uint8 each."""
    samples = layout.find_samples(data.root, split, data.cities)
    if not samples:
        raise CitypipeError(f"{data.root}: no {split} images to check or calibrate on")
    picks = np.linspace(0, len(samples) - 1, min(count, len(samples))).round().astype(int)
    frames = []
    for i in sorted(set(picks.tolist())):
        rgb = np.asarray(to_rgb8(open_image(samples[i].image)))
        frames.append(np.ascontiguousarray(rgb.transpose(2, 0, 1)[None]))
    return frames


def logits_difference(model: DeepLab, segmenter: OnnxSegmenter, frames: list[np.ndarray]) -> tuple[float, float]:
    """Largest |onnxruntime - PyTorch| logit and the share of pixels whose argmax agrees, over `frames`."""
    graph = ExportGraph(model.float().cpu().eval())
    worst, agree, pixels = 0.0, 0, 0
    for frame in frames:
        with torch.no_grad():
            expected = graph(torch.from_numpy(frame)).numpy()
        got = segmenter.logits(frame)
        worst = max(worst, float(np.abs(got - expected).max()))
        agree += int((got.argmax(1) == expected.argmax(1)).sum())
        pixels += expected.shape[0] * expected.shape[2] * expected.shape[3]
    return worst, agree / pixels


def export_checkpoint_onnx(data: DataParams, deploy: DeployParams, input_size: Size, threads: int,
                           paths: ExportOnnxPaths) -> dict:
    """The export-onnx stage: export, check, verify on val frames against PyTorch, then write model.json.
    The network is the checkpoint's own (its stored architecture); `input_size` is inference.size."""
    state = load_checkpoint(paths.checkpoint)
    model = model_from_state(paths.checkpoint, state, torch.device("cpu"))
    metadata = model_metadata(model.config, paths.checkpoint, input_size, deploy,
                              training_scale(state.get("params") or {}))
    frames = sample_frames(data, "val", deploy.check_frames)
    with atomic_path(paths.onnx) as tmp:  # a model that fails the check never replaces the previous one
        tmp.write_bytes(export_onnx(model, metadata, deploy.opset, deploy.exporter))
        segmenter = OnnxSegmenter(tmp, threads, expected_checkpoint_sha256=metadata["checkpoint"]["sha256"])
        worst, agreement = logits_difference(model, segmenter, frames)
        if not worst <= deploy.logits_atol:  # `not <=` also catches NaN
            raise CitypipeError(f"{paths.onnx}: onnxruntime's logits differ from PyTorch's by up to {worst:.3g} "
                                f"on {len(frames)} val frames, over deploy.logits_atol {deploy.logits_atol:g}")
    write_json(paths.meta, metadata)
    return {"frames": len(frames), "max_abs_logit_diff": worst, "argmax_agreement": agreement}
