"""DVC stage `export-onnx`: the checkpoint as an ONNX graph (uint8 image -> logits), checked with
onnx.checker and verified against PyTorch on val frames; model.json beside it."""
from pathlib import Path

import click

from citypipe.command_line import checkpoint_option, params_option, reports_errors
from citypipe.deploy.export import ExportOnnxPaths, export_checkpoint_onnx
from citypipe.params import load_params
from citypipe.runtime import pin_cpu_numerics


@click.command()
@params_option
@checkpoint_option
@click.option("--out", "out_path", default="models/model.onnx", show_default=True, help="The ONNX model.")
@click.option("--meta", "meta_path", default="models/model.json", show_default=True, help="Its metadata.")
@reports_errors
def main(params_path: str, checkpoint: str, out_path: str, meta_path: str) -> None:
    p = load_params(params_path)
    pin_cpu_numerics(p.device)  # before any torch op: some settings are read once per process
    report = export_checkpoint_onnx(p.data, p.model, p.deploy, p.evaluate.size, p.device.num_threads,
                                    ExportOnnxPaths(Path(checkpoint), Path(out_path), Path(meta_path)))
    click.echo(f"export-onnx: {out_path} checked; on {report['frames']} val frames onnxruntime's logits are within "
               f"{report['max_abs_logit_diff']:.2g} of PyTorch's, argmax agrees on {report['argmax_agreement']:.4%}")


if __name__ == "__main__":
    main()
