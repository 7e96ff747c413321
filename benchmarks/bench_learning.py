"""The learning check: does the real recipe learn every class? The Cityscapes profile (DeepLabV3+
R-50 OS8, aux head, 512x1024 crops of 1024x2048 frames, poly SGD) from random init on CitySynth at
full resolution, for a fixed number of iterations; prints val mIoU and every class's IoU.

Two runs show what the rare-class tools do: the profile as it is (uniform sampler, plain
cross-entropy) and with prepare-labels' class weights plus the rare-class sampler.

Needs a GPU (minutes on an H100; days on 2 CPU cores):

    cd benchmarks && python bench_learning.py [--train-frames 400] [--val-frames 50] [--iterations 2000]
    # a smoke run anywhere: --train-frames 4 --val-frames 2 --iterations 2 --tiny
"""
import argparse
import math
import tempfile
from pathlib import Path

import yaml
from common import full_resolution_citysynth, machine, table

from citypipe.evaluation.evaluate import EvaluatePaths, evaluate_checkpoint
from citypipe.params import params_from_dict
from citypipe.prepare.outputs import write_prepare_outputs
from citypipe.profiles import apply_profile, read_profile
from citypipe.training.trainer import TrainPaths, run_training

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {  # name -> params overrides on top of the profile
    "profile: uniform sampler, plain CE": {},
    "+ class weights, rare-class sampler": {"train": {"class_weights": True, "sampler": "weighted"}},
}
TINY = {"model": {"backbone": "resnet18", "output_stride": 16, "aux_head": False},
        "train": {"base_size": [128, 256], "crop_size": [64, 128], "batch_size": 2},
        "evaluate": {"size": [128, 256], "batch_size": 1}, "device": {"type": "auto", "amp": "none"}}


def recipe_params(data_root: Path, train_frames: int, iterations: int, overrides: dict, tiny: bool):
    """The committed params.yaml with the Cityscapes profile applied, random init, `iterations` steps."""
    profile = read_profile(REPO / "profiles" / "cityscapes.yaml")
    text, _ = apply_profile((REPO / "params.yaml").read_text(), profile)
    raw = yaml.safe_load(text)
    batch = (TINY["train"]["batch_size"] if tiny else raw["train"]["batch_size"])
    per_epoch = max(1, train_frames // batch)
    changes = {"data": {"root": str(data_root)}, "model": {"pretrained": "none", "weights_file": ""},
               "train": {"epochs": max(1, round(iterations / per_epoch)), "val_every": 10**6, "workers": 8},
               "inference": {"workers": 8}}
    for section in (changes, TINY if tiny else {}, overrides):
        for name, values in section.items():
            raw[name].update(values)
    if tiny:
        raw["train"]["workers"] = raw["inference"]["workers"] = 0
    return params_from_dict(raw)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-frames", type=int, default=400)
    parser.add_argument("--val-frames", type=int, default=50)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--tiny", action="store_true", help="ResNet-18 on small crops: a smoke run of the script")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root, cache, prepared = full_resolution_citysynth(tmp, args.train_frames, args.val_frames)
        ids, counts = prepared["train"]
        weights = tmp / "weights"
        write_prepare_outputs(counts, ids, "inverse_log", 1.02, "rare_class", weights / "table.csv",
                              weights / "class.json", weights / "sample.json")
        results = {}
        for name, overrides in VARIANTS.items():
            p = recipe_params(root, args.train_frames, args.iterations, overrides, args.tiny)
            out = tmp / name.replace(" ", "_").replace(",", "").replace(":", "")
            run_training(p.data, p.model, p.train, p.device,
                         TrainPaths(cache, weights / "class.json", weights / "sample.json", out / "checkpoints",
                                    out / "dvclive", out / "train.log"))
            results[name] = evaluate_checkpoint(p.data, p.inference, p.evaluate, p.device, EvaluatePaths(
                cache, out / "checkpoints", out / "eval.json", out / "eval_classes.json", out / "plots",
                out / "per_image.csv"))
    classes = list(next(iter(results.values()))["class_iou"])
    rows = [("val mIoU", *(f"{r['miou']:.3f}" for r in results.values()))]
    rows += [(c, *("n/a" if math.isnan(r["class_iou"][c]) else f"{r['class_iou'][c]:.3f}" for r in results.values()))
             for c in classes]  # n/a: the class is in neither the prediction nor the ground truth
    print(f"Learning check: CitySynth 1024x2048, {args.train_frames} train / {args.val_frames} val frames, "
          f"{args.iterations} iterations, random init; {machine()}")
    print(table(rows, ("", *results)))


if __name__ == "__main__":
    main()
