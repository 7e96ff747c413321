"""DVC stage `visualize`: panels and overlays of frames of the evaluated split, the worst frames' panels, and the
confusion-matrix figure.

Reads the checkpoint (inference.checkpoint), the trainId cache, evaluate's confusion matrix and
per-image scores; writes a panel (image | ground truth | prediction | errors) and an overlay per chosen
frame and a panel per worst frame (--out), and the confusion-matrix figure (--figures). Predicts as
params.yaml's `inference` says.
"""
from pathlib import Path

import click

from citypipe.command_line import (
    cache_option,
    checkpoints_option,
    data_root_option,
    params_option,
    reports_errors,
    stage_outputs,
)


@click.command(help=__doc__)
@params_option
@data_root_option
@checkpoints_option
@cache_option
@click.option("--confusion", required=True, type=click.Path(dir_okay=False), help="evaluate's confusion matrix CSV (read).")
@click.option("--per-image", required=True, type=click.Path(dir_okay=False),
              help="evaluate's per-image scores, for the worst frames (read).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Panels and overlays (written).")
@click.option("--figures", required=True, type=click.Path(file_okay=False), help="Figures (written).")
@reports_errors
def main(params_path, data_root, checkpoints, cache, confusion, per_image, out_dir, figures) -> None:
    from citypipe.params import load_params
    from citypipe.runtime import pin_cpu_numerics
    from citypipe.visualization.visualize import VisualizePaths, visualize_checkpoint

    p = load_params(params_path, {"data.root": data_root})
    pin_cpu_numerics(p.device)  # before any torch op: some settings are read once per process
    paths = VisualizePaths(Path(cache), Path(checkpoints), Path(confusion), Path(per_image), Path(out_dir),
                           Path(figures))
    with stage_outputs(out_dir, figures, memory={"": "inference.size"},
                       inputs=(params_path, data_root, checkpoints, cache, confusion, per_image)):
        count = visualize_checkpoint(p.data, p.inference, p.evaluate.split, p.visualize, p.device, paths)
    click.echo(f"visualize: {count} frames drawn in {out_dir}, figures in {figures}")


if __name__ == "__main__":
    main()
