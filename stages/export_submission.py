"""DVC stage `export-submission`: official labelIds PNGs for the Cityscapes test server, and a zip."""
from pathlib import Path

import click

from citypipe.export import run_export
from citypipe.params import load_params
from citypipe.stage import checkpoint_option, params_option, reports_errors
from citypipe.training.device import runtime_for
from citypipe.training.run import inference_config, model_config


@click.command()
@params_option
@checkpoint_option
@click.option("--out", "out_dir", default="submission/labelIds", show_default=True)
@click.option("--zip", "zip_path", default="submission/submission.zip", show_default=True)
@reports_errors
def main(params_path: str, checkpoint: str, out_dir: str, zip_path: str) -> None:
    p = load_params(params_path)
    runtime = runtime_for(p.device)
    count = run_export(p.data.root, p.data.cities, p.export.split, Path(checkpoint), model_config(p.model),
                       inference_config(p.evaluate), runtime, p.export.batch_size, p.evaluate.workers,
                       Path(out_dir), Path(zip_path))
    click.echo(f"export-submission: {count} labelIds PNGs in {out_dir}, validated; zip: {zip_path}")


if __name__ == "__main__":
    main()
