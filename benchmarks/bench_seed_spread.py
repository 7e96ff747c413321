"""The demo's seed-to-seed spread: how far val mIoU and pixel accuracy move when only `train.seed`
changes, next to the 95% bootstrap interval that eval.json gives for one run.

A delta in `dvc metrics diff` smaller than this spread is noise. Runs the real train and evaluate
stage scripts (CPU pinning included) on the demo data that `dvc repro` prepared, one seed at a time,
into a temporary folder; params.yaml is otherwise the committed one.

    dvc repro prepare-labels && cd benchmarks && python bench_seed_spread.py [--seeds 0 1 2 3 4]
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from common import machine, table

REPO = Path(__file__).resolve().parents[1]


def run_seed(seed: int, work: Path) -> dict:
    """Train with `train.seed: seed` and evaluate; eval.json's headline numbers."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["seed"] = seed
    params_file = work / f"params_{seed}.yaml"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    out = work / f"seed{seed}"
    common = ["--params", str(params_file), "--cache", str(REPO / "data" / "trainids")]
    subprocess.run([sys.executable, str(REPO / "stages" / "train.py"), *common,
                    "--class-weights", str(REPO / "data" / "class_weights.json"),
                    "--sample-weights", str(REPO / "data" / "sample_weights.json"),
                    "--checkpoints", str(out / "checkpoints"), "--live-dir", str(out / "dvclive"),
                    "--log", str(out / "train.log")], cwd=REPO, check=True, capture_output=True)
    subprocess.run([sys.executable, str(REPO / "stages" / "evaluate.py"), *common,
                    "--data-root", params["data"]["root"],
                    "--checkpoints", str(out / "checkpoints"), "--metrics", str(out / "eval.json"),
                    "--class-metrics", str(out / "eval_classes.json"), "--plots", str(out / "plots")],
                   cwd=REPO, check=True, capture_output=True)
    return json.loads((out / "eval.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args()
    if not (REPO / "data" / "trainids").is_dir():
        sys.exit("run `dvc repro prepare-labels` first: the benchmark trains on the demo's prepared data")
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            scores = results[seed] = run_seed(seed, Path(tmp))
            rows.append((seed, f"{scores['miou']:.4f}", f"[{scores['miou_ci95_low']:.4f}, {scores['miou_ci95_high']:.4f}]",
                         f"{scores['pixel_acc']:.4f}", f"{scores['iiou']:.4f}"))
            print(f"seed {seed}: mIoU {scores['miou']:.4f}", flush=True)
    for key in ("miou", "pixel_acc", "iiou"):
        values = [r[key] for r in results.values()]
        rows.append((f"spread of {key}", f"min {min(values):.4f}", f"max {max(values):.4f}",
                     f"range {max(values) - min(values):.4f}", f"std {statistics.stdev(values):.4f}"
                     if len(values) > 1 else "-"))
    print(f"Demo params, train.seed varied; {machine()}")
    print(table(rows, ("train.seed", "val mIoU", "mIoU 95% CI (images)", "pixel acc", "iIoU")))


if __name__ == "__main__":
    main()
