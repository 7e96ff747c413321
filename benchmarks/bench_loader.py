"""Data loading at the real recipe: samples/s per DataLoader worker count, ours vs torchvision v2.

Training: a 1024x2048 source frame, random scale 0.5-2.0, 512x1024 crop padded with 255, flip,
photometric distortion, as uint8 tensors (ours also retries crops dominated by one class, the
recipe's cat_max_ratio 0.75). The reference is what torchvision's references/segmentation does
with transforms v2: resize the whole frame, then crop. Evaluation: full 1024x2048 frames with their
trainIds and instanceIds. Each figure is the median of --repeats passes of --samples samples,
timed from the first batch (worker start-up excluded).

    cd benchmarks && python bench_loader.py [--frames 8] [--samples 32] [--repeats 3] [--workers 0 1 2]
    cd benchmarks && python bench_loader.py --stages [--frames 4] [--samples 16] [--target 110]

`--stages`: what one training sample costs one core, stage by stage (CPU seconds of this process,
one thread, so other jobs on a shared machine barely move it): decoding the 1024x2048 image and its
trainId PNG, the fused random resize + crop (label tries included), flip, photometric distortion, and
the uint8 collate of a batch of 8; then the workers that `--target` img/s needs, and other ways to
read the same pixels (imagecodecs' libpng and libspng decoders, an uncompressed .npy read whole or
memory-mapped), each checked to give identical arrays.
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


def cpu_seconds(fn, repeats: int) -> float:
    """Median CPU seconds of fn() over `repeats` calls (process time: robust to a loaded machine)."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def stage_costs(frames: int, samples: int, target: float) -> None:
    """Per-sample CPU cost of each stage of TrainCrops at the recipe's sizes, and decoding alternatives."""
    import imagecodecs

    from citypipe.data.dataset import open_cached_label, open_image
    from citypipe.data.transforms import _crop_accepted, _crop_window, _resized_crop, photometric_distortion
    from citypipe.labels import IGNORE_INDEX

    with tempfile.TemporaryDirectory() as tmp:
        root, cache, _ = full_resolution_citysynth(Path(tmp), frames)
        found = layout.find_samples(root, "train")
        picks = [found[i % len(found)] for i in range(samples)]
        rng = np.random.default_rng(0)
        image, label = open_image(picks[0].image), open_cached_label(cache, picks[0])
        t = RECIPE
        per = {}
        per["decode image PNG (PIL)"] = cpu_seconds(lambda: [open_image(s.image) for s in picks], 1) / samples
        per["decode trainId PNG (PIL)"] = cpu_seconds(lambda: [open_cached_label(cache, s) for s in picks], 1) / samples

        def crops():
            scale = rng.uniform(*t.scale_range)
            scaled = (round(t.base_size[0] * scale), round(t.base_size[1] * scale))
            for _ in range(10):
                window = _crop_window(scaled, t.crop_size, rng)
                crop_label = _resized_crop(label, scaled, window, t.crop_size, Image.NEAREST, IGNORE_INDEX)
                if _crop_accepted(crop_label, t.cat_max_ratio):
                    break
            return _resized_crop(image, scaled, window, t.crop_size, Image.BILINEAR, 0), crop_label

        per["resize + crop (label tries, image)"] = cpu_seconds(lambda: [crops() for _ in range(samples)], 1) / samples
        crop_image, crop_label = crops()
        per["flip (+ contiguous copy)"] = cpu_seconds(lambda: [(np.ascontiguousarray(crop_image[:, ::-1]),
                                                               np.ascontiguousarray(crop_label[:, ::-1]))
                                                              for _ in range(samples)], 1) / samples
        per["photometric distortion"] = cpu_seconds(lambda: [photometric_distortion(crop_image, rng)
                                                            for _ in range(samples)], 1) / samples
        tensors = [(torch.from_numpy(crop_image).permute(2, 0, 1), torch.from_numpy(crop_label))] * 8
        collate = torch.utils.data.default_collate
        per["collate (batch of 8, per sample)"] = cpu_seconds(lambda: [collate(tensors) for _ in range(samples // 8 or 1)],
                                                              1) / (8 * (samples // 8 or 1))
        total = sum(per.values())
        rows = [(name, f"{1000 * sec:.1f}", f"{100 * sec / total:.0f}%") for name, sec in per.items()]
        rows.append(("total per sample", f"{1000 * total:.1f}", "100%"))
        print(f"One training sample at the recipe's sizes (1024x2048 source, 512x1024 crop), CPU ms on one core; {machine()}")
        print(table(rows, ("stage", "CPU ms / sample", "share")))
        print(f"{target:g} img/s needs {target * total:.1f} busy cores: at least {int(np.ceil(target * total))} "
              "DataLoader workers, each on its own core, besides the training process")

        # other ways to read the same pixels
        png_image, png_label = picks[0].image.read_bytes(), cache_path(cache, "train", picks[0].frame_id).read_bytes()
        reference_image, reference_label = np.asarray(image), np.asarray(label)
        npy_image, npy_label = Path(tmp) / "image.npy", Path(tmp) / "label.npy"
        np.save(npy_image, reference_image)
        np.save(npy_label, reference_label)
        window = (slice(300, 812), slice(500, 1524))  # what a crop at scale 1.0 reads
        readers = {
            "PIL (today)": (lambda: np.asarray(open_image(picks[0].image)), lambda: np.asarray(open_cached_label(cache, picks[0]))),
            "imagecodecs.png_decode": (lambda: imagecodecs.png_decode(png_image), lambda: imagecodecs.png_decode(png_label)),
            "imagecodecs.spng_decode": (lambda: imagecodecs.spng_decode(png_image), lambda: imagecodecs.spng_decode(png_label)),
            ".npy, read whole": (lambda: np.load(npy_image), lambda: np.load(npy_label)),
            ".npy, mmap + 512x1024 window": (lambda: np.array(np.load(npy_image, mmap_mode="r")[window]),
                                             lambda: np.array(np.load(npy_label, mmap_mode="r")[window])),
        }
        rows = []
        for name, (read_image, read_label) in readers.items():
            whole = not name.endswith("window")
            same = (np.array_equal(read_image(), reference_image) and np.array_equal(read_label(), reference_label)) \
                if whole else np.array_equal(read_image(), reference_image[window])
            rows.append((name, f"{1000 * cpu_seconds(read_image, 5):.1f}", f"{1000 * cpu_seconds(read_label, 5):.1f}",
                         "yes" if same else "NO"))
        sizes = (f"PNG {len(png_image) / 2**20:.1f} + {len(png_label) / 2**20:.2f} MiB, .npy "
                 f"{npy_image.stat().st_size / 2**20:.1f} + {npy_label.stat().st_size / 2**20:.1f} MiB per frame")
        print(f"Reading one 1024x2048 frame ({sizes}; warm page cache), CPU ms on one core")
        print(table(rows, ("reader", "image", "trainIds", "identical pixels")))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--stages", action="store_true", help="per-sample CPU cost of each stage, and readers")
    parser.add_argument("--target", type=float, default=110.0, help="--stages: img/s to size the workers for")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as in a DataLoader worker; the main process stays out of the way
    if args.stages:
        stage_costs(args.frames, args.samples, args.target)
        return
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
