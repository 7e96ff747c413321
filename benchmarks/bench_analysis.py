"""What the error analysis (issue 23) adds to evaluate, per frame: FrameAnalysis.update (Boundary IoU, six
trimap bands, per-image counts, instance recall) beside the confusion-matrix update evaluate already does
and beside inference of the demo model (DeepLabV3+ ResNet-18 OS16: normalise, forward, upsample, argmax).

The frame is a blocky ground truth with ignored regions and 40 instances, and a prediction that is right on
~70% of the pixels in blobs (so boundaries are everywhere, the costly case for the window extremes).

    cd benchmarks && python bench_analysis.py                      # the demo size and 1024x2048, on the CPU
    python bench_analysis.py --sizes 128x256 --repeats 3           # the demo size only
    python bench_analysis.py --device cuda --repeats 20            # on a GPU
"""
import argparse

import numpy as np
import torch
import torch.nn.functional as F
from common import machine, median_seconds, table

from citypipe.data.dataset import normalize
from citypipe.evaluation.analysis import FrameAnalysis
from citypipe.evaluation.confusion import ConfusionMatrix
from citypipe.models.deeplab import ModelConfig, build_model
from citypipe.runtime import resolve_device

WIDTHS = (1, 2, 4, 8, 16, 32)  # params.yaml's evaluate.trimap_widths
RATIO = 0.005  # evaluate.boundary_dilation_ratio


def frame(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(label, prediction, instances) at height x width."""
    rng = np.random.default_rng(seed)
    block = max(2, height // 32)
    coarse = rng.integers(0, 20, (-(-height // block), -(-width // block)))
    label = np.kron(coarse, np.ones((block, block), np.int64))[:height, :width].astype(np.uint8)
    label[label == 19] = 255
    shifted = np.roll(label, (block // 3, block // 2), (0, 1))
    blobs = np.kron(rng.random((height // block + 1, width // block + 1)) < 0.7, np.ones((block, block), bool))
    prediction = np.where(blobs[:height, :width], label, shifted)
    prediction[prediction == 255] = 0
    instances = np.full((height, width), 7, np.int32)
    for k in range(40):
        h, w = int(rng.integers(1, height // 4)), int(rng.integers(1, width // 8))
        y, x = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
        instances[y:y + h, x:x + w] = int(rng.choice([24, 25, 26, 27, 28, 31, 32, 33])) * 1000 + k
    return label, prediction.astype(np.uint8), instances


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", nargs="+", default=["128x256", "1024x2048"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on the CPU (the demo uses 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model = build_model(ModelConfig("deeplabv3plus", "resnet18", 16, False)).to(device).eval()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rows = []
    for size in args.sizes:
        height, width = (int(v) for v in size.split("x"))
        label, prediction, instances = (torch.from_numpy(a[None]).to(device) for a in frame(height, width))
        image = torch.randint(0, 256, (1, 3, height, width), dtype=torch.uint8, device=device)
        cm = ConfusionMatrix(device, keep_per_image=True)
        analysis = FrameAnalysis(device, RATIO, WIDTHS)

        def confusion():
            cm.update(label[0], prediction[0])
            cm.update_instances(instances[0], prediction[0])
            sync()

        def extra():
            analysis.update(prediction, label, instances, ["frame"])
            sync()

        @torch.no_grad()
        def infer():
            logits = model(normalize(image))["out"]
            F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False).argmax(1).to(torch.uint8)
            sync()

        times = {name: median_seconds(fn, args.repeats, 1) for name, fn in
                 (("confusion", confusion), ("analysis", extra), ("inference", infer))}
        rows.append((f"{height}x{width}", f"{times['inference'] * 1e3:.1f}", f"{times['confusion'] * 1e3:.1f}",
                     f"{times['analysis'] * 1e3:.1f}", f"{100 * times['analysis'] / times['inference']:.0f}%"))
    print(f"Evaluate's extra work per frame (ms, median of {args.repeats}), device {device}; {machine()}")
    print(table(rows, ("frame", "inference (DeepLabV3+ R18)", "confusion + iIoU (today)",
                       "analysis (issue 23)", "analysis / inference")))


if __name__ == "__main__":
    main()
