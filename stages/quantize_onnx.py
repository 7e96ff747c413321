"""DVC stage `quantize-onnx`: static int8 quantization of the exported ONNX model, calibrated on training frames.

Reads the fp32 graph (--model) and deploy.calibration_frames train frames; writes the int8 graph (--out)
with onnxruntime's quantization tools.
"""
from pathlib import Path

import click

from citypipe.command_line import data_root_option, params_option, reports_errors, stage_outputs


@click.command(help=__doc__)
@params_option
@data_root_option
@click.option("--model", "model_path", required=True, type=click.Path(dir_okay=False), help="The fp32 ONNX model (read).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="The int8 model (written).")
@reports_errors
def main(params_path: str, data_root: str, model_path: str, out_path: str) -> None:
    from citypipe.deploy.quantize import QuantizePaths, quantize_model
    from citypipe.params import load_params

    p = load_params(params_path, {"data.root": data_root})
    with stage_outputs(out_path, inputs=(params_path, data_root, model_path)):
        count = quantize_model(p.data, p.deploy, QuantizePaths(Path(model_path), Path(out_path)))
    click.echo(f"quantize-onnx: {out_path}, int8, calibrated on {count} training frames")


if __name__ == "__main__":
    main()
