"""The export-submission stage's work: predict a split at full resolution and write the submission."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from citypipe.atomic import atomic_dir, write_png
from citypipe.data import layout
from citypipe.params import (
    DataParams,
    DeviceParams,
    ExportParams,
    InferenceParams,
)
from citypipe.prediction.predictor import Predictor, checkpoint_file, frame_loader
from citypipe.runtime import runtime_for
from citypipe.submission.files import (
    submission_name,
    to_label_ids,
    validate_submission,
    zip_folder,
)


@dataclass(frozen=True)
class ExportPaths:
    checkpoints: Path  # best.pt / last.pt, as inference.checkpoint says
    folder: Path  # submission/labelIds
    zip: Path  # submission/submission.zip


def export_submission(data: DataParams, inference: InferenceParams, export: ExportParams, device: DeviceParams,
                      paths: ExportPaths) -> int:
    """labelIds PNGs of `export.split` predicted as `inference` says, validated, then zipped; returns the count."""
    samples = layout.find_samples(data.root, export.split, data.cities)
    runtime = runtime_for(device)
    predictor = Predictor.from_checkpoint(checkpoint_file(paths.checkpoints, inference), inference, runtime)
    loader = frame_loader(samples, None, inference.batch_size, inference.workers, runtime)
    with atomic_dir(paths.folder) as tmp:
        for batch, prediction in predictor.frames(loader, f"export {export.split}"):
            for fid, train_ids in zip(batch["frame_id"], prediction.cpu().numpy()):
                write_png(tmp / submission_name(fid), to_label_ids(train_ids))
        validate_submission(tmp, samples)  # a bad submission never replaces a good one
    zip_folder(paths.folder, paths.zip)
    return len(samples)
