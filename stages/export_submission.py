"""DVC stage `export-submission`: official labelIds PNGs of a split for the Cityscapes test server, and a zip.

Reads the checkpoint (inference.checkpoint: best or last) and the frames of export.split; writes one
labelIds PNG per frame (--out, validated against the official naming) and the zip to upload (--zip).
"""
from pathlib import Path

import click

from citypipe.command_line import (
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
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="labelIds PNGs (written).")
@click.option("--zip", "zip_path", required=True, type=click.Path(dir_okay=False), help="The zip to upload (written).")
@reports_errors
def main(params_path: str, data_root: str, checkpoints: str, out_dir: str, zip_path: str) -> None:
    from citypipe.params import load_params
    from citypipe.runtime import pin_cpu_numerics
    from citypipe.submission.export import ExportPaths, export_submission

    p = load_params(params_path, {"data.root": data_root})
    pin_cpu_numerics(p.device)  # before any torch op: some settings are read once per process
    with stage_outputs(out_dir, zip_path, memory={"": "inference.size or inference.batch_size"},
                       inputs=(params_path, data_root, checkpoints)):
        count = export_submission(p.data, p.inference, p.export, p.device,
                                  ExportPaths(Path(checkpoints), Path(out_dir), Path(zip_path)))
    click.echo(f"export-submission: {count} labelIds PNGs in {out_dir}, validated; zip: {zip_path}")


if __name__ == "__main__":
    main()
