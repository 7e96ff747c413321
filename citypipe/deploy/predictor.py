"""An exported ONNX model behind the interface of prediction/predictor.py's `Predictor`, so that
evaluate (and anything else that predicts frames) can score exactly what a deployment runs."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from citypipe.deploy.runtime import DeployInference, OnnxSegmenter, sha256_file
from citypipe.errors import CitypipeError
from citypipe.params import InferenceParams
from citypipe.runtime import Runtime


def deploy_inference(inference: InferenceParams) -> DeployInference:
    """params.yaml's `inference` settings, for the torch-free runtime."""
    return DeployInference(inference.mode, inference.size, inference.crop_size, inference.stride, inference.flip,
                           inference.scales)


@dataclass(frozen=True)
class OnnxPredictor:
    segmenter: OnnxSegmenter
    inference: DeployInference
    runtime: Runtime  # the CPU: onnxruntime's outputs are numpy arrays, scored where they are

    @classmethod
    def from_files(cls, onnx_path: Path, checkpoint: Path | None, inference: DeployInference,
                   threads: int) -> OnnxPredictor:
        """The ONNX model, checked to be the export of `checkpoint` (its sha256) unless that is None."""
        if checkpoint is not None and not Path(checkpoint).is_file():
            raise CitypipeError(f"{checkpoint}: checkpoint not found (the ONNX models are checked against it; "
                                "run the train stage first)")
        expected = sha256_file(checkpoint) if checkpoint is not None else None
        segmenter = OnnxSegmenter(onnx_path, threads, expected_checkpoint_sha256=expected)
        return cls(segmenter, inference, Runtime(torch.device("cpu"), None, False))

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) uint8 images -> (N, H, W) uint8 trainIds, on the images' device."""
        predicted = self.segmenter.predict(images.cpu().numpy(), self.inference)
        return torch.from_numpy(predicted).to(images.device)

    def frames(self, loader: DataLoader, desc: str, show_progress: bool = True) -> Iterator[tuple[dict, torch.Tensor]]:
        """Yields (batch, (N, H, W) uint8 trainId predictions on the CPU), as Predictor.frames."""
        for batch in tqdm(loader, desc=desc, unit="batch", disable=None if show_progress else True, leave=False):
            yield batch, self.predict(batch["image"])
