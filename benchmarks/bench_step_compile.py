"""The model-alone train step through citypipe's own loop (train_one_epoch), eager and torch.compile'd:
img/s after warm-up, and the seconds the compiled model's first steps took (compiling included).

    cd benchmarks && python bench_step_compile.py --device cuda --size 512 1024 --batch 8 --amp bf16 \
        --channels-last --backbone resnet50 --output-stride 8 [--steps 20] [--no-compile]
"""
import argparse
import time

import torch
from bench_train_step import citypipe_loop
from common import add_model_options, print_device_report, to_runtime

from citypipe.models.deeplab import ModelConfig, build_model
from citypipe.runtime import make_runtime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, nargs=2, default=[256, 512])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--no-compile", action="store_true")
    add_model_options(parser)
    args = parser.parse_args()
    runtime = make_runtime(args.device, args.amp, args.channels_last, True, 0)
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, 256, (args.batch, 3, *args.size), dtype=torch.uint8, generator=generator),
                torch.randint(0, 19, (args.batch, *args.size), dtype=torch.uint8, generator=generator))
               for _ in range(args.steps)]
    rows = []
    for compiled in (False,) if args.no_compile else (False, True):
        torch.manual_seed(0)
        model = to_runtime(build_model(ModelConfig("deeplabv3plus", args.backbone, args.output_stride, False)), runtime)
        step_model = torch.compile(model) if compiled else model
        start = time.perf_counter()
        citypipe_loop(step_model, batches[:2], runtime)  # warm-up: compiling, cudnn autotuning, allocator
        warmup = time.perf_counter() - start
        seconds = min(citypipe_loop(step_model, batches, runtime) for _ in range(args.repeats))
        rows.append(("compiled" if compiled else "eager", f"{warmup:.1f}", f"{args.batch * args.steps / seconds:.2f}"))
        print(rows[-1], flush=True)
    print_device_report(f"DeepLabV3+ {args.backbone} OS{args.output_stride} train step (citypipe loop) at "
                        f"{args.size[0]}x{args.size[1]}, batch {args.batch}", runtime, args, rows,
                        ("model", "first 2 steps, s (compiling included)", "img/s"))


if __name__ == "__main__":
    main()
