"""DVC stage `export-submission`: official labelIds PNGs for the Cityscapes test server, and a zip."""
from pathlib import Path

import click

from citypipe.command_line import checkpoint_option, params_option, reports_errors, stage_outputs
from citypipe.params import load_params
from citypipe.runtime import pin_cpu_numerics
from citypipe.submission.export import ExportPaths, export_submission


@click.command()
@params_option
@checkpoint_option
@click.option("--out", "out_dir", default="submission/labelIds", show_default=True)
@click.option("--zip", "zip_path", default="submission/submission.zip", show_default=True)
@reports_errors
def main(params_path: str, checkpoint: str, out_dir: str, zip_path: str) -> None:
    p = load_params(params_path)
    pin_cpu_numerics(p.device)  # before any torch op: some settings are read once per process
    with stage_outputs(out_dir, zip_path, memory={"": "evaluate.size or export.batch_size"}):
        count = export_submission(p.data, p.model, p.evaluate, p.export, p.device,
                                  ExportPaths(Path(checkpoint), Path(out_dir), Path(zip_path)))
    click.echo(f"export-submission: {count} labelIds PNGs in {out_dir}, validated; zip: {zip_path}")


if __name__ == "__main__":
    main()
