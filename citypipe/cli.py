"""The `citypipe` command, for work outside DVC: inference on images or a split, params profiles, comparing
experiments. torch, pandas and DVC are imported inside the commands, so `citypipe --help` stays fast."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from citypipe.command_line import is_out_of_memory, params_option, reports_errors
from citypipe.errors import CitypipeError, first_line
from citypipe.params import check_plain_name, scale_to_zero

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
POSITIVE = click.IntRange(min=1)


class OneLineErrors(click.Group):
    """Usage errors as one `error: ...` line and exit status 1, like CitypipeError in the commands."""

    def main(self, *args, **kwargs):
        kwargs.pop("standalone_mode", None)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.ClickException as error:
            click.echo(f"error: {error.format_message()}", err=True)
            sys.exit(1)
        except click.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=OneLineErrors)
@click.version_option(package_name="citypipe", message="citypipe %(version)s")
def main() -> None:
    """citypipe: Cityscapes semantic segmentation (the DVC stages live in dvc.yaml)."""


def _scales(ctx, param, values: tuple[str, ...]) -> tuple[float, ...]:
    """--scales 0.75,1.0,1.25 or --scales 0.75 --scales 1.0 -> (0.75, 1.0, 1.25)."""
    try:
        scales = tuple(float(s) for value in values for s in value.split(",") if s.strip())
    except ValueError:
        raise click.BadParameter(f"{','.join(values)!r} is not a list of numbers like 0.75,1.0,1.25") from None
    if any(s <= 0 for s in scales):
        raise click.BadParameter(f"{','.join(values)!r}: scales must be positive")
    return scales or (1.0,)


def check_scales(source: Path, size: tuple[int, int], scales: tuple[float, ...]) -> None:
    """A scale that rounds the network input to zero pixels cannot be predicted: say which, before the model runs."""
    bad = scale_to_zero(size, scales)
    if bad is not None:
        raise CitypipeError(f"--scales {bad}: {source} at {size[0]}x{size[1]} would be {round(size[0] * bad)}x"
                            f"{round(size[1] * bad)} pixels (expected scales that keep at least 1 pixel)")


def _data_root(data_root: Path | None, params_path: str) -> Path:
    if data_root is not None:
        return data_root
    from citypipe.params import load_params

    return Path(load_params(params_path).data.root)


def _inputs(image: Path) -> tuple[Path, list[Path]]:
    """(the folder outputs mirror, the images): a folder is searched recursively (split/city/...)."""
    if image.is_dir():
        files = sorted(p for p in image.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise CitypipeError(f"{image}: folder has no images ({', '.join(IMAGE_SUFFIXES)}), sub-folders included")
        return image, files
    if not image.is_file():
        raise CitypipeError(f"{image}: no such image or folder")
    return image.parent, [image]


def _targets(output: Path, base: Path, source: Path, many: bool) -> dict[str, Path]:
    """Where one image's overlay and masks go: OUT/<path below base>/<stem>_overlay.png, or OUT itself."""
    if many:
        stem = output / source.relative_to(base).parent / source.stem
        return {kind: stem.with_name(f"{stem.name}_{kind}.png") for kind in ("overlay", "trainIds", "labelIds")}
    return {"overlay": output, **{kind: output.with_name(f"{output.stem}_{kind}.png") for kind in ("trainIds", "labelIds")}}


def _check_output(output: Path, many: bool) -> None:
    if not many and output.is_dir():
        raise CitypipeError(f"--output {output}: is a folder; give a file name for the overlay (e.g. {output / 'overlay.png'})")
    if many and output.exists() and not output.is_dir():
        raise CitypipeError(f"--output {output}: is a file; give a folder for a folder of images")


def _slide_window(mode, crop_size, stride, params_path):
    """--crop-size / --stride, defaulting to the evaluate stage's window in slide mode (read once)."""
    if mode == "slide" and (crop_size is None or stride is None):
        from citypipe.params import load_params

        evaluate = load_params(params_path).evaluate
        crop_size, stride = crop_size or tuple(evaluate.crop_size), stride or tuple(evaluate.stride)
    return crop_size, stride


def _inference_config(mode, size, crop_size, stride, flip, scales):
    from citypipe.params import stride_leaves_gaps
    from citypipe.prediction.inference import InferenceConfig

    crop_size, stride = tuple(crop_size or size), tuple(stride or size)
    if mode == "slide" and stride_leaves_gaps(stride, crop_size):
        raise CitypipeError(f"--stride {' '.join(map(str, stride))}: expected at most --crop-size "
                            f"{' '.join(map(str, crop_size))} on each axis (a larger stride leaves pixels unpredicted)")
    return InferenceConfig(mode, size, crop_size, stride, flip, scales)


@main.command()
@click.argument("image", required=False, type=click.Path(path_type=Path))
@click.option("--split", default=None, help="Segment DATA_ROOT/leftImg8bit/SPLIT (all cities) instead of IMAGE.")
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="For --split (default: data.root in --params).")
@params_option
@click.option("--checkpoint", required=True, type=click.Path(path_type=Path))
@click.option("--output", required=True, type=click.Path(path_type=Path),
              help="Overlay PNG for one image; a folder (mirroring the input's sub-folders) for a folder or a split.")
@click.option("--image-size", type=(POSITIVE, POSITIVE), default=None,
              help="Network input size H W (default: the image's own size).")
@click.option("--mask", type=click.Choice(["none", "trainids", "labelids"]), default="none", show_default=True,
              help="Also write the mask next to the overlay (*_trainIds.png / *_labelIds.png).")
@click.option("--device", "device_type", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto",
              show_default=True)
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.5, show_default=True, help="Overlay opacity.")
@click.option("--mode", type=click.Choice(["whole", "slide"]), default="whole", show_default=True)
@click.option("--flip", is_flag=True, help="Average with the horizontally flipped image.")
@click.option("--scales", multiple=True, callback=_scales, help="Multi-scale averaging, e.g. 0.75,1.0,1.25.")
@click.option("--crop-size", type=(POSITIVE, POSITIVE), default=None,
              help="Slide window H W (default: evaluate.crop_size in --params).")
@click.option("--stride", type=(POSITIVE, POSITIVE), default=None, help="Slide stride H W (default: evaluate.stride).")
@click.option("--amp", is_flag=True, help="Predict under bf16 autocast on CUDA (faster); by default in fp32, as evaluate scores.")
@reports_errors
def infer(image, split, data_root, params_path, checkpoint, output, image_size, mask, device_type, alpha, mode, flip,
          scales, crop_size, stride, amp) -> None:
    """Segment IMAGE (a file, or a folder searched recursively) or --split, and write colour overlays."""
    if (image is None) == (split is None):
        raise CitypipeError("give either IMAGE or --split NAME")
    if split is not None:
        check_plain_name("--split", split)
        image = _data_root(data_root, params_path) / "leftImg8bit" / split
        if not image.is_dir():
            raise CitypipeError(f"--split {split}: no folder {image}")
    base, inputs = _inputs(image)
    many = image.is_dir()
    _check_output(output, many)
    from citypipe.atomic import refuse_overwriting

    refuse_overwriting(inputs, [t for s in inputs for k, t in _targets(output, base, s, many).items()
                                if k == "overlay" or k.lower() == mask])
    crop_size, stride = _slide_window(mode, crop_size, stride, params_path)

    import numpy as np
    import torch

    from citypipe.atomic import write_png
    from citypipe.data.dataset import open_image
    from citypipe.models.checkpoint import load_model
    from citypipe.prediction.predictor import Predictor
    from citypipe.runtime import make_runtime
    from citypipe.submission.files import to_label_ids
    from citypipe.visualization.panels import overlay

    runtime = make_runtime(device_type, "bf16", False, True, 0)
    model = load_model(checkpoint, None, runtime.device)
    for source in inputs:
        picture = np.array(open_image(source))  # (H, W, 3) uint8
        size = tuple(image_size) if image_size else picture.shape[:2]
        check_scales(source, size if mode == "whole" else picture.shape[:2], scales)  # slide scales the image itself
        config = _inference_config(mode, size, crop_size, stride, flip, scales)
        tensor = torch.from_numpy(picture).permute(2, 0, 1)[None].to(runtime.device)
        try:
            train_ids = Predictor(model, runtime, config, amp).predict(tensor)[0].cpu().numpy()
        except (RuntimeError, MemoryError) as error:  # torch.OutOfMemoryError is a RuntimeError
            if not is_out_of_memory(error):
                raise
            raise CitypipeError(f"{source}: out of memory at {size[0]}x{size[1]} on {runtime.device} "
                                f"(use --image-size to run the network smaller)") from None
        targets = _targets(output, base, source, many)
        write_png(targets["overlay"], overlay(picture, train_ids, alpha))
        if mask == "trainids":
            write_png(targets["trainIds"], train_ids)
        elif mask == "labelids":
            write_png(targets["labelIds"], to_label_ids(train_ids))
    click.echo(f"infer: {len(inputs)} image(s) -> {output}")


@main.command()
@click.option("--baseline", default=None, help="The row the changes are from (default: HEAD's commit).")
@click.option("--md", "markdown", is_flag=True, help="Markdown tables (for a pull request).")
@click.option("--top-classes", type=click.IntRange(min=0), default=5, show_default=True,
              help="Show the N classes whose IoU moved most.")
@click.option("--all-branches", "-A", is_flag=True, help="Also the experiments of every branch.")
@click.option("--repo", type=click.Path(file_okay=False, path_type=Path), default=Path("."), help="The DVC project.")
@click.option("--metrics", "eval_file", default="metrics/eval.json", show_default=True,
              help="The evaluate stage's metrics file (siblings like metrics/eval_classes.json are merged in).")
@reports_errors
def compare(baseline: str | None, markdown: bool, top_classes: int, all_branches: bool, repo: Path,
            eval_file: str) -> None:
    """Compare the workspace, the baseline commit and its `dvc exp` experiments: params that differ,
    mIoU / pixel accuracy / iIoU with the change from the baseline, and the classes that moved most."""
    from citypipe.compare import collect_experiments, report

    experiments, head = collect_experiments(repo, all_branches, eval_file)
    if not experiments:
        raise CitypipeError(f"{repo}: no experiments with metrics (run `dvc exp run` first)")
    click.echo(report(experiments, baseline or head, top_classes, markdown), nl=False)


def profile_path(params_file: Path, name: str) -> Path:
    """profiles/NAME.yaml of the project: the package's repository root first, then the params file's folder."""
    import citypipe
    from citypipe.profiles import check_profile_name

    check_profile_name(name)
    folders = [Path(citypipe.__file__).resolve().parents[1] / "profiles", params_file.resolve().parent / "profiles"]
    for folder in folders:
        if (folder / f"{name}.yaml").is_file():
            return folder / f"{name}.yaml"
    known = sorted({p.stem for folder in folders for p in folder.glob("*.yaml")})
    raise CitypipeError(f"{name}: no such profile (known: {', '.join(known) or 'none'}) "
                        f"in {' or '.join(str(f) for f in dict.fromkeys(folders))}")


@main.command()
@click.argument("name")
@click.option("--data-root", default=None, help="Where the dataset is (sets data.root).")
@params_option
@click.option("--dry-run", is_flag=True, help="Print the changes without writing params.yaml.")
@reports_errors
def profile(name: str, data_root: str | None, params_path: str, dry_run: bool) -> None:
    """Apply profiles/NAME.yaml to params.yaml, comments kept (e.g. `cityscapes`: the real recipe)."""
    from citypipe.atomic import write_text
    from citypipe.profiles import apply_profile, check_data_root, read_profile

    params_file = Path(params_path)
    changes_wanted = read_profile(profile_path(params_file, name))
    if data_root is not None:
        check_data_root(data_root, params_file)
        changes_wanted.setdefault("data", {})["root"] = data_root
    try:
        params_text = params_file.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise CitypipeError(f"{params_file}: cannot read ({first_line(error)})") from None
    new_text, changes = apply_profile(params_text, changes_wanted, params_file)
    for line in changes:
        click.echo(f"  {line}")
    if not dry_run:
        write_text(params_file, new_text)
    click.echo(f"profile {name}: {len(changes)} change(s) {'would be written to' if dry_run else 'written to'} {params_file}")
