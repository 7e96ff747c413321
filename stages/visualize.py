"""DVC stage `visualize`: panels and overlays for val samples, training curves, per-class IoU."""
from pathlib import Path

import click

from citypipe.params import load_params
from citypipe.stage import cache_option, checkpoint_option, params_option, reports_errors
from citypipe.training.device import runtime_for
from citypipe.training.run import inference_config, model_config
from citypipe.visualization.stage import run_visualize


@click.command()
@params_option
@checkpoint_option
@cache_option
@click.option("--train-plots", default="plots/train", show_default=True)
@click.option("--eval-metrics", default="metrics/eval.json", show_default=True)
@click.option("--out", "out_dir", default="plots/samples", show_default=True)
@click.option("--figures", default="plots/figures", show_default=True)
@reports_errors
def main(params_path, checkpoint, cache, train_plots, eval_metrics, out_dir, figures) -> None:
    p = load_params(params_path)
    v = p.visualize
    runtime = runtime_for(p.device)
    count = run_visualize(p.data.root, p.data.cities, p.evaluate.split, Path(cache), Path(checkpoint), model_config(p.model),
                          inference_config(p.evaluate), runtime, v.num_samples, v.seed, v.ids, v.alpha,
                          Path(train_plots), Path(eval_metrics), Path(out_dir), Path(figures))
    click.echo(f"visualize: {count} panels in {out_dir}, figures in {figures}")


if __name__ == "__main__":
    main()
