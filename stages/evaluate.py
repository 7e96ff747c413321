"""DVC stage `evaluate`: official Cityscapes scores of a checkpoint on the val split, at full resolution."""
from pathlib import Path

import click

from citypipe.command_line import (
    cache_option,
    checkpoint_option,
    params_option,
    reports_errors,
    stage_outputs,
)
from citypipe.evaluation.evaluate import EvaluatePaths, evaluate_checkpoint
from citypipe.params import load_params
from citypipe.runtime import pin_cpu_numerics


@click.command()
@params_option
@checkpoint_option
@cache_option
@click.option("--metrics", default="metrics/eval.json", show_default=True, help="Headline numbers and their intervals.")
@click.option("--class-metrics", default="metrics/eval_classes.json", show_default=True, help="Per-class and per-category scores.")
@click.option("--plots", default="plots/eval", show_default=True, help="Folder of class_iou.csv and confusion_matrix.csv.")
@reports_errors
def main(params_path: str, checkpoint: str, cache: str, metrics: str, class_metrics: str, plots: str) -> None:
    p = load_params(params_path)
    pin_cpu_numerics(p.device)  # before any torch op: some settings are read once per process
    paths = EvaluatePaths(Path(cache), Path(checkpoint), Path(metrics), Path(class_metrics), Path(plots))
    with stage_outputs(metrics, class_metrics, plots, memory={"": "evaluate.size or evaluate.batch_size"}):
        scores = evaluate_checkpoint(p.data, p.model, p.evaluate, p.device, paths)
    click.echo(f"evaluate: mIoU {scores['miou']:.4f} (95% CI {scores['miou_ci95_low']:.4f}-{scores['miou_ci95_high']:.4f})"
               f"  pixel acc {scores['pixel_acc']:.4f}  iIoU {scores['iiou']:.4f}")


if __name__ == "__main__":
    main()
