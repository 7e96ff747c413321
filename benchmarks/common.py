"""What the benchmarks share: timing (median after warm-up), tables, test data, and the model rows' helpers
(smp models for comparison, FLOP counts, device placement)."""
from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from citypipe.models.deeplab import aspp_rates


def median_seconds(fn: Callable[[], object], repeats: int = 7, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def table(rows: list[tuple], header: tuple) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def full_resolution_citysynth(folder: Path, train_frames: int, val_frames: int = 1,
                              image_cache: bool = False) -> tuple[Path, Path, dict]:
    """CitySynth at Cityscapes' 1024x2048 in `folder`, with its trainId cache (and decoded train frames
    with `image_cache`): (data root, cache, prepare_labels' {split: (frame ids, per-image class counts)})."""
    from citypipe.prepare.label_cache import prepare_labels
    from citypipe.synth.writer import synthesize

    root, cache = folder / "data", folder / "trainids"
    synthesize(root, 0, 1024, 2048, {"train": train_frames, "val": val_frames, "test": 1},
               {"train": ("aachen",), "val": ("lindau",), "test": ("bonn",)}, 2)
    return root, cache, prepare_labels(root, cache, (), 2, image_cache=image_cache)


def add_model_options(parser) -> None:
    """What the model benchmarks share: repeats, backbone, output stride, and --device/--amp/
    --channels-last as params.yaml's device section names them."""
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--output-stride", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    parser.add_argument("--channels-last", action="store_true")


def print_device_report(title: str, runtime, args, rows: list[tuple], header: tuple) -> None:
    """The table under a title that names the device settings; peak memory on a GPU."""
    print(f"{title}, device {runtime.device}, amp {args.amp}, channels_last {args.channels_last}; {machine()}")
    print(table(rows, header))
    if runtime.device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


class OutDict(torch.nn.Module):
    """smp returns a tensor; the citypipe loop expects {"out": logits}."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.model(x)}


def smp_model(arch: str, backbone: str, output_stride: int) -> torch.nn.Module:
    import segmentation_models_pytorch as smp  # benchmarks/requirements.txt; only the model rows need it

    cls = {"deeplabv3": smp.DeepLabV3, "deeplabv3plus": smp.DeepLabV3Plus}[arch]
    return OutDict(cls(encoder_name=backbone, encoder_weights=None, encoder_output_stride=output_stride,
                       decoder_atrous_rates=aspp_rates(output_stride), classes=19))


def to_runtime(model: torch.nn.Module, runtime) -> torch.nn.Module:
    """The model on the benchmark's device, in channels_last where asked (as citypipe's load_model does)."""
    model = model.to(runtime.device)
    return model.to(memory_format=torch.channels_last) if runtime.channels_last else model


def gflops(model: torch.nn.Module, x: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x[:1])
    model.train()
    return counter.get_total_flops() / 1e9
