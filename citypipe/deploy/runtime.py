"""The deployment runtime: predict trainIds with an exported ONNX model, without PyTorch.

It imports onnxruntime, numpy, pillow and the standard library only (tests/test_deploy.py checks it in
a fresh interpreter), so `pip install onnxruntime numpy pillow` plus this package's source runs it.
Whole image, sliding window, flip and multi-scale run here, outside the graph, with the semantics of
citypipe/prediction/inference.py:

- the graph is (N, 3, h, w) uint8 -> (N, K, h, w) float32 logits at its input's size, normalisation inside;
- resizing follows F.interpolate(bilinear, align_corners=False; antialias for images) (resize.py);
- two differences, both forced by a uint8 input: a resized image is rounded to uint8 before the graph
  (PyTorch resizes the normalised float image), and images smaller than a sliding window are padded
  with the mean colour rounded to uint8 (PyTorch pads the normalised image with exact zeros).
  Neither happens in whole mode at the network size, where the logits match PyTorch's to float noise.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from citypipe.deploy.resize import resize_bilinear
from citypipe.errors import CitypipeError, first_line

METADATA_KEY = "citypipe"
MAX_SIDE = 1 << 16  # params.MAX_SIDE: the largest image side a size may give (this module imports no citypipe.params)  # the ONNX metadata_props entry that holds model.json's content
PAD_COLOR = (124, 116, 104)  # round(ImageNet mean * 255): the normalised zero that PyTorch pads with


@dataclass(frozen=True)
class DeployInference:
    """How to predict; the fields of citypipe.prediction.inference.InferenceConfig, without torch."""

    mode: str  # whole | slide
    size: tuple[int, int]  # whole: network input size (H, W) at scale 1.0
    crop_size: tuple[int, int]  # slide: window (H, W) at the original resolution
    stride: tuple[int, int]
    flip: bool  # average with the horizontally flipped prediction (softmax)
    scales: tuple[float, ...]


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _open_session(path: Path, threads: int, providers: tuple[str, ...]) -> ort.InferenceSession:
    if path.is_dir():
        raise CitypipeError(f"{path}: is a folder; expected an ONNX model file (models/model.onnx or model_int8.onnx)")
    if not path.is_file():
        raise CitypipeError(f"{path}: ONNX model not found (run the export-onnx stage first)")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # 0: onnxruntime's default (the machine's cores)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: warnings about unused initializers are noise here
    try:
        return ort.InferenceSession(str(path), options, providers=list(providers))
    except Exception as error:  # onnxruntime's own exception types (Fail, InvalidProtobuf, ...)
        raise CitypipeError(f"{path}: not a loadable ONNX model, corrupt or truncated? ({first_line(error)})") from None


def read_image(path: str | Path) -> np.ndarray:
    """An image file -> (1, 3, H, W) uint8 RGB, the graph's input layout."""
    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as error:
        raise CitypipeError(f"{path}: cannot read the image ({first_line(error)})") from None
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])


def _softmax(logits: np.ndarray) -> np.ndarray:
    """(N, K, H, W) -> probabilities over K, float32."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def resize_image(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, 3, h, w) uint8 -> (N, 3, H, W) uint8: antialiased bilinear (as prediction resizes), rounded."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    resized = resize_bilinear(images.astype(np.float32), size, antialias=True)
    return np.clip(np.rint(resized), 0, 255).astype(np.uint8)


def _is_size(value: object) -> bool:
    """[H, W] of positive integers, as export-onnx writes input_size, base_size and crop_size."""
    return (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_SIDE for v in value))


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def metadata_problem(metadata: object) -> str | None:
    """What is wrong with a model's metadata for the runtime and `citypipe infer --onnx` (the keys they read,
    as export-onnx writes them), or None: a hand-edited or foreign model fails here in one line, not later
    inside the prediction, or silently with settings it never had."""
    if not isinstance(metadata, dict):
        return f"expected a JSON object, got {type(metadata).__name__}"
    names = metadata.get("class_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return f"class_names: expected a list of class names, got {_short(names)}"
    if "input_size" in metadata and not _is_size(metadata["input_size"]):
        return f"input_size: expected [H, W] of integers in 1..{MAX_SIDE}, got {_short(metadata['input_size'])}"
    train = metadata.get("train", {})
    if not isinstance(train, dict):
        return f"train: expected an object with base_size and crop_size, got {_short(train)}"
    for key in ("base_size", "crop_size"):
        if key in train and not _is_size(train[key]):
            return f"train.{key}: expected [H, W] of integers in 1..{MAX_SIDE}, got {_short(train[key])}"
    checkpoint = metadata.get("checkpoint", {})
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("sha256", ""), str):
        return f"checkpoint: expected an object with the checkpoint's sha256, got {_short(checkpoint)}"
    return None


class OnnxSegmenter:
    """An exported model, ready to predict: logits of the graph, and every inference mode around it."""

    def __init__(self, path: str | Path, threads: int = 0, expected_checkpoint_sha256: str | None = None,
                 providers: tuple[str, ...] = ("CPUExecutionProvider",)) -> None:
        self.path = Path(path)
        self.session = _open_session(self.path, threads, providers)
        self.metadata = self._read_metadata()
        self.num_classes = len(self.metadata["class_names"])
        self._check_classes(self.session.get_outputs()[0].shape)
        if expected_checkpoint_sha256 is not None:
            self.check_checkpoint_sha256(expected_checkpoint_sha256)

    def _read_metadata(self) -> dict:
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if raw is None:
            raise CitypipeError(f"{self.path}: no {METADATA_KEY!r} metadata (not exported by citypipe's export-onnx)")
        try:
            metadata = json.loads(raw)
        except (ValueError, RecursionError) as error:
            raise CitypipeError(f"{self.path}: {METADATA_KEY!r} metadata is not JSON ({first_line(error)})") from None
        problem = metadata_problem(metadata)
        if problem is not None:
            raise CitypipeError(f"{self.path}: {METADATA_KEY!r} metadata: {problem} (rerun export-onnx)")
        return metadata

    def _check_classes(self, shape: list) -> None:
        """The graph's class axis (when known) must match the metadata's classes: more would give trainIds
        without a name or colour, fewer would mislabel every class after them."""
        classes = shape[1] if len(shape) == 4 else None
        if isinstance(classes, int) and classes != self.num_classes:
            raise CitypipeError(f"{self.path}: the graph outputs {classes} classes, its metadata names "
                                f"{self.num_classes} (class_names); rerun export-onnx")

    def check_checkpoint_sha256(self, expected: str) -> None:
        """One line when this model was exported from another checkpoint than the one asked for."""
        stored = self.metadata.get("checkpoint", {}).get("sha256")
        if not stored:
            raise CitypipeError(f"{self.path}: its metadata records no checkpoint sha256, so it cannot be checked "
                                "against the checkpoint to score; rerun export-onnx")
        if stored != expected:
            raise CitypipeError(f"{self.path}: exported from checkpoint sha256 {stored[:16]}..., not from the "
                                f"checkpoint to score ({expected[:16]}...); rerun export-onnx")

    def _check_images(self, images: np.ndarray) -> None:
        graph = self.session.get_inputs()[0]
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3:
            got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, np.ndarray) else type(images).__name__
            raise CitypipeError(f"{self.path}: images must be uint8 RGB (N, 3, H, W), got {got}")
        fixed = [(axis, want) for axis, want in enumerate(graph.shape) if isinstance(want, int)]
        if images.shape[2] < 1 or images.shape[3] < 1 or any(images.shape[a] != want for a, want in fixed):
            raise CitypipeError(f"{self.path}: the graph cannot take an image batch of shape {tuple(images.shape)} "
                                f"(its input is {graph.shape})")

    def logits(self, images: np.ndarray) -> np.ndarray:
        """(N, 3, H, W) uint8 -> (N, K, H, W) float32 logits: one run of the graph."""
        self._check_images(images)
        try:
            logits = self.session.run(["logits"], {"image": np.ascontiguousarray(images)})[0]
        except Exception as error:
            raise CitypipeError(f"{self.path}: onnxruntime failed on images of shape {tuple(images.shape)} "
                                f"({first_line(error)})") from None
        self._check_classes(list(logits.shape))  # a graph whose class axis is symbolic
        return logits

    def _forward(self, images: np.ndarray, flip: bool) -> np.ndarray:
        """(N, 3, h, w) uint8 -> (N, K, h, w): logits, or the flip-averaged softmax when flip."""
        logits = self.logits(images)
        if not flip:
            return logits
        flipped = self.logits(images[..., ::-1])[..., ::-1]
        return (_softmax(logits) + _softmax(flipped)) / 2

    def _slide(self, images: np.ndarray, crop: tuple[int, int], stride: tuple[int, int], flip: bool) -> np.ndarray:
        """Average overlapping windows, as prediction/inference.py's _slide; (N, K, h, w)."""
        n, _, h, w = images.shape
        pad_h, pad_w = max(crop[0] - h, 0), max(crop[1] - w, 0)
        if pad_h or pad_w:
            padded = np.empty((n, 3, h + pad_h, w + pad_w), dtype=np.uint8)
            padded[:] = np.array(PAD_COLOR, dtype=np.uint8).reshape(1, 3, 1, 1)
            padded[:, :, :h, :w] = images
            images = padded
        H, W = images.shape[-2:]
        rows = list(range(0, max(H - crop[0], 0) + 1, stride[0]))
        cols = list(range(0, max(W - crop[1], 0) + 1, stride[1]))
        rows += [H - crop[0]] if rows[-1] != H - crop[0] else []
        cols += [W - crop[1]] if cols[-1] != W - crop[1] else []
        total = np.zeros((n, self.num_classes, H, W), dtype=np.float32)
        count = np.zeros((1, 1, H, W), dtype=np.float32)
        for y in rows:
            for x in cols:
                window = (slice(None), slice(None), slice(y, y + crop[0]), slice(x, x + crop[1]))
                total[window] += self._forward(images[window], flip)
                count[window] += 1
        return (total / count)[:, :, :h, :w]

    def scores(self, images: np.ndarray, inference: DeployInference) -> np.ndarray:
        """(N, 3, H, W) uint8 -> (N, K, H, W) float32 scores whose argmax is the prediction."""
        self._check_images(images)
        height, width = images.shape[-2:]
        total = None
        for scale in inference.scales:
            if inference.mode == "whole":
                size = (round(inference.size[0] * scale), round(inference.size[1] * scale))
            else:
                size = (round(height * scale), round(width * scale))
            if min(size) < 1:
                raise CitypipeError(f"inference.scales {scale}: a {height}x{width} image would be {size[0]}x{size[1]} "
                                    "pixels (expected scales that keep at least 1 pixel)")
            scaled = resize_image(images, size)
            if inference.mode == "whole":
                out = self._forward(scaled, inference.flip)
            else:
                out = self._slide(scaled, inference.crop_size, inference.stride, inference.flip)
            out = resize_bilinear(out, (height, width))
            if len(inference.scales) > 1 and not inference.flip:
                out = _softmax(out)
            total = out if total is None else total + out
        return total

    def predict(self, images: np.ndarray, inference: DeployInference) -> np.ndarray:
        """(N, 3, H, W) uint8 RGB -> (N, H, W) uint8 trainIds at (H, W)."""
        return self.scores(images, inference).argmax(1).astype(np.uint8)
