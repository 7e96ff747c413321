"""DVC stage `robustness`: Cityscapes-C, the trained model's mIoU on val frames under image corruptions.

Reads the checkpoint (inference.checkpoint: best or last) and the trainId cache; scores the frames clean and
under every (corruption, severity) of params.yaml's `robustness` section, made on the fly in the loader's
workers; writes the headline numbers (--metrics), the per-corruption table (--corruptions) and the table
behind the mIoU-against-severity plot (--curves).
Predicts as params.yaml's `inference` says. device.processes N > 1: N processes under torch.distributed.run
share the (frame, corruption) pairs; rank 0 writes the same bytes as one process would.
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
@click.option("--metrics", required=True, type=click.Path(dir_okay=False),
              help="Clean and mean corrupted mIoU and their ratio (written).")
@click.option("--corruptions", required=True, type=click.Path(dir_okay=False),
              help="The whole summary: also per corruption its mIoU per severity, mean and ratio to clean (written).")
@click.option("--curves", required=True, type=click.Path(dir_okay=False),
              help="The plot's table: mIoU against severity, a line per corruption (written).")
@reports_errors
def main(params_path: str, data_root: str, checkpoints: str, cache: str, metrics: str, corruptions: str,
         curves: str) -> None:
    from citypipe.launch import run_under_torchrun
    from citypipe.params import load_params

    p = load_params(params_path, {"data.root": data_root})
    run_under_torchrun(p.device.processes, p.device.num_threads)  # N > 1: this command in N workers, then exit
    from citypipe.robustness.evaluate import RobustnessPaths, robustness_checkpoint
    from citypipe.runtime import pin_cpu_numerics

    pin_cpu_numerics(p.device)  # before any torch op: some settings are read once per process
    paths = RobustnessPaths(Path(cache), Path(checkpoints), Path(metrics), Path(curves), Path(corruptions))
    with stage_outputs(metrics, corruptions, curves, memory={"": "inference.size or inference.batch_size"},
                       inputs=(params_path, data_root, checkpoints, cache)):
        scores = robustness_checkpoint(p.data, p.inference, p.robustness, p.device, paths)
    if is_main_process():
        click.echo(f"robustness: clean mIoU {scores['miou_clean']:.4f}, corrupted {scores['miou_corrupted']:.4f} "
                   f"(ratio {scores['ratio']:.3f}) over {scores['num_sets']} sets of {scores['num_frames']} frames")


if __name__ == "__main__":
    main()
