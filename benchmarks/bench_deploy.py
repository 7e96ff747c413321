"""CPU latency of the deployed model: PyTorch eager vs onnxruntime fp32 vs onnxruntime int8, side by side.

Batch 1, the graph's whole computation (uint8 image -> normalise -> DeepLabV3+ -> logits at the
input size), same thread count for both engines. Each row runs in its own process, so "peak RSS" is
that engine's whole process (interpreter, libraries, weights, activations): the onnxruntime rows
import no torch (citypipe.deploy.runtime). Models are random-initialised (speed does not depend on
the weights); the int8 model is calibrated on two random frames (its ranges do not change its speed
either; the mIoU int8 costs is measured on the demo, README "Deploy").

    cd benchmarks && python bench_deploy.py [--threads 2] [--repeats 5]   # 512x1024 and 1024x2048
    cd benchmarks && python bench_deploy.py --quick                        # 128x256 and 256x512, to check it runs
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FULL_SIZES = [(512, 1024), (1024, 2048)]
QUICK_SIZES = [(128, 256), (256, 512)]
BACKBONES = ["resnet18", "resnet50"]
ENGINES = ["pytorch eager fp32", "onnxruntime fp32", "onnxruntime int8"]


def _timings(run, repeats: int) -> dict:
    run()  # warm-up: first-call allocations and kernel choices
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    ordered = sorted(seconds)
    return {"median_s": statistics.median(seconds), "p90_s": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
            "peak_rss_mib": _peak_rss_mib()}


def _peak_rss_mib() -> float:
    """This process's peak resident memory. Not getrusage's ru_maxrss: Linux carries that over exec from
    the parent (the driver, with its exported models), whereas VmHWM starts afresh with the new program."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(engine: str, source: str, size: tuple[int, int], threads: int, repeats: int) -> dict:
    """One row in this process: `source` is a backbone name (pytorch) or an ONNX file."""
    image = np.random.default_rng(0).integers(0, 256, (1, 3, *size), dtype=np.uint8)
    if engine.startswith("pytorch"):
        import torch

        from citypipe.deploy.export import ExportGraph
        from citypipe.models.deeplab import ModelConfig, build_model

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        graph = ExportGraph(build_model(ModelConfig("deeplabv3plus", source, 16, False)).eval())
        x = torch.from_numpy(image)
        with torch.inference_mode():
            return _timings(lambda: graph(x), repeats)
    from citypipe.deploy.runtime import OnnxSegmenter

    segmenter = OnnxSegmenter(source, threads)
    return _timings(lambda: segmenter.logits(image), repeats)


def prepare_models(folder: Path, backbone: str) -> dict[str, Path]:
    """fp32 and int8 ONNX files of a random DeepLabV3+ on `backbone` (export and quantization untimed)."""
    import torch

    from citypipe.deploy.export import export_onnx
    from citypipe.deploy.quantize import quantize_int8
    from citypipe.models.deeplab import ModelConfig, build_model

    torch.manual_seed(0)
    config = ModelConfig("deeplabv3plus", backbone, 16, False)
    metadata = {"class_names": [str(i) for i in range(19)], "output": {"shape": ["N", 19, "H", "W"]},
                "checkpoint": {"sha256": "random weights"}, "input_size": [128, 256]}
    fp32, int8 = folder / f"{backbone}.onnx", folder / f"{backbone}_int8.onnx"
    fp32.write_bytes(export_onnx(build_model(config).eval(), metadata, 17, "torchscript"))
    frames = [np.random.default_rng(i).integers(0, 256, (1, 3, 128, 256), dtype=np.uint8) for i in range(2)]
    quantize_int8(fp32, int8, frames, "minmax", True)
    return {"pytorch eager fp32": backbone, "onnxruntime fp32": fp32, "onnxruntime int8": int8}


def run_row(engine: str, source, size, threads: int, repeats: int) -> dict:
    command = [sys.executable, __file__, "--child", engine, str(source), str(size[0]), str(size[1]),
               str(threads), str(repeats)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{engine} {source} {size}: {result.stderr.strip().splitlines()[-1]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        engine, source, height, width, threads, repeats = args.child
        print(json.dumps(child(engine, source, (int(height), int(width)), int(threads), int(repeats))))
        return
    from common import table

    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for backbone in BACKBONES:
            sources = prepare_models(Path(scratch), backbone)
            for size in sizes:
                eager = None
                for engine in ENGINES:
                    r = run_row(engine, sources[engine], size, args.threads, args.repeats)
                    eager = eager or r["median_s"]
                    rows.append((f"DeepLabV3+ {backbone}", f"{size[0]}x{size[1]}", engine, f"{r['median_s'] * 1000:.0f}",
                                 f"{r['p90_s'] * 1000:.0f}", f"{1 / r['median_s']:.2f}", f"{eager / r['median_s']:.2f}x",
                                 f"{r['peak_rss_mib']:.0f}"))
    print(f"CPU latency, batch 1, {args.threads} threads, {args.repeats} timed runs after 1 warm-up; "
          f"{platform.processor() or platform.machine()}")
    print(table(rows, ("model", "size", "engine", "median ms", "p90 ms", "img/s", "vs eager", "peak RSS MiB")))


if __name__ == "__main__":
    main()
