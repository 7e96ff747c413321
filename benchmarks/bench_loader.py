"""Data loading at the real recipe: samples/s per DataLoader worker count, ours vs torchvision v2.

Training: a 1024x2048 source frame, random scale 0.5-2.0, 512x1024 crop padded with 255, flip,
photometric distortion, as uint8 tensors (ours also retries crops dominated by one class, the
recipe's cat_max_ratio 0.75). The reference is what torchvision's references/segmentation does
with transforms v2: resize the whole frame, then crop. Evaluation: full 1024x2048 frames with their
trainIds and instanceIds. Each figure is the median of --repeats passes of --samples samples,
timed from the first batch (worker start-up excluded).

    cd benchmarks && python bench_loader.py [--frames 8] [--samples 32] [--repeats 3] [--workers 0 1 2]
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import full_resolution_citysynth, machine, table
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from citypipe.data import layout
from citypipe.data.dataset import EvalFrames, TrainCrops
from citypipe.data.layout import cache_path
from citypipe.data.transforms import TrainTransform

RECIPE = TrainTransform(base_size=(1024, 2048), scale_range=(0.5, 2.0), crop_size=(512, 1024), flip_prob=0.5,
                        photometric="mmseg", cat_max_ratio=0.75, resize="bilinear")  # profiles/cityscapes.yaml


class TorchvisionReference(Dataset):
    """torchvision references/segmentation, transforms v2: the whole frame resized, then cropped."""

    def __init__(self, samples: list[layout.Sample], cache: Path) -> None:
        self.samples, self.cache = samples, cache
        self.transform = v2.Compose([
            v2.RandomResize(512, 2048),  # shorter side 512..2048 = scale 0.5..2.0 of 1024x2048
            v2.RandomCrop((512, 1024), pad_if_needed=True, fill={tv_tensors.Mask: 255, "others": 0}),
            v2.RandomHorizontalFlip(0.5),
            v2.ColorJitter(brightness=0.125, contrast=0.5, saturation=0.5),
            v2.PILToTensor(),
        ])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, tv_tensors.Mask]:
        sample = self.samples[key[0]]
        image = Image.open(sample.image).convert("RGB")
        label = tv_tensors.Mask(torch.from_numpy(np.array(Image.open(cache_path(self.cache, sample.split, sample.frame_id)))))
        return self.transform(image, label)


def samples_per_second(dataset: Dataset, keys: list, workers: int, samples: int, batch_size: int, repeats: int) -> float:
    """`keys`: what the sampler yields, at least samples + batch_size of them."""
    rates = []
    for _ in range(repeats):
        loader = DataLoader(dataset, batch_size=batch_size, sampler=keys, num_workers=workers,
                            **({"prefetch_factor": 4} if workers else {}))
        batches = iter(loader)
        next(batches)  # worker start-up and the first batch are not counted
        start = time.perf_counter()
        for _ in batches:
            pass
        rates.append(samples / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)  # as in a DataLoader worker; the main process stays out of the way
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root, cache, _ = full_resolution_citysynth(Path(tmp), args.frames)
        samples = layout.find_samples(root, "train")
        train_keys = [(i % len(samples), i) for i in range(args.samples + 8)]  # (sample index, augmentation seed)
        eval_keys = [i % len(samples) for i in range(args.samples // 2 + 1)]
        for workers in args.workers:
            train_ours = samples_per_second(TrainCrops(samples, cache, RECIPE), train_keys, workers, args.samples, 8,
                                            args.repeats)
            train_ref = samples_per_second(TorchvisionReference(samples, cache), train_keys, workers, args.samples, 8,
                                           args.repeats)
            eval_ours = samples_per_second(EvalFrames(samples, cache), eval_keys, workers, args.samples // 2, 1,
                                           args.repeats)
            rows.append((workers, f"{train_ours:.1f}", f"{train_ref:.1f}", f"{train_ours / train_ref:.1f}x", f"{eval_ours:.1f}"))
    print(f"Data loading from 1024x2048 CitySynth PNGs; {machine()}")
    print(table(rows, ("workers", "train samples/s (ours)", "train samples/s (torchvision v2)", "ratio",
                       "eval frames/s (ours)")))


if __name__ == "__main__":
    main()
