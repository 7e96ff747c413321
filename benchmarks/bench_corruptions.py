"""Cityscapes-C: seconds to make one corrupted frame, per corruption, against seconds to predict one frame.

The robustness stage makes corrupted frames in the DataLoader's workers while the model predicts, so generation
is hidden when (generation time per frame / workers) <= inference time per frame. The last column says how
many workers each corruption needs to keep up with the inference row.

    cd benchmarks && python bench_corruptions.py                          # 1024x2048, every corruption, severity 5
    python bench_corruptions.py --size 128 256 --backbone resnet18 --output-stride 16   # the demo's frames
    # on a GPU machine: --device cuda --amp bf16 (inference row only; corruptions run on one CPU core each)
"""
import argparse
import statistics
import time

import numpy as np
import torch

from citypipe.models.deeplab import ModelConfig, build_model
from citypipe.prediction.inference import InferenceConfig, predict
from citypipe.corruptions.corrupt import CORRUPTIONS, corrupt
from citypipe.runtime import make_runtime


def street_like(height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8: smooth gradients, hard-edged blocks, fine noise (what blur, JPEG and spatter react to)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    img = np.stack([120 + 100 * np.sin(6 * x), 90 + 80 * y, 60 + 60 * np.cos(5 * x * y)], axis=-1)
    for _ in range(40):
        top, left = rng.integers(0, height - height // 8), rng.integers(0, width - width // 8)
        img[top:top + height // 8, left:left + width // 10] = rng.integers(0, 256, 3)
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def seconds(run, repeats: int, clock=time.process_time) -> float:
    """Median seconds of `run`. CPU work is timed by this process's CPU clock (one thread: the load of a shared
    machine does not inflate it); GPU work by the wall clock."""
    times = []
    for _ in range(repeats):
        start = clock()
        run()
        times.append(clock() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, nargs=2, default=[1024, 2048], metavar=("H", "W"))
    parser.add_argument("--severity", type=int, default=5, help="5 is the slowest for the blurs (noises: capped at 3)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--corruptions", nargs="*", default=list(CORRUPTIONS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", default="none")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--output-stride", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for the inference row")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    height, width = args.size
    image = street_like(height, width)
    runtime = make_runtime(args.device, args.amp, args.device == "cuda", True, args.threads)
    model = build_model(ModelConfig("deeplabv3plus", args.backbone, args.output_stride, False)).to(runtime.device).eval()
    frame = torch.from_numpy(image).permute(2, 0, 1)[None].to(runtime.device)
    config = InferenceConfig("whole", (height, width), (height, width), (height, width), False, (1.0,))

    def infer():
        predict(model, frame, config, 19, runtime.autocast() if args.amp != "none" else torch.autocast("cpu", enabled=False))
        if runtime.device.type == "cuda":
            torch.cuda.synchronize()

    infer()  # warm-up
    inference = seconds(infer, args.repeats, time.perf_counter if runtime.device.type == "cuda" else time.process_time)
    print(f"{height}x{width}, severity {args.severity} (noises {min(args.severity, 3)}), median of {args.repeats}, "
          "CPU seconds of one thread (GPU: wall seconds)")
    print(f"{'row':<18} {'family':<8} {'s/frame':>8} {'workers to keep up':>19}")
    print(f"{'inference':<18} {args.device:<8} {inference:8.3f} {'':>19}   (deeplabv3plus {args.backbone} OS{args.output_stride}, "
          f"{args.threads} thread(s), amp {args.amp})")
    for name in args.corruptions:
        family = CORRUPTIONS[name][0]
        severity = min(args.severity, 3) if family == "noise" else args.severity
        took = seconds(lambda: corrupt(image, name, severity, 0, "frankfurt_000000_000294"), args.repeats)
        print(f"{name:<18} {family:<8} {took:8.3f} {int(np.ceil(took / inference)):19d}")


if __name__ == "__main__":
    main()
