"""The export-submission stage's work: predict a split at full resolution and write the submission."""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import DataLoader

from citypipe.atomic import atomic_dir, write_png
from citypipe.data import layout
from citypipe.data.dataset import EvalFrames
from citypipe.evaluation.inference import InferenceConfig
from citypipe.evaluation.run import iter_predictions
from citypipe.labels import NUM_CLASSES
from citypipe.models.checkpoint import load_model
from citypipe.models.deeplab import ModelConfig
from citypipe.submission import submission_name, to_label_ids, validate_submission, zip_folder
from citypipe.training.device import Runtime


def run_export(root: str, cities: tuple[str, ...], split: str, checkpoint: Path, config: ModelConfig,
               inference: InferenceConfig, runtime: Runtime, batch_size: int, workers: int, out_dir: Path,
               zip_path: Path) -> int:
    samples = layout.find_samples(root, split, cities)
    model = load_model(checkpoint, config, runtime.device, runtime.channels_last)
    loader = DataLoader(EvalFrames(samples, None, with_labels=False), batch_size=batch_size, num_workers=workers,
                        pin_memory=runtime.device.type == "cuda")
    with atomic_dir(out_dir) as tmp:
        for batch, prediction in iter_predictions(model, loader, runtime, inference, NUM_CLASSES, f"export {split}"):
            for fid, train_ids in zip(batch["frame_id"], prediction.cpu().numpy()):
                write_png(tmp / submission_name(fid), to_label_ids(train_ids))
        validate_submission(tmp, samples)  # a bad submission never replaces a good one
    zip_folder(out_dir, zip_path)
    return len(samples)
