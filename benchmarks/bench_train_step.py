"""The train step (forward + loss + backward + SGD step), images/s: ours vs segmentation_models_pytorch.

Same backbone (torchvision ResNet, dilated to the same output stride), same ASPP rates, random
weights, cross-entropy with ignore 255, SGD with momentum. FLOPs per forward pass are counted with
torch.utils.flop_counter, so equal-FLOP pairs are visible: smp's DeepLabV3 has our V3 head's
layers exactly; smp's DeepLabV3Plus uses depthwise-separable convolutions where ours (and the
paper's Cityscapes models) use full 3x3 convolutions, so it does less work per image.

"plain loop" is the six-line loop anyone would write; "citypipe loop" is our train_one_epoch
(uint8 input normalised on the device, the progress bar, the non-finite check, the scheduler),
over the same in-memory batches: its gap to the plain loop is our overhead.

    pip install -r benchmarks/requirements.txt
    cd benchmarks && python bench_train_step.py [--size 256 512] [--batch 4] [--steps 5] [--backbone resnet18]
    # on a GPU: --device cuda --size 512 1024 --batch 8 [--amp bf16] [--channels-last]
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from common import add_model_options, gflops, print_device_report, smp_model, to_runtime

from citypipe.data.dataset import normalize
from citypipe.distributed import DistInfo
from citypipe.models.deeplab import ModelConfig, build_model
from citypipe.runtime import make_runtime
from citypipe.training.loop import (
    LoopConfig,
    TrainingSetup,
    TrainState,
    train_one_epoch,
)
from citypipe.training.losses import SegmentationLoss


def plain_loop(model, batches, runtime) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    start = time.perf_counter()
    for images, labels in batches:
        x = normalize(images.to(runtime.device, non_blocking=True))
        if runtime.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with runtime.autocast():
            logits = model(x)["out"]
        loss = F.cross_entropy(logits.float(), labels.to(runtime.device).long(), ignore_index=255)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    float(loss.detach())  # wait for the device
    return time.perf_counter() - start


def citypipe_loop(model, batches, runtime) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1.0)
    criterion = SegmentationLoss(None, False, 0.7, 100_000, 0.0).to(runtime.device)
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=False)
    setup = TrainingSetup(model, model, batches, None, optimizer, scheduler, criterion, scaler, runtime,
                          DistInfo(0, 1, 0), LoopConfig(1, 0, 1, 1))
    start = time.perf_counter()
    train_one_epoch(setup, 0, TrainState())
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, nargs=2, default=[256, 512])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    add_model_options(parser)
    args = parser.parse_args()
    runtime = make_runtime(args.device, args.amp, args.channels_last, True, 0)
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, 256, (args.batch, 3, *args.size), dtype=torch.uint8, generator=generator),
                torch.randint(0, 19, (args.batch, *args.size), dtype=torch.uint8, generator=generator))
               for _ in range(args.steps)]
    probe = normalize(batches[0][0].to(runtime.device))
    rows = []
    for arch in ("deeplabv3", "deeplabv3plus"):
        candidates = {
            "smp, plain loop": (smp_model(arch, args.backbone, args.output_stride), plain_loop),
            "citypipe, plain loop": (build_model(ModelConfig(arch, args.backbone, args.output_stride, False)), plain_loop),
            "citypipe, citypipe loop": (build_model(ModelConfig(arch, args.backbone, args.output_stride, False)), citypipe_loop),
        }
        results = {}
        for name, (model, loop) in candidates.items():
            model = to_runtime(model, runtime)
            flops = gflops(model, probe)
            loop(model, batches[:2], runtime)  # warm-up (cudnn autotuning, allocator)
            seconds = statistics.median(loop(model, batches, runtime) for _ in range(args.repeats))
            results[name] = args.batch * args.steps / seconds
            rows.append((arch, name, f"{flops:.1f}", f"{results[name]:.2f}",
                         f"{results[name] / results['smp, plain loop']:.2f}x"))
    print_device_report(f"Train step at {args.size[0]}x{args.size[1]}, batch {args.batch}, {args.backbone} "
                        f"OS{args.output_stride}", runtime, args, rows,
                        ("model", "model code, loop", "GFLOPs/img (fwd)", "img/s", "vs smp"))


if __name__ == "__main__":
    main()
