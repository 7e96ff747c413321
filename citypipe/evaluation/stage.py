"""The evaluate stage's work: load a checkpoint, score the split, write metrics and figures."""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import DataLoader

from citypipe.atomic import write_json, write_text
from citypipe.data import layout
from citypipe.data.dataset import EvalFrames
from citypipe.errors import CitypipeError
from citypipe.evaluation.inference import InferenceConfig
from citypipe.evaluation.run import evaluate
from citypipe.evaluation.scores import compute_scores
from citypipe.labels import NUM_CLASSES
from citypipe.models.checkpoint import load_model
from citypipe.models.deeplab import ModelConfig
from citypipe.training.device import Runtime
from citypipe.visualization.figures import class_iou_figure, confusion_figure


def class_iou_csv(class_iou: dict[str, float]) -> str:
    rows = ["class,iou"] + [f"{name},{'' if v != v else f'{v:.6f}'}" for name, v in class_iou.items()]
    return "\n".join(rows) + "\n"


def run_evaluate(root: str, cities: tuple[str, ...], split: str, cache: Path, checkpoint: Path, config: ModelConfig,
                 inference: InferenceConfig, runtime: Runtime, batch_size: int, workers: int, metrics: Path,
                 plots: Path) -> dict:
    samples = layout.find_samples(root, split, cities)
    if not any(s.label_ids.is_file() for s in samples) or split == "test":
        raise CitypipeError(f"evaluate.split: {split} has no labels to score against (use val)")
    model = load_model(checkpoint, config, runtime.device, runtime.channels_last)
    loader = DataLoader(EvalFrames(samples, cache), batch_size=batch_size, num_workers=workers,
                        pin_memory=runtime.device.type == "cuda")
    cm = evaluate(model, loader, runtime, inference, NUM_CLASSES)
    scores = compute_scores(cm)
    scores["num_images"] = len(samples)
    write_json(metrics, scores)
    write_text(Path(plots) / "class_iou.csv", class_iou_csv(scores["class_iou"]))
    confusion_figure(cm.mat.cpu().numpy(), Path(plots) / "confusion_matrix.png")
    class_iou_figure(scores["class_iou"], Path(plots) / "class_iou.png")
    return scores
