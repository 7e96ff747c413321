"""Which CPU settings change the bits of a DeepLabV3+ train step, and what pinning them costs.

A worker builds DeepLabV3+ ResNet-18 (OS 16, no aux head) under torch.manual_seed(0), runs a few
SGD steps (lr 0.02, momentum 0.9, wd 5e-4) in model.train() (dropout included, under a fixed
torch seed) on fixed random uint8 images normalised as citypipe.data.dataset.normalize does,
cross-entropy with ignore_index 255, and prints a SHA-256 of every final parameter and buffer.
The driver runs the worker in fresh subprocesses under combinations of thread count, ATen CPU
capability, oneDNN max ISA, mkldnn on/off, MKL_CBWR and deterministic algorithms, and groups
the hashes.

    PYTHONPATH=. python benchmarks/bench_determinism.py             # the matrix (~50 runs; 15 min on 2 shared cores with --size 64 128)
    PYTHONPATH=. python benchmarks/bench_determinism.py --speed     # img/s, default vs pinned
    PYTHONPATH=. python benchmarks/bench_determinism.py --when      # env vars set after `import torch`: honoured?

Results on the dev machine (Intel Xeon, Sapphire Rapids class: AVX-512 + AMX, 2 cores shared with
other jobs; torch 2.14.1, oneDNN 3.12, MKL 2024.2). Matrix: batch 4 x 64x128, 3 steps (`--size 64 128`);
hash = first 12 hex digits of the SHA-256 of the final state dict.

    | path              | setting (env)                      | 1 thread     | 2 threads    | 4 threads    |
    |-------------------|------------------------------------|--------------|--------------|--------------|
    | default (oneDNN)  | -  (ATen AVX512)                   | dd2633c16a98 | 64d1b0fa1059 | 9b41b5f86a10 |
    | default (oneDNN)  | ATEN_CPU_CAPABILITY=avx2           | dd2633c16a98 | 64d1b0fa1059 | 9b41b5f86a10 |
    | default (oneDNN)  | ATEN_CPU_CAPABILITY=default        | 0f6031fb8520 | f3287298cfb3 | e0622211c5ef |
    | default (oneDNN)  | DNNL_MAX_CPU_ISA=AVX512_CORE       | dd2633c16a98 | 64d1b0fa1059 |              |
    | default (oneDNN)  | DNNL_MAX_CPU_ISA=AVX2              | 41dd71a134c1 | fec3b2d3f5e6 |              |
    | default (oneDNN)  | DNNL_MAX_CPU_ISA=SSE41             | eee8f02420b3 | 1a1d9f8f488e |              |
    | default (oneDNN)  | use_deterministic_algorithms(True) | dd2633c16a98 | 64d1b0fa1059 |              |
    | mkldnn off (MKL)  | -  (= with ATEN_CPU_CAPABILITY=avx2) | 95c284479201 | a6986d96b70f | d9fc29900fc7 |
    | mkldnn off (MKL)  | MKL_ENABLE_INSTRUCTIONS=AVX2       | 35a1bcc7dc2f | c97924d2736d | ea819e1f86b5 |
    | mkldnn off (MKL)  | MKL_CBWR=AVX2                      | 35a1bcc7dc2f | c97924d2736d | ea819e1f86b5 |
    | mkldnn off (MKL)  | MKL_CBWR=AVX2,STRICT               | 20efa7a4d648 | 384a2bc56c80 | 5eaef0d9ecf5 |
    | mkldnn off (MKL)  | MKL_CBWR=COMPATIBLE                | 22875b1c8d73 | bbe6539b1edd | e89d582473d8 |
    (every MKL_CBWR row: the same hash with ATEN_CPU_CAPABILITY=avx2 added)

  - the thread count changes the bits on every path, even MKL_CBWR=AVX2,STRICT (MKL's strict mode
    covers gemm's own threading; ATen's slow_conv2d splits the batch across threads, and with
    oneDNN on, 1x1 convs switch between oneDNN and ATen+MKL with the thread count): the thread
    count must be a fixed setting, not the machine's core count;
  - oneDNN's ISA changes them (AVX2 / AVX-512 / SSE4.1), so does MKL's (MKL_ENABLE_INSTRUCTIONS=AVX2,
    i.e. an AVX2-only CPU); MKL_CBWR=AVX2 on this AVX-512 CPU gives the AVX2 CPU's bits: CBWR pins
    MKL's path; oneDNN has no such mode (bitwise only on an identical platform), hence mkldnn off;
  - ATen's AVX2 and AVX-512 kernels agree bitwise on this model; its scalar DEFAULT kernels do not;
  - torch.use_deterministic_algorithms(True) changes nothing on CPU.
  Smallest set measured to make every ISA simulation agree: fixed threads + mkldnn off + MKL_CBWR.

`--when` (1 thread, batch 2, 64x64, 1 step): a variable set in os.environ after `import torch` but
before the first op works for ATEN_CPU_CAPABILITY, DNNL_MAX_CPU_ISA and MKL_CBWR (same hash as set
before start); set after one conv (oneDNN and ATen+MKL) it is silently ignored (default hash).

`--speed` (batch 4 x 128x256, median of steps 3-8, img/s; the machine was shared, load 3-10, so
2-thread numbers are noisy; compare within a row pair):

    | setting                           | threads | run 1 | run 2 |
    |-----------------------------------|---------|-------|-------|
    | default                           | 1       | 2.22  | 4.64  |
    | pinned (cpu_determinism)          | 1       | 0.57  | 1.07  |
    | default                           | 2       | 0.40  | 0.82  |
    | pinned (cpu_determinism)          | 2       | 0.49  | 1.58  |
    | mkldnn off only                   | 1       | 3.45  |       |
    | mkldnn off + MKL_CBWR=AVX2        | 1       | 2.40  |       |
  The pinning costs about 4x on one thread; most of it is MKL's COMPATIBLE (SSE2) branch, which is
  the only fixed branch MKL documents for non-Intel CPUs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# worker: one process, one configuration
# ---------------------------------------------------------------------------------------------

def state_hash(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def train_steps(steps: int, batch: int, height: int, width: int, timed: bool = False) -> dict:
    """The train step under whatever settings the process has; hash of the final weights."""
    import torch
    import torch.nn.functional as F

    from citypipe.data.dataset import normalize
    from citypipe.models.deeplab import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig("deeplabv3plus", "resnet18", 16, False))
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
    data = torch.Generator().manual_seed(1234)
    images = torch.randint(0, 256, (batch, 3, height, width), dtype=torch.uint8, generator=data)
    labels = torch.randint(0, 19, (batch, height, width), dtype=torch.int64, generator=data)
    labels[torch.rand(batch, height, width, generator=data) < 0.1] = 255
    torch.manual_seed(7)  # dropout
    losses, times = [], []
    for _ in range(steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(normalize(images))["out"], labels, ignore_index=255)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
        losses.append(loss.item())
    result = {"hash": state_hash(model), "losses": [float.hex(v) for v in losses]}
    if timed:
        result["step_seconds"] = times
    return result


def worker(config: dict) -> dict:
    """Apply `config` in the order a real process would, then train. Keys:
    late_env: env vars set via os.environ after `import torch` (before the first op);
    pin: call citypipe.cpu_determinism.pin_cpu_determinism(threads) instead of the manual flags;
    threads, mkldnn, deterministic, steps, batch, height, width, timed."""
    import torch

    if config.get("first_op"):  # one conv through each library first: ATen dispatch, oneDNN, MKL
        x, w = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3)
        torch.nn.functional.conv2d(x, w)
        with torch.backends.mkldnn.flags(enabled=False):
            torch.nn.functional.conv2d(x, w)
    for key, value in config.get("late_env", {}).items():
        os.environ[key] = value
    applied = {}
    if config.get("pin"):
        from citypipe.cpu_determinism import pin_cpu_determinism

        applied = pin_cpu_determinism(config["threads"])
    else:
        torch.set_num_threads(config["threads"])
        if not config.get("mkldnn", True):
            torch.backends.mkldnn.enabled = False
        if config.get("deterministic"):
            torch.use_deterministic_algorithms(True)
    result = train_steps(config.get("steps", 3), config.get("batch", 4), config.get("height", 128),
                         config.get("width", 256), config.get("timed", False))
    result["capability"] = torch.backends.cpu.get_cpu_capability()
    result["threads"] = torch.get_num_threads()
    result["applied"] = applied
    if config.get("probe_isa"):
        result["dnnl_isa"] = dnnl_isa_in_use()
    return result


def dnnl_isa_in_use() -> str:
    """The oneDNN conv implementation a small conv picks (from ONEDNN_VERBOSE, captured on fd 1)."""
    import tempfile

    import torch

    with tempfile.TemporaryFile(mode="w+") as capture:
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(capture.fileno(), 1)
        try:
            torch.backends.mkldnn.verbose(1).__enter__()
            torch.nn.functional.conv2d(torch.randn(2, 16, 16, 16), torch.randn(16, 16, 3, 3))
            torch.backends.mkldnn.verbose(0).__enter__()
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        capture.seek(0)
        lines = [line for line in capture.read().splitlines() if "exec" in line and "convolution" in line]
    return lines[-1].split(",")[6] if lines else "(no oneDNN conv)"


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------

PINNING_KEYS = ("OMP_NUM_THREADS", "ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR",
                "MKL_ENABLE_INSTRUCTIONS", "MKL_NUM_THREADS", "ONEDNN_VERBOSE", "DNNL_VERBOSE")


def run_worker(config: dict, env: dict | None = None) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in PINNING_KEYS}
    clean["PYTHONPATH"] = str(ROOT)
    clean.update(env or {})
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(config)], env=clean,
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def matrix(steps: int, batch: int, height: int, width: int) -> list[tuple]:
    rows = []
    base = {"steps": steps, "batch": batch, "height": height, "width": width}

    def add(label: str, threads: int, env: dict, **extra) -> None:
        env = {"OMP_NUM_THREADS": str(threads), **env}
        r = run_worker({**base, "threads": threads, "probe_isa": extra.pop("probe", False), **extra}, env)
        envs = " ".join(f"{k}={v}" for k, v in env.items() if k != "OMP_NUM_THREADS") or "-"
        rows.append((label, threads, envs, r["capability"], r.get("dnnl_isa", ""), r["hash"][:12],
                     float.fromhex(r["losses"][-1])))
        print(rows[-1], flush=True)

    for t in (1, 2, 4):
        for cap in ("", "avx2", "default"):
            add("default", t, {"ATEN_CPU_CAPABILITY": cap} if cap else {}, probe=True)
    for t in (1, 2):
        for isa in ("AVX2", "AVX512_CORE", "SSE41"):
            add("dnnl isa", t, {"DNNL_MAX_CPU_ISA": isa}, probe=True)
    for t in (1, 2, 4):
        add("mkldnn off", t, {}, mkldnn=False)
        add("mkldnn off", t, {"ATEN_CPU_CAPABILITY": "avx2"}, mkldnn=False)
        for cbwr in ("COMPATIBLE", "AVX2", "AVX2,STRICT"):
            add("mkldnn off", t, {"MKL_CBWR": cbwr}, mkldnn=False)
            add("mkldnn off", t, {"MKL_CBWR": cbwr, "ATEN_CPU_CAPABILITY": "avx2"}, mkldnn=False)
        add("mkldnn off", t, {"MKL_ENABLE_INSTRUCTIONS": "AVX2"}, mkldnn=False)
    for t in (1, 2):
        add("deterministic", t, {}, deterministic=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, nargs=2, default=(128, 256), metavar=("H", "W"))
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--when", action="store_true")
    parser.add_argument("--first-variant", type=int, default=0, help="--speed: skip the first variants")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import table

    if args.speed:
        rows = []
        variants = (("default", {}, {}, (1, 2)), ("pinned", {"pin": True}, {}, (1, 2)),
                    ("mkldnn off", {"mkldnn": False}, {}, (1,)),
                    ("mkldnn off + MKL_CBWR=AVX2", {"mkldnn": False}, {"MKL_CBWR": "AVX2"}, (1,)))
        for label, config, env, thread_counts in variants[args.first_variant:]:
            for threads in thread_counts:
                r = run_worker({"threads": threads, "steps": 8, "timed": True, **config},
                               {"OMP_NUM_THREADS": str(threads), **env})
                per_step = statistics.median(r["step_seconds"][2:])
                rows.append((label, threads, r["capability"], f"{4 / per_step:.2f}", r["hash"][:12]))
                print(rows[-1], flush=True)
        print(table(rows, ("setting", "threads", "ATen capability", "img/s (median of 6 steps)", "hash")))
        return
    if args.when:
        rows = []
        for mkldnn in (True, False):
            r = run_worker({"threads": 1, "steps": 1, "batch": 2, "height": 64, "width": 64, "probe_isa": True,
                            "mkldnn": mkldnn})
            rows.append(("-", f"nothing (mkldnn {'on' if mkldnn else 'off'})", r["capability"], r["dnnl_isa"],
                         r["hash"][:12]))
        for where in ("env", "late_env", "after_op"):
            for key, value in (("ATEN_CPU_CAPABILITY", "avx2"), ("DNNL_MAX_CPU_ISA", "AVX2"),
                               ("MKL_CBWR", "COMPATIBLE")):
                config = {"threads": 1, "steps": 1, "batch": 2, "height": 64, "width": 64, "probe_isa": True,
                          "mkldnn": key != "MKL_CBWR"}
                late = {"late_env": {key: value}, "first_op": where == "after_op"} if where != "env" else {}
                r = run_worker({**config, **late}, {key: value} if where == "env" else {})
                rows.append((where, f"{key}={value}", r["capability"], r["dnnl_isa"], r["hash"][:12]))
                print(rows[-1], flush=True)
        print(table(rows, ("set in", "setting", "ATen capability", "oneDNN conv impl", "hash")))
        return
    rows = matrix(args.steps, args.batch, *args.size)
    print(table(rows, ("group", "threads", "env", "ATen cap", "oneDNN conv impl", "hash", "last loss")))


if __name__ == "__main__":
    main()
