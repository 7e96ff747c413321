"""Full-resolution inference, images/s at 1024x2048: ours vs a plain smp forward + argmax.

Whole-image inference, no flip, one scale: our `predict` (uint8 in, normalised on the device,
logits upsampled to the label size, argmax to uint8) vs smp's model of the same architecture,
backbone and output stride called the plain way. FLOPs per image are printed: the DeepLabV3 pair
does the same work; smp's DeepLabV3Plus decoder uses depthwise-separable convolutions (less work)
where ours uses full ones.

    pip install -r benchmarks/requirements.txt
    cd benchmarks && python bench_inference.py [--images 3] [--batch 1] [--backbone resnet18]
    # on a GPU: --device cuda --images 50 --batch 4 --amp bf16 --channels-last
"""
import argparse
import statistics
import time

import torch
from common import add_model_options, gflops, print_device_report, smp_model, to_runtime

from citypipe.data.dataset import normalize
from citypipe.models.deeplab import ModelConfig, build_model
from citypipe.prediction.inference import InferenceConfig, predict
from citypipe.runtime import make_runtime

SIZE = (1024, 2048)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1)
    add_model_options(parser)
    args = parser.parse_args()
    runtime = make_runtime(args.device, args.amp, args.channels_last, True, 0)
    images = torch.randint(0, 256, (args.batch, 3, *SIZE), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0)).to(runtime.device)
    batches = -(-args.images // args.batch)
    config = InferenceConfig("whole", SIZE, SIZE, SIZE, False, (1.0,))

    def ours(model):
        for _ in range(batches):
            prediction = predict(model, images, config, 19, runtime.autocast())
        return prediction.cpu()

    @torch.no_grad()
    def plain(model):
        for _ in range(batches):
            x = normalize(images)
            if runtime.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with runtime.autocast():
                prediction = model(x)["out"].argmax(1).to(torch.uint8)
        return prediction.cpu()

    rows = []
    for arch in ("deeplabv3", "deeplabv3plus"):
        rates = {}
        for name, model, run in (
                ("smp, plain forward + argmax", smp_model(arch, args.backbone, args.output_stride), plain),
                ("citypipe predict", build_model(ModelConfig(arch, args.backbone, args.output_stride, False)), ours)):
            model = to_runtime(model, runtime)
            flops = gflops(model, normalize(images))
            model.eval()
            run(model)  # warm-up
            seconds = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                run(model)
                seconds.append(time.perf_counter() - start)
            rates[name] = batches * args.batch / statistics.median(seconds)
            rows.append((arch, name, f"{flops:.0f}", f"{rates[name]:.2f}",
                         f"{rates[name] / rates['smp, plain forward + argmax']:.2f}x"))
    print_device_report(f"Inference at {SIZE[0]}x{SIZE[1]}, {args.backbone} OS{args.output_stride}, batch {args.batch}",
                        runtime, args, rows, ("model", "method", "GFLOPs/img", "img/s", "vs smp"))


if __name__ == "__main__":
    main()
