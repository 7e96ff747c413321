"""The `citypipe` command, for work outside DVC: inference on images or a split, params profiles, comparing
experiments. torch, pandas and DVC are imported inside the commands, so `citypipe --help` stays fast."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from citypipe.command_line import params_option, reports_errors
from citypipe.errors import CitypipeError, first_line
from citypipe.params import MAX_SCALE, MAX_SIDE, SEED_MAX, Params, check_plain_name

SIDE = click.IntRange(min=1, max=MAX_SIDE)  # beyond it torch's size arithmetic overflows (a traceback, not an error)


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


def _scales(ctx, param, values: tuple[str, ...]) -> tuple[float, ...] | None:
    """--scales 0.75,1.0,1.25 or --scales 0.75 --scales 1.0 -> (0.75, 1.0, 1.25); None if not given."""
    try:
        scales = tuple(float(s) for value in values for s in value.split(",") if s.strip())
    except ValueError:
        raise click.BadParameter(f"{','.join(values)!r} is not a list of numbers like 0.75,1.0,1.25") from None
    if any(not s > 0 for s in scales):
        raise click.BadParameter(f"{','.join(values)!r}: scales must be positive")
    if any(s > MAX_SCALE for s in scales):
        raise click.BadParameter(f"{','.join(values)!r}: scales must be at most {MAX_SCALE:g}")
    return scales or None


DEFAULT = click.core.ParameterSource.DEFAULT


def check_onnx_options(checkpoint_source, amp: bool, device_type: str | None) -> None:
    """--onnx replaces the checkpoint and PyTorch: options of those are mistakes, said in one line."""
    if checkpoint_source != DEFAULT:
        raise CitypipeError("give --checkpoint or --onnx, not both (--onnx predicts with the exported model alone)")
    if amp:
        raise CitypipeError("--amp is PyTorch's autocast; --onnx runs the model in the precision it was exported "
                            "in (model.onnx fp32, model_int8.onnx int8)")
    if device_type in ("cuda", "mps"):
        raise CitypipeError(f"--device {device_type}: --onnx runs on the CPU (onnxruntime's CPU provider)")


def infer_params(params_path: str, device_type: str | None, optional: bool) -> Params | None:
    """--params' Params (device.type overridden by --device); None when `optional` (--onnx with the default
    --params) and the file is not there: a deploy machine may have only the model."""
    from citypipe.params import load_params

    if optional and not Path(params_path).exists():
        return None
    return load_params(params_path, {"device.type": device_type} if device_type else None)


@main.command(short_help="Segment images, a folder or a split; write overlays and masks.")
@click.argument("image", required=False, type=click.Path(path_type=Path))
@click.option("--split", default=None, help="Segment DATA_ROOT/leftImg8bit/SPLIT (all cities) instead of IMAGE.")
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="For --split (default: data.root in --params).")
@params_option
@click.option("--checkpoint", type=click.Path(path_type=Path), default=Path("checkpoints/best.pt"), show_default=True,
              help="The trained model (the train stage writes checkpoints/best.pt and last.pt).")
@click.option("--onnx", "onnx_path", type=click.Path(path_type=Path), default=None,
              help="Predict with an exported model instead of --checkpoint (models/model.onnx or model_int8.onnx), "
                   "on the CPU through the deployment runtime, as evaluate-onnx scores it. The file alone "
                   "suffices: --params is read only if given or present.")
@click.option("--output", required=True, type=click.Path(path_type=Path),
              help="Overlay PNG for one image; a folder (mirroring the input's sub-folders) for a folder or a split.")
@click.option("--mode", type=click.Choice(["whole", "slide"]), default=None, help="Default: whole.")
@click.option("--size", type=(SIDE, SIDE), default=None,
              help="Network input size H W in whole mode (default: the size the checkpoint was validated at; "
                   "with --onnx the model's input_size).")
@click.option("--crop-size", type=(SIDE, SIDE), default=None,
              help="Slide window H W at the image's resolution (default: the model's train.crop_size).")
@click.option("--stride", type=(SIDE, SIDE), default=None, help="Slide stride H W (default: 2/3 of the window).")
@click.option("--flip/--no-flip", default=None, help="Average with the horizontally flipped image (default: no).")
@click.option("--scales", multiple=True, callback=_scales, help="Multi-scale averaging, e.g. 0.75,1.0,1.25 (default: 1.0).")
@click.option("--amp", is_flag=True,
              help="Predict under device.amp's autocast on CUDA (faster); by default in fp32, as evaluate scores. "
                   "Not with --onnx.")
@click.option("--mask", type=click.Choice(["none", "trainids", "labelids"]), default="none", show_default=True,
              help="Also write the mask next to the overlay (*_trainIds.png / *_labelIds.png).")
@click.option("--device", "device_type", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default=None,
              help="Override device.type of --params (whose device section is used; --onnx runs on the CPU "
                   "with device.num_threads).")
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.5, show_default=True, help="Overlay opacity.")
@click.option("--corrupt", "corrupt_spec", default=None, metavar="NAME:SEVERITY",
              help="Segment the image under a Cityscapes-C corruption, e.g. fog:3 (the overlay shows the corrupted "
                   "image; *_corrupted.png is written beside it).")
@click.option("--corrupt-seed", type=int, default=0, show_default=True,
              help="With --corrupt: the robustness stage's robustness.seed, to see the stage's own pixels.")
@reports_errors
def infer(image, split, data_root, params_path, checkpoint, onnx_path, output, mode, size, crop_size, stride, flip,
          scales, amp, mask, device_type, alpha, corrupt_spec, corrupt_seed) -> None:
    """Segment IMAGE (a file, or a folder searched recursively) or --split; write overlays with a legend.

    Predicts with --checkpoint, or with an exported model (--onnx). Test-time settings default to those
    the model records (a checkpoint: the size it was validated at and its training crop; an ONNX model:
    its metadata's input_size and training scale); the options override them.
    """
    if (image is None) == (split is None):
        raise CitypipeError("give either IMAGE or --split NAME")
    source = click.get_current_context().get_parameter_source
    if onnx_path is not None:
        check_onnx_options(source("checkpoint"), amp, device_type)
    params = infer_params(params_path, device_type, onnx_path is not None and source("params_path") == DEFAULT)
    if split is not None:
        check_plain_name("--split", split)
        if data_root is None and params is None:
            raise CitypipeError(f"--split {split}: give --data-root (no {params_path} to read data.root from)")
        image = (data_root or Path(params.data.root)) / "leftImg8bit" / split
        if not image.is_dir():
            raise CitypipeError(f"--split {split}: no folder {image}")
    from functools import partial

    from citypipe.corruptions.corrupt import parse_corruption
    from citypipe.infer import InferOptions, checkpoint_model, infer_images, onnx_model

    corruption = parse_corruption(corrupt_spec) if corrupt_spec is not None else None
    options = InferOptions(mode, size, crop_size, stride, flip, scales, mask, alpha, corruption, corrupt_seed)
    if onnx_path is not None:
        model = partial(onnx_model, onnx_path, params.device.num_threads if params is not None else 0)
    else:
        model = partial(checkpoint_model, checkpoint, params.device, amp)
    count = infer_images(image, output, model, options)
    click.echo(f"infer: {count} image(s) -> {output}")


@main.command(short_help="Compare experiments: params that differ, metrics, paired intervals.")
@click.option("--baseline", default=None, help="The row the changes are from (default: HEAD's commit).")
@click.option("--md", "markdown", is_flag=True, help="Markdown tables (for a pull request).")
@click.option("--top-classes", type=click.IntRange(min=0), default=5, show_default=True,
              help="Show the N classes whose IoU moved most.")
@click.option("--all-branches", "-A", is_flag=True, help="Also the experiments of every branch.")
@click.option("--repo", type=click.Path(file_okay=False, path_type=Path), default=Path("."), help="The DVC project.")
@click.option("--metrics", "eval_file", default="metrics/eval.json", show_default=True,
              help="The evaluate stage's metrics file (DVC's headline numbers).")
@click.option("--class-metrics", "classes_file", default="metrics/eval_classes.json", show_default=True,
              help="evaluate's per-class tables, read at each experiment's revision.")
@click.option("--per-image-counts", "counts_file", default="plots/eval/per_image_counts.npy", show_default=True,
              help="evaluate's per-image counts, read at each experiment's revision for the paired bootstrap.")
@click.option("--resamples", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Paired bootstrap resamples of the frames.")
@click.option("--seed", type=click.IntRange(0, SEED_MAX), default=0, show_default=True,
              help="Seed of the paired bootstrap's draws.")
@reports_errors
def compare(baseline: str | None, markdown: bool, top_classes: int, all_branches: bool, repo: Path,
            eval_file: str, classes_file: str, counts_file: str, resamples: int, seed: int) -> None:
    """Compare the workspace, the baseline commit and its `dvc exp` experiments: params that differ,
    mIoU / pixel accuracy / iIoU / boundary mIoU with the change from the baseline, the classes that moved
    most, each experiment's paired bootstrap change on the same frames (per-class with --md), and the
    spread of experiments that differ only in train.seed."""
    from citypipe.compare import (
        check_project_path,
        collect_experiments,
        read_class_metrics,
        read_per_image_counts,
        report,
    )

    source = click.get_current_context().get_parameter_source
    given = {name: option if source(name) != DEFAULT else None
             for name, option in (("classes_file", "--class-metrics"), ("counts_file", "--per-image-counts"))}
    check_project_path("--class-metrics", classes_file)
    check_project_path("--per-image-counts", counts_file)
    experiments, head, revs = collect_experiments(repo, all_branches, eval_file)
    if not experiments:
        raise CitypipeError(f"{repo}: no experiments with metrics (run `dvc exp run` first)")
    for name, tables in read_class_metrics(repo, revs, classes_file, given["classes_file"]).items():
        experiments[name][1].update({key: value for key, value in tables.items() if key not in experiments[name][1]})
    counts = read_per_image_counts(repo, revs, counts_file, given["counts_file"])
    try:
        text = report(experiments, baseline or head, top_classes, markdown, counts, resamples, seed)
    except MemoryError:  # the paired bootstrap draws (resamples x frames) at once: not a matter of image sizes
        raise CitypipeError(f"--resamples {resamples}: out of memory drawing the paired bootstrap's resamples; "
                            "use fewer") from None
    click.echo(text, nl=False)


def profile_path(params_file: Path, name: str) -> Path:
    """profiles/NAME.yaml of the project: the package's repository root first, then the params file's folder."""
    import citypipe
    from citypipe.profiles import check_profile_name

    check_profile_name(name)
    folders = [Path(citypipe.__file__).resolve().parents[1] / "profiles", params_file.resolve().parent / "profiles"]
    for folder in folders:
        if (folder / f"{name}.yaml").is_file():
            return folder / f"{name}.yaml"
    known = sorted({p.stem for folder in folders for p in folder.glob("*.yaml") if p.is_file()})
    raise CitypipeError(f"{name}: no such profile (known: {', '.join(known) or 'none'}) "
                        f"in {' or '.join(str(f) for f in dict.fromkeys(folders))}")


@main.command(short_help="Apply a params profile (cityscapes, demo) to params.yaml.")
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


if __name__ == "__main__":  # python -m citypipe.cli, as the console script
    main()
