"""What the pinned CPU numerics cost, per kernel family, and which candidate pinnings keep the same bits.

Each configuration runs in a fresh process (the settings are read once per process) that builds the
demo's model (DeepLabV3+ ResNet-18, OS 16, no aux head) under torch.manual_seed(0) and runs the demo's
train step (batch 8 x 128x256, SGD, cross-entropy with ignore 255, dropout under a fixed seed):
one warm-up step, then `--steps` timed ones; it prints wall and process-CPU seconds per step and a
SHA-256 of the final weights. Configurations run interleaved, round after round (`--rounds`), so a
shared machine's load hits them all alike; the table gives the median over rounds and, per round, the
speed relative to the unpinned default measured in the same round.

    PYTHONPATH=. python benchmarks/bench_cpu_pinning.py                      # the side-by-side table
    PYTHONPATH=. python benchmarks/bench_cpu_pinning.py --profile pinned     # per-op profile of one config
    PYTHONPATH=. python benchmarks/bench_cpu_pinning.py --only "pinned;unpinned" --rounds 1 --steps 1 --batch 2

"hash" shows which configurations give the same bits; only a configuration with the pinned hash on
every simulated machine (tests/test_determinism.py) can replace the pinning.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

PIN = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE", "MKL_DYNAMIC": "FALSE", "OMP_DYNAMIC": "FALSE"}
# label -> (threads, environment, torch flags); "pin": citypipe.cpu_determinism.pin_cpu_determinism itself
CONFIGS: dict[str, tuple[int, dict, dict]] = {
    "unpinned": (2, {}, {}),  # torch's defaults: oneDNN convs, ATen AVX-512, MKL's AVX-512 branch
    "unpinned + OMP passive": (2, {"OMP_WAIT_POLICY": "PASSIVE"}, {}),
    "pinned": (2, {}, {"pin": True}),  # what device.cpu_deterministic does today
    "pinned + OMP passive": (2, {"OMP_WAIT_POLICY": "PASSIVE"}, {"pin": True}),  # idle threads sleep, not spin
    "pinned, 1 thread": (1, {}, {"pin": True}),
    "unpinned, 1 thread": (1, {}, {}),
    # Intel-only rows: they show what MKL's COMPATIBLE (SSE2) branch costs against its AVX2 / AVX-512 ones
    "mkldnn off, MKL_CBWR=AVX2 (Intel only)": (2, {**PIN, "MKL_CBWR": "AVX2"}, {"mkldnn": False}),
    "mkldnn off, MKL auto (this CPU only)": (2, {"ATEN_CPU_CAPABILITY": "avx2"}, {"mkldnn": False}),
}
CLEARED = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA",
           "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "MKL_DYNAMIC", "OMP_DYNAMIC", "OMP_WAIT_POLICY")


def worker(config: dict) -> dict:
    # torch (and libgomp) first, so OMP_WAIT_POLICY is the config's, not citypipe/__init__.py's default
    import torch

    if config.get("pin"):
        from citypipe.cpu_determinism import pin_cpu_determinism

        pin_cpu_determinism(config["threads"])
    import torch.nn.functional as F

    from citypipe.data.dataset import normalize
    from citypipe.models.deeplab import ModelConfig, build_model

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_determinism import state_hash

    if not config.get("pin"):
        torch.set_num_threads(config["threads"])
        torch.backends.mkldnn.enabled = config.get("mkldnn", True)
    batch, height, width = config["batch"], *config["size"]
    torch.manual_seed(0)
    model = build_model(ModelConfig("deeplabv3plus", "resnet18", 16, False)).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
    data = torch.Generator().manual_seed(1234)
    images = torch.randint(0, 256, (batch, 3, height, width), dtype=torch.uint8, generator=data)
    labels = torch.randint(0, 19, (batch, height, width), generator=data)
    labels[torch.rand(batch, height, width, generator=data) < 0.1] = 255
    torch.manual_seed(7)  # dropout

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(normalize(images))["out"], labels, ignore_index=255).backward()
        optimizer.step()

    step()  # warm-up: allocator, MKL/oneDNN initialisation
    if config.get("profile"):
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        return {"profile": prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20)}
    wall, cpu = [], []
    for _ in range(config["steps"]):
        w, c = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return {"wall": wall, "cpu": cpu, "hash": state_hash(model), "threads": torch.get_num_threads(),
            "capability": torch.backends.cpu.get_cpu_capability()}


def run_worker(label: str, batch: int, size: tuple[int, int], steps: int, profile: bool = False) -> dict:
    threads, env, flags = CONFIGS[label]
    clean = {k: v for k, v in os.environ.items() if k not in CLEARED}
    clean.update({"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads), **env})
    config = {"threads": threads, "batch": batch, "size": list(size), "steps": steps, "profile": profile, **flags}
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(config)], env=clean,
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, nargs=2, default=(128, 256), metavar=("H", "W"))
    parser.add_argument("--only", help="semicolon-separated labels of CONFIGS")
    parser.add_argument("--profile", help="print the per-op profile of one step of this config")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    from common import table

    if args.profile:
        print(run_worker(args.profile, args.batch, tuple(args.size), 1, profile=True)["profile"])
        return
    labels = args.only.split(";") if args.only else list(CONFIGS)
    results: dict[str, list[dict]] = {label: [] for label in labels}
    print("load before:", os.getloadavg(), flush=True)
    for round_ in range(args.rounds):
        for label in labels:
            r = run_worker(label, args.batch, tuple(args.size), args.steps)
            results[label].append(r)
            print(round_, label, "wall", [round(t, 2) for t in r["wall"]], "cpu", [round(t, 2) for t in r["cpu"]],
                  r["hash"][:12], flush=True)
    print("load after:", os.getloadavg(), flush=True)
    base = "unpinned" if "unpinned" in labels else labels[0]
    rows = []
    for label in labels:
        wall = [statistics.median(r["wall"]) for r in results[label]]
        cpu = [statistics.median(r["cpu"]) for r in results[label]]
        relative = [b / w for w, b in zip(wall, (statistics.median(r["wall"]) for r in results[base]))]
        rows.append((label, CONFIGS[label][0], f"{args.batch / statistics.median(wall):.2f}",
                     f"{statistics.median(cpu):.1f}", " ".join(f"{x:.2f}" for x in relative),
                     results[label][0]["hash"][:12]))
    print(table(rows, ("config", "threads", "img/s (wall)", "CPU s/step", f"speed vs {base}, per round", "hash")))


if __name__ == "__main__":
    main()
