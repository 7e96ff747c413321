"""DVC stage `visualize`: panels and overlays of val frames, and the confusion-matrix figure."""
from pathlib import Path

import click

from citypipe.command_line import (
    cache_option,
    checkpoint_option,
    params_option,
    reports_errors,
    stage_outputs,
)
from citypipe.params import load_params
from citypipe.runtime import pin_cpu_numerics
from citypipe.visualization.visualize import VisualizePaths, visualize_checkpoint


@click.command()
@params_option
@checkpoint_option
@cache_option
@click.option("--confusion", default="plots/eval/confusion_matrix.csv", show_default=True, help="evaluate's confusion matrix.")
@click.option("--out", "out_dir", default="plots/samples", show_default=True)
@click.option("--figures", default="plots/figures", show_default=True)
@reports_errors
def main(params_path, checkpoint, cache, confusion, out_dir, figures) -> None:
    p = load_params(params_path)
    pin_cpu_numerics(p.device)  # before any torch op: some settings are read once per process
    paths = VisualizePaths(Path(cache), Path(checkpoint), Path(confusion), Path(out_dir), Path(figures))
    with stage_outputs(out_dir, figures, memory={"": "evaluate.size"}):
        count = visualize_checkpoint(p.data, p.model, p.evaluate, p.visualize, p.device, paths)
    click.echo(f"visualize: {count} panels in {out_dir}, figures in {figures}")


if __name__ == "__main__":
    main()
