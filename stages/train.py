"""DVC stage `train`: DeepLabV3 / DeepLabV3+ on the trainId cache, validated on val every train.val_every epochs.

Reads the trainId cache and prepare-labels' class and sample weights; writes checkpoints/last.pt
(the training state, resumed after a kill) and best.pt (the best val mIoU), DVCLive's metrics and
per-epoch series (--live-dir) and a text log with timings (--log, not tracked by DVC).
The original train.py flags still work, as overrides of params.yaml (for runs outside DVC).
device.processes N > 1: N processes (one per GPU; CPU: gloo) under torch.distributed.run, started by
this command itself; rank 0 writes. Multi-node: torchrun --nnodes ... stages/train.py ... on each node.
"""
from pathlib import Path

import click

from citypipe.command_line import cache_option, is_main_process, params_option, reports_errors, stage_outputs


@click.command(help=__doc__)
@params_option
@cache_option
@click.option("--class-weights", required=True, type=click.Path(dir_okay=False), help="prepare-labels' class weights (read).")
@click.option("--sample-weights", required=True, type=click.Path(dir_okay=False), help="prepare-labels' sample weights (read).")
@click.option("--checkpoints", required=True, type=click.Path(file_okay=False), help="last.pt and best.pt (written).")
@click.option("--live-dir", required=True, type=click.Path(file_okay=False), help="DVCLive's folder: metrics.json and per-epoch plots (written).")
@click.option("--log", "log_path", required=True, type=click.Path(dir_okay=False), help="Text log with timings (written; not tracked by DVC).")
@click.option("--data-root", default=None, help="Override data.root.")
@click.option("--num-epochs", type=int, default=None, help="Override train.epochs.")
@click.option("--batch-size", type=int, default=None, help="Override train.batch_size.")
@click.option("--image-size", type=int, nargs=2, default=None, help="Override train.base_size, crop_size and val_size (H W).")
@click.option("--device", "device_type", default=None, help="Override device.type (auto, cpu, cuda, mps).")
@click.option("--grad-accum-steps", type=int, default=None, help="Override train.grad_accum_steps.")
@click.option("--filter-city", multiple=True, help="Override data.cities (repeatable).")
@click.option("--no-pretrained", is_flag=True, help="Set model.pretrained none and model.weights_file empty.")
@reports_errors
def main(params_path, cache, class_weights, sample_weights, checkpoints, live_dir, log_path, data_root, num_epochs,
         batch_size, image_size, device_type, grad_accum_steps, filter_city, no_pretrained) -> None:
    from citypipe.launch import run_under_torchrun
    from citypipe.params import load_params

    overrides = {"data.root": data_root, "train.epochs": num_epochs, "train.batch_size": batch_size,
                 "device.type": device_type, "train.grad_accum_steps": grad_accum_steps,
                 "data.cities": list(filter_city) if filter_city else None}
    if image_size:
        overrides.update({"train.base_size": list(image_size), "train.crop_size": list(image_size),
                          "train.val_size": list(image_size)})
    if no_pretrained:
        overrides.update({"model.pretrained": "none", "model.weights_file": ""})
    p = load_params(params_path, {k: v for k, v in overrides.items() if v is not None})
    run_under_torchrun(p.device.processes, p.device.num_threads)  # N > 1: this command in N workers, then exit
    from citypipe.runtime import pin_cpu_numerics
    from citypipe.training.trainer import TrainPaths, run_training

    pin_cpu_numerics(p.device)  # before any torch op: some settings are read once per process
    paths = TrainPaths(Path(cache), Path(class_weights), Path(sample_weights), Path(checkpoints), Path(live_dir), Path(log_path))
    memory = {"citypipe/prediction/": "train.val_size or train.val_batch_size (validation)",
              "": "train.crop_size or train.batch_size"}
    with stage_outputs(checkpoints, live_dir, log_path, memory=memory,  # under torchrun rank 0 alone claims them
                       inputs=(params_path, p.data.root, cache, class_weights, sample_weights,
                               *([p.model.weights_file] if p.model.weights_file else []))):
        state = run_training(p.data, p.model, p.train, p.device, paths)
    if is_main_process():
        click.echo(f"train: {state.epoch} epochs, best val mIoU {state.best_miou:.4f} (epoch {state.best_epoch})")


if __name__ == "__main__":
    main()
