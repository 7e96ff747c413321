"""DVC stage `export-onnx`: the trained model as an ONNX graph (uint8 image -> logits), for deployment without PyTorch.

Reads the checkpoint (inference.checkpoint: best or last) and a few val frames; writes the graph
(--out), checked with onnx.checker and verified against PyTorch's logits on those frames (the stage
fails beyond deploy.logits_atol and keeps no model), and what a deployer needs beside it (--meta).
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
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="The ONNX model (written).")
@click.option("--meta", "meta_path", required=True, type=click.Path(dir_okay=False), help="Its metadata, JSON (written).")
@reports_errors
def main(params_path: str, data_root: str, checkpoints: str, out_path: str, meta_path: str) -> None:
    from citypipe.deploy.export import ExportOnnxPaths, export_checkpoint_onnx
    from citypipe.params import load_params
    from citypipe.prediction.predictor import checkpoint_file
    from citypipe.runtime import pin_cpu_numerics

    p = load_params(params_path, {"data.root": data_root})
    pin_cpu_numerics(p.device)  # before any torch op: some settings are read once per process
    checkpoint = checkpoint_file(Path(checkpoints), p.inference)
    with stage_outputs(out_path, meta_path, inputs=(params_path, data_root, checkpoints)):
        report = export_checkpoint_onnx(p.data, p.deploy, p.inference.size, p.device.num_threads,
                                        ExportOnnxPaths(checkpoint, Path(out_path), Path(meta_path)))
    click.echo(f"export-onnx: {out_path} checked; on {report['frames']} val frames onnxruntime's logits are within "
               f"{report['max_abs_logit_diff']:.2g} of PyTorch's, argmax agrees on {report['argmax_agreement']:.4%}")


if __name__ == "__main__":
    main()
