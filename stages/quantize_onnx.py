"""DVC stage `quantize-onnx`: static int8 quantization of the exported model, calibrated on training frames."""
from pathlib import Path

import click

from citypipe.command_line import params_option, reports_errors
from citypipe.deploy.quantize import QuantizePaths, quantize_model
from citypipe.params import load_params


@click.command()
@params_option
@click.option("--model", "model_path", default="models/model.onnx", show_default=True, help="The fp32 ONNX model.")
@click.option("--out", "out_path", default="models/model_int8.onnx", show_default=True, help="The int8 model.")
@reports_errors
def main(params_path: str, model_path: str, out_path: str) -> None:
    p = load_params(params_path)
    count = quantize_model(p.data, p.deploy, QuantizePaths(Path(model_path), Path(out_path)))
    click.echo(f"quantize-onnx: {out_path}, int8, calibrated on {count} training frames")


if __name__ == "__main__":
    main()
