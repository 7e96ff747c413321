"""The `citypipe` command, for work outside DVC: single-image (or folder) inference, params profiles."""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import torch

from citypipe.atomic import write_png, write_text
from citypipe.command_line import params_option, reports_errors
from citypipe.data.dataset import open_image
from citypipe.errors import CitypipeError
from citypipe.models.checkpoint import load_model
from citypipe.prediction.inference import InferenceConfig, predict
from citypipe.profiles import apply_profile, read_profile
from citypipe.runtime import make_runtime
from citypipe.submission.files import to_label_ids
from citypipe.visualization.panels import overlay

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@click.group()
def main() -> None:
    """citypipe: Cityscapes semantic segmentation (the DVC stages live in dvc.yaml)."""


def _inputs(image: Path) -> list[Path]:
    if image.is_dir():
        files = sorted(p for p in image.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise CitypipeError(f"{image}: folder has no images ({', '.join(IMAGE_SUFFIXES)})")
        return files
    if not image.is_file():
        raise CitypipeError(f"{image}: no such image or folder")
    return [image]


def _target(output: Path, source: Path, many: bool, suffix: str) -> Path:
    return output / f"{source.stem}{suffix}.png" if many else output.with_name(f"{output.stem}{suffix}.png")


@main.command()
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--checkpoint", required=True, type=click.Path(path_type=Path))
@click.option("--output", required=True, type=click.Path(path_type=Path), help="Overlay PNG (a folder for a folder of images).")
@click.option("--image-size", type=int, nargs=2, default=None, help="Network input size H W (default: the image's own size).")
@click.option("--mask", type=click.Choice(["none", "trainids", "labelids"]), default="none", show_default=True,
              help="Also write the mask next to the overlay (*_trainIds.png / *_labelIds.png).")
@click.option("--device", "device_type", default="auto", show_default=True)
@click.option("--alpha", type=float, default=0.5, show_default=True)
@reports_errors
def infer(image: Path, checkpoint: Path, output: Path, image_size, mask: str, device_type: str, alpha: float) -> None:
    """Segment IMAGE (a file or a folder of images) and write a colour overlay."""
    runtime = make_runtime(device_type, "bf16", False, True, 0)
    model = load_model(checkpoint, None, runtime.device)
    inputs = _inputs(image)
    many = image.is_dir()
    for source in inputs:
        picture = np.array(open_image(source))  # (H, W, 3)
        size = tuple(image_size) if image_size else picture.shape[:2]
        tensor = torch.from_numpy(picture).permute(2, 0, 1)[None].to(runtime.device)
        inference = InferenceConfig("whole", size, size, size, False, (1.0,))
        train_ids = predict(model, tensor, inference, model.config.num_classes, runtime.autocast())[0].cpu().numpy()
        write_png(output / f"{source.stem}_overlay.png" if many else output, overlay(picture, train_ids, alpha))
        if mask == "trainids":
            write_png(_target(output, source, many, "_trainIds"), train_ids)
        elif mask == "labelids":
            write_png(_target(output, source, many, "_labelIds"), to_label_ids(train_ids))
    click.echo(f"infer: {len(inputs)} image(s) -> {output}")


@main.command()
@click.argument("name")
@click.option("--data-root", default=None, help="Where the dataset is (sets data.root).")
@params_option
@click.option("--dry-run", is_flag=True, help="Print the changes without writing params.yaml.")
@reports_errors
def profile(name: str, data_root: str | None, params_path: str, dry_run: bool) -> None:
    """Apply profiles/NAME.yaml to params.yaml, comments kept (e.g. `cityscapes`: the real recipe)."""
    params_file = Path(params_path)
    changes_wanted = read_profile(params_file.resolve().parent / "profiles" / f"{name}.yaml")
    if data_root is not None:
        changes_wanted.setdefault("data", {})["root"] = data_root
    try:
        params_text = params_file.read_text()
    except OSError as error:
        raise CitypipeError(f"{params_file}: cannot read ({error.strerror})") from None
    new_text, changes = apply_profile(params_text, changes_wanted)
    for line in changes:
        click.echo(f"  {line}")
    if not dry_run:
        write_text(params_file, new_text)
    click.echo(f"profile {name}: {len(changes)} change(s) {'would be written to' if dry_run else 'written to'} {params_file}")
