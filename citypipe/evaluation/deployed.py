"""The evaluate-onnx stage's work: evaluate's official scores of the exported ONNX models (fp32 and int8),
predicted by the torch-free deployment runtime, beside the PyTorch checkpoint's: what a deployment runs,
scored as the checkpoint is, and what int8 costs."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from citypipe.atomic import write_json
from citypipe.data import layout
from citypipe.deploy.predictor import OnnxPredictor, deploy_inference
from citypipe.errors import CitypipeError
from citypipe.evaluation.evaluate import evaluate
from citypipe.evaluation.scores import compute_scores
from citypipe.params import DataParams, DeviceParams, EvaluateParams, InferenceParams
from citypipe.prediction.predictor import checkpoint_file, frame_loader


@dataclass(frozen=True)
class DeployedPaths:
    cache: Path  # prepare-labels' trainId cache
    checkpoints: Path  # the checkpoint the models must be the export of (inference.checkpoint)
    models: dict[str, Path]  # {"fp32": models/model.onnx, "int8": models/model_int8.onnx}
    pytorch_metrics: Path  # evaluate's metrics/eval.json: the checkpoint's scores
    metrics: Path  # metrics/deploy.json


def evaluate_deployed(data: DataParams, inference: InferenceParams, evaluate_params: EvaluateParams,
                      device: DeviceParams, paths: DeployedPaths) -> dict:
    """mIoU and pixel accuracy of each ONNX model on evaluate.split, and their change from the checkpoint's."""
    samples = layout.find_samples(data.root, evaluate_params.split, data.cities)
    try:
        pytorch = json.loads(Path(paths.pytorch_metrics).read_text())
    except (OSError, ValueError, RecursionError) as error:
        raise CitypipeError(f"{paths.pytorch_metrics}: cannot read evaluate's metrics ({error}); run evaluate first") from None
    if not isinstance(pytorch, dict):
        raise CitypipeError(f"{paths.pytorch_metrics}: expected evaluate's JSON object of metrics, got "
                            f"{type(pytorch).__name__}; rerun evaluate")
    checkpoint = checkpoint_file(paths.checkpoints, inference)
    scores = {"pytorch_miou": pytorch.get("miou"), "pytorch_pixel_acc": pytorch.get("pixel_acc")}
    # every model loaded and checked against the checkpoint first: a missing or stale int8 model fails
    # before the fp32 model's whole evaluation, not after it
    predictors = {precision: OnnxPredictor.from_files(model, checkpoint, deploy_inference(inference), device.num_threads)
                  for precision, model in paths.models.items()}
    for precision, predictor in predictors.items():
        loader = frame_loader(samples, paths.cache, inference.batch_size, inference.workers, predictor.runtime)
        result = compute_scores(evaluate(predictor, loader))
        for key in ("miou", "pixel_acc"):
            scores[f"onnx_{precision}_{key}"] = result[key]
            if isinstance(scores[f"pytorch_{key}"], float):
                scores[f"onnx_{precision}_{key}_change"] = result[key] - scores[f"pytorch_{key}"]
    # DVC's metric: per precision its mIoU and change from PyTorch's (`dvc metrics show` columns fp32.miou, ...)
    write_json(paths.metrics, {precision: {key: scores[f"onnx_{precision}_{key}"] for key in ("miou", "miou_change")
                                           if f"onnx_{precision}_{key}" in scores} for precision in paths.models})
    return scores
