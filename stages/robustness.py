"""DVC stage `robustness`: Cityscapes-C, the checkpoint's mIoU on val frames under image corruptions."""
from pathlib import Path

import click

from citypipe.command_line import cache_option, checkpoint_option, params_option, reports_errors
from citypipe.params import load_params
from citypipe.robustness.evaluate import RobustnessPaths, robustness_checkpoint
from citypipe.runtime import pin_cpu_numerics


@click.command()
@params_option
@checkpoint_option
@cache_option
@click.option("--metrics", default="metrics/robustness.json", show_default=True, help="mIoU per corruption and severity.")
@click.option("--curves", default="plots/robustness/miou_by_severity.csv", show_default=True,
              help="The plot's table: mIoU against severity, a line per corruption.")
@reports_errors
def main(params_path: str, checkpoint: str, cache: str, metrics: str, curves: str) -> None:
    p = load_params(params_path)
    pin_cpu_numerics(p.device)  # before any torch op: some settings are read once per process
    paths = RobustnessPaths(Path(cache), Path(checkpoint), Path(metrics), Path(curves))
    scores = robustness_checkpoint(p.data, p.model, p.evaluate, p.robustness, p.device, paths)
    click.echo(f"robustness: clean mIoU {scores['miou_clean']:.4f}, corrupted {scores['miou_corrupted']:.4f} "
               f"(ratio {scores['ratio']:.3f}) over {scores['num_sets']} sets of {scores['num_frames']} frames")


if __name__ == "__main__":
    main()
