"""DVC stage `evaluate-onnx`: evaluate's official scores of the exported ONNX models, fp32 and int8, run by the
torch-free deployment runtime as `inference` says, beside the checkpoint's.

Reads the ONNX models (each must be the export of the checkpoint inference.checkpoint names), the
trainId cache and evaluate's metrics; writes mIoU and pixel accuracy per model and their change from
PyTorch's (--metrics).
"""
from pathlib import Path

import click

from citypipe.command_line import (
    cache_option,
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
@cache_option
@click.option("--fp32", "fp32_model", required=True, type=click.Path(dir_okay=False), help="The fp32 ONNX model (read).")
@click.option("--int8", "int8_model", required=True, type=click.Path(dir_okay=False), help="The int8 ONNX model (read).")
@click.option("--pytorch-metrics", required=True, type=click.Path(dir_okay=False), help="evaluate's eval.json (read).")
@click.option("--metrics", required=True, type=click.Path(dir_okay=False), help="The deployed models' scores (written).")
@reports_errors
def main(params_path, data_root, checkpoints, cache, fp32_model, int8_model, pytorch_metrics, metrics) -> None:
    from citypipe.evaluation.deployed import DeployedPaths, evaluate_deployed
    from citypipe.params import load_params

    p = load_params(params_path, {"data.root": data_root})
    paths = DeployedPaths(Path(cache), Path(checkpoints), {"fp32": Path(fp32_model), "int8": Path(int8_model)},
                          Path(pytorch_metrics), Path(metrics))
    with stage_outputs(metrics, memory={"": "inference.size or inference.batch_size"},
                       inputs=(params_path, data_root, checkpoints, cache, fp32_model, int8_model, pytorch_metrics)):
        scores = evaluate_deployed(p.data, p.inference, p.evaluate, p.device, paths)
    click.echo(f"evaluate-onnx: mIoU fp32 {scores['onnx_fp32_miou']:.4f}, int8 {scores['onnx_int8_miou']:.4f} "
               f"(PyTorch {scores['pytorch_miou']:.4f})")


if __name__ == "__main__":
    main()
