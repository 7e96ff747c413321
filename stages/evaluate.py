"""DVC stage `evaluate`: official Cityscapes scores of the trained model on the val split, at full resolution.

Reads the checkpoint (inference.checkpoint: best or last) and the trainId cache; writes the headline
numbers with 95% bootstrap intervals (--metrics), the per-class, per-category, boundary and
instance-size tables (--class-metrics), each frame's scores (--per-image) and the CSVs behind DVC's
plots with the per-image counts `citypipe compare` reads (--plots). Predicts as params.yaml's
`inference` says. device.processes N > 1: N processes under torch.distributed.run share the frames
(whole batches each); rank 0 writes the same bytes as one process would.
"""
from pathlib import Path

import click

from citypipe.command_line import (
    cache_option,
    checkpoints_option,
    data_root_option,
    is_main_process,
    params_option,
    reports_errors,
    stage_outputs,
)


@click.command(help=__doc__)
@params_option
@data_root_option
@checkpoints_option
@cache_option
@click.option("--metrics", required=True, type=click.Path(dir_okay=False), help="Headline numbers and their intervals (written).")
@click.option("--class-metrics", required=True, type=click.Path(dir_okay=False), help="Per-class and per-category scores (written).")
@click.option("--per-image", required=True, type=click.Path(dir_okay=False), help="Each frame's scores, CSV (written).")
@click.option("--plots", required=True, type=click.Path(file_okay=False),
              help="Folder of the plot CSVs and per_image_counts.npy (written).")
@reports_errors
def main(params_path: str, data_root: str, checkpoints: str, cache: str, metrics: str, class_metrics: str,
         per_image: str, plots: str) -> None:
    from citypipe.launch import run_under_torchrun
    from citypipe.params import load_params

    p = load_params(params_path, {"data.root": data_root})
    run_under_torchrun(p.device.processes, p.device.num_threads)  # N > 1: this command in N workers, then exit
    from citypipe.evaluation.evaluate import EvaluatePaths, evaluate_checkpoint
    from citypipe.runtime import pin_cpu_numerics

    pin_cpu_numerics(p.device)  # before any torch op: some settings are read once per process
    paths = EvaluatePaths(Path(cache), Path(checkpoints), Path(metrics), Path(class_metrics), Path(plots),
                          Path(per_image))
    memory = {"citypipe/evaluation/bootstrap.py": "evaluate.bootstrap_resamples",  # draws (resamples x frames) at once
              "": "inference.size or inference.batch_size"}
    with stage_outputs(metrics, class_metrics, per_image, plots, memory=memory,
                       inputs=(params_path, data_root, checkpoints, cache)):
        scores = evaluate_checkpoint(p.data, p.inference, p.evaluate, p.device, paths)
    if is_main_process():
        click.echo(f"evaluate: mIoU {scores['miou']:.4f} (95% CI {scores['miou_ci95_low']:.4f}-{scores['miou_ci95_high']:.4f})"
                   f"  pixel acc {scores['pixel_acc']:.4f}  iIoU {scores['iiou']:.4f}  boundary mIoU {scores['boundary_miou']:.4f}")


if __name__ == "__main__":
    main()
