"""DVC stage `evaluate`: official Cityscapes scores of a checkpoint on the val split, at full resolution."""
from pathlib import Path

import click

from citypipe.evaluation.stage import run_evaluate
from citypipe.params import load_params
from citypipe.stage import cache_option, checkpoint_option, params_option, reports_errors
from citypipe.training.device import runtime_for
from citypipe.training.run import inference_config, model_config


@click.command()
@params_option
@checkpoint_option
@cache_option
@click.option("--metrics", default="metrics/eval.json", show_default=True)
@click.option("--plots", default="plots/eval", show_default=True)
@reports_errors
def main(params_path: str, checkpoint: str, cache: str, metrics: str, plots: str) -> None:
    p = load_params(params_path)
    runtime = runtime_for(p.device)
    scores = run_evaluate(p.data.root, p.data.cities, p.evaluate.split, Path(cache), Path(checkpoint),
                          model_config(p.model), inference_config(p.evaluate), runtime, p.evaluate.batch_size,
                          p.evaluate.workers, Path(metrics), Path(plots))
    click.echo(f"evaluate: mIoU {scores['miou']:.4f}  pixel acc {scores['pixel_acc']:.4f}  iIoU {scores['iiou']:.4f}")


if __name__ == "__main__":
    main()
