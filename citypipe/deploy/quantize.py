"""The quantize-onnx stage's work: static int8 quantization of the exported model with onnxruntime's
quantization tools, calibrated on training frames at the network's input size.

Weights int8 (per output channel by default), activations uint8, QDQ format (onnxruntime's CPU
kernels fuse each QuantizeLinear/DequantizeLinear pair around a Conv into an int8 Conv). The model
metadata is carried over, marked "precision": "int8", so the runtime checks it like the fp32 model.
"""
from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from citypipe.atomic import atomic_path
from citypipe.deploy.export import sample_frames
from citypipe.deploy.runtime import METADATA_KEY, OnnxSegmenter, resize_image
from citypipe.errors import CitypipeError, first_line
from citypipe.params import DataParams, DeployParams

METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
           "percentile": CalibrationMethod.Percentile}


@dataclass(frozen=True)
class QuantizePaths:
    onnx: Path  # the fp32 model (export-onnx's output)
    int8: Path  # models/model_int8.onnx


class _Frames(CalibrationDataReader):
    """Feeds the calibration frames, one (1, 3, H, W) uint8 batch at a time."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self._frames = iter(frames)

    def get_next(self) -> dict | None:
        frame = next(self._frames, None)
        return None if frame is None else {"image": frame}


def quantize_int8(fp32: Path, out: Path, frames: list[np.ndarray], method: str, per_channel: bool) -> None:
    """Static int8 quantization of `fp32` into `out`, calibrated on `frames` ((1, 3, H, W) uint8 each)."""
    metadata = OnnxSegmenter(fp32).metadata  # also: a corrupt fp32 model fails here in one line
    with tempfile.TemporaryDirectory() as scratch:
        quantized = Path(scratch) / "int8.onnx"
        quiet = logging.getLogger()  # the quantizer logs advice on the root logger
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            quantize_static(str(fp32), str(quantized), _Frames(frames), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=per_channel,
                            calibrate_method=METHODS[method])
        except Exception as error:
            raise CitypipeError(f"{fp32}: int8 quantization failed ({first_line(error)})") from None
        finally:
            quiet.setLevel(level)
        proto = onnx.load(str(quantized))
    metadata = {**metadata, "precision": "int8",
                "calibration": {"frames": len(frames), "method": method, "per_channel": per_channel}}
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    with atomic_path(out) as tmp:
        tmp.write_bytes(proto.SerializeToString())


def quantize_model(data: DataParams, deploy: DeployParams, paths: QuantizePaths) -> int:
    """The quantize-onnx stage: `deploy.calibration_frames` training frames, resized to the network's
    input size as whole-image prediction resizes them; returns the number of frames used."""
    metadata = OnnxSegmenter(paths.onnx).metadata
    if "input_size" not in metadata:
        raise CitypipeError(f"{paths.onnx}: its metadata records no input_size to calibrate at; rerun export-onnx")
    input_size = tuple(metadata["input_size"])
    frames = [resize_image(frame, input_size) for frame in sample_frames(data, "train", deploy.calibration_frames)]
    quantize_int8(paths.onnx, paths.int8, frames, deploy.calibration_method, deploy.per_channel)
    return len(frames)
