"""Data loading at the real recipe: samples/s per DataLoader worker count, ours vs torchvision v2.

Training: a 1024x2048 source frame, random scale 0.5-2.0, 512x1024 crop padded with 255, flip,
photometric distortion, as uint8 tensors (ours also retries crops dominated by one class, the
recipe's cat_max_ratio 0.75), read from the PNG or from prepare-labels' decoded-frame cache
(prepare.image_cache: an uncompressed .npy per train frame). The reference is what torchvision's
references/segmentation does with transforms v2 from the PNG: resize the whole frame, then crop. Evaluation: full 1024x2048 frames with their
trainIds and instanceIds. Each figure is the median of --repeats passes of --samples samples,
timed from the first batch (worker start-up excluded).

    cd benchmarks && python bench_loader.py [--frames 8] [--samples 32] [--repeats 3] [--workers 0 1 2]
    cd benchmarks && python bench_loader.py --stages [--frames 4] [--samples 16] [--target 110]

`--stages`: what one training sample costs one core, stage by stage, from PNGs and from the frame
cache side by side (CPU seconds of this process, one thread, so other jobs on a shared machine barely
move it): reading the 1024x2048 image (PNG decode, or mapping its .npy and checking its size against
the PNG header) and its trainId PNG, the fused random resize + crop (label tries included; from the
cache it reads the mapped rows it needs), flip, mmseg's photometric distortion, and the uint8 collate
of a batch of 8; then TrainCrops[i] timed whole as a check on the sum, the workers that `--target`
img/s needs, and other ways to read the same pixels (imagecodecs' libpng and libspng decoders, an
uncompressed .npy read whole or memory-mapped), each checked to give identical arrays.
"""
import argparse
import functools
import shutil
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
from citypipe.data.layout import cache_path, frame_cache_path
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


def png_only_copy(cache: Path, target: Path) -> Path:
    """The trainId cache without its decoded frames: what prepare-labels writes with image_cache false."""
    shutil.copytree(cache, target, ignore=shutil.ignore_patterns("*.npy"))
    return target


def stage_costs(frames: int, samples: int, target: float) -> None:
    """Per-sample CPU cost of each stage of TrainCrops at the recipe's sizes, from the PNG and from the
    decoded-frame cache (prepare.image_cache), and other ways to read a frame."""
    import imagecodecs

    from citypipe.data.dataset import open_cached_label
    from citypipe.data.frames import open_image, read_cached_frame
    from citypipe.data.photometric import mmseg_photometric_distortion
    from citypipe.data.transforms import _crop_accepted, _crop_window, _resized_crop, bilinear_resized_crop
    from citypipe.labels import IGNORE_INDEX

    with tempfile.TemporaryDirectory() as tmp:
        root, cache, _ = full_resolution_citysynth(Path(tmp), frames, image_cache=True)
        png_cache = png_only_copy(cache, Path(tmp) / "trainids_png")
        found = layout.find_samples(root, "train")
        picks = [found[i % len(found)] for i in range(samples)]
        npys = [frame_cache_path(cache, "train", s.frame_id) for s in picks]
        rng = np.random.default_rng(0)
        image, label = open_image(picks[0].image), open_cached_label(cache, picks[0])
        t = RECIPE
        assert (t.resize, t.photometric) == ("bilinear", "mmseg")  # the stages below are these paths of TrainTransform

        def crop(source) -> tuple[np.ndarray, np.ndarray]:
            """TrainTransform's random scale + crop with the label's tries, then the image (cv2-style bilinear)."""
            scale = rng.uniform(*t.scale_range)
            scaled = (round(t.base_size[0] * scale), round(t.base_size[1] * scale))
            for _ in range(10):
                window = _crop_window(scaled, t.crop_size, rng)
                crop_label = _resized_crop(label, scaled, window, t.crop_size, Image.NEAREST, IGNORE_INDEX)
                if _crop_accepted(crop_label, t.cat_max_ratio):
                    break
            return bilinear_resized_crop(np.asarray(source), scaled, window, t.crop_size), crop_label

        def per_sample(fn, repeats: int = 1) -> float:
            return cpu_seconds(fn, repeats) / samples

        png, cached = {}, {}
        png["read image"] = per_sample(lambda: [open_image(s.image) for s in picks])
        cached["read image"] = per_sample(lambda: [read_cached_frame(n, s.image) for n, s in zip(npys, picks)])
        png["read trainId PNG"] = cached["read trainId PNG"] = per_sample(
            lambda: [open_cached_label(cache, s) for s in picks])
        decoded = [open_image(s.image) for s in picks]
        png["resize + crop (label tries, image)"] = per_sample(lambda: [crop(d) for d in decoded])
        # fresh maps, as each sample opens its own: the page faults of the rows a crop reads are its cost
        mapped = [read_cached_frame(n, s.image) for n, s in zip(npys, picks)]
        cached["resize + crop (label tries, image)"] = per_sample(lambda: [crop(m) for m in mapped])
        crop_image, crop_label = crop(image)
        png["flip (+ contiguous copy)"] = cached["flip (+ contiguous copy)"] = per_sample(
            lambda: [(np.ascontiguousarray(crop_image[:, ::-1]), np.ascontiguousarray(crop_label[:, ::-1]))
                     for _ in range(samples)])
        png["photometric (mmseg)"] = cached["photometric (mmseg)"] = per_sample(
            lambda: [mmseg_photometric_distortion(crop_image, rng) for _ in range(samples)])
        tensors = [(torch.from_numpy(crop_image).permute(2, 0, 1), torch.from_numpy(crop_label))] * 8
        collate = torch.utils.data.default_collate
        batches = samples // 8 or 1
        png["collate (batch of 8, per sample)"] = cached["collate (batch of 8, per sample)"] = cpu_seconds(
            lambda: [collate(tensors) for _ in range(batches)], 1) / (8 * batches)
        keys = [(i % len(found), i) for i in range(samples)]
        whole = {}
        for name, folder in (("png", png_cache), ("cached", cache)):
            dataset = TrainCrops(found, folder, RECIPE)
            whole[name] = per_sample(lambda: [dataset[k] for k in keys])  # noqa: B023 (called at once)
        totals = {"png": sum(png.values()), "cached": sum(cached.values())}
        rows = [(name, f"{1000 * png[name]:.1f}", f"{100 * png[name] / totals['png']:.0f}%",
                 f"{1000 * cached[name]:.1f}", f"{100 * cached[name] / totals['cached']:.0f}%") for name in png]
        rows.append(("sum of the stages", f"{1000 * totals['png']:.1f}", "100%", f"{1000 * totals['cached']:.1f}", "100%"))
        rows.append(("TrainCrops[i], timed whole (check)", f"{1000 * whole['png']:.1f}", "",
                     f"{1000 * whole['cached']:.1f}", ""))
        print(f"One training sample at the recipe's sizes (1024x2048 source, scale 0.5-2.0, 512x1024 crop, cv2-style "
              f"bilinear, mmseg photometric), CPU ms on one core, {samples} samples of {frames} frames; {machine()}")
        print(table(rows, ("stage", "PNG", "share", "frame cache (.npy)", "share")))
        for name, label_text in (("png", "from PNGs"), ("cached", "from the frame cache")):
            busy = target * whole[name]
            print(f"{label_text}: {target:g} img/s needs {busy:.1f} busy cores (TrainCrops timed whole): at least "
                  f"{int(np.ceil(busy))} DataLoader workers, each on its own core, besides the training process")

        # other ways to read the same pixels
        png_image, png_label = picks[0].image.read_bytes(), cache_path(cache, "train", picks[0].frame_id).read_bytes()
        reference_image, reference_label = np.asarray(image), np.asarray(label)
        npy_image, npy_label = npys[0], Path(tmp) / "label.npy"
        np.save(npy_label, reference_label)
        window = (slice(300, 812), slice(500, 1524))  # what a crop at scale 1.0 reads
        readers = {
            "PIL (the PNG path)": (lambda: np.asarray(open_image(picks[0].image)),
                                   lambda: np.asarray(open_cached_label(cache, picks[0]))),
            "imagecodecs.png_decode": (lambda: imagecodecs.png_decode(png_image), lambda: imagecodecs.png_decode(png_label)),
            "imagecodecs.spng_decode": (lambda: imagecodecs.spng_decode(png_image), lambda: imagecodecs.spng_decode(png_label)),
            ".npy, read whole": (lambda: np.load(npy_image), lambda: np.load(npy_label)),
            ".npy, read_cached_frame + copy whole": (lambda: np.array(read_cached_frame(npy_image, picks[0].image)),
                                                     lambda: np.load(npy_label)),
            ".npy, mmap + 512x1024 window": (lambda: np.array(np.load(npy_image, mmap_mode="r")[window]),
                                             lambda: np.array(np.load(npy_label, mmap_mode="r")[window])),
        }
        rows = []
        for name, (read_image, read_label) in readers.items():
            whole_frame = not name.endswith("window")
            same = (np.array_equal(read_image(), reference_image) and np.array_equal(read_label(), reference_label)) \
                if whole_frame else np.array_equal(read_image(), reference_image[window])
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
        root, frame_cache, _ = full_resolution_citysynth(Path(tmp), args.frames, image_cache=True)
        cache = png_only_copy(frame_cache, Path(tmp) / "trainids_png")
        samples = layout.find_samples(root, "train")
        train_keys = [(i % len(samples), i) for i in range(args.samples + 8)]  # (sample index, augmentation seed)
        eval_keys = [i % len(samples) for i in range(args.samples // 2 + 1)]
        for workers in args.workers:
            rate = functools.partial(samples_per_second, keys=train_keys, workers=workers, samples=args.samples,
                                     batch_size=8, repeats=args.repeats)
            train_ours, train_cached = rate(TrainCrops(samples, cache, RECIPE)), rate(TrainCrops(samples, frame_cache, RECIPE))
            train_ref = rate(TorchvisionReference(samples, cache))
            eval_ours = samples_per_second(EvalFrames(samples, cache), eval_keys, workers, args.samples // 2, 1,
                                           args.repeats)
            rows.append((workers, f"{train_ours:.1f}", f"{train_cached:.1f}", f"{train_ref:.1f}",
                         f"{train_ours / train_ref:.1f}x", f"{train_cached / train_ours:.1f}x", f"{eval_ours:.1f}"))
    print(f"Data loading from 1024x2048 CitySynth PNGs, or the decoded-frame cache (prepare.image_cache); {machine()}")
    print(table(rows, ("workers", "train samples/s (ours, PNG)", "(ours, frame cache)", "(torchvision v2, PNG)",
                       "ours PNG / torchvision", "frame cache / PNG", "eval frames/s (ours)")))


if __name__ == "__main__":
    main()
