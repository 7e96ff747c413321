"""CPU training is bit-for-bit the same on any x86-64 machine once citypipe.cpu_determinism pins it.

Each run is a fresh process (the settings are read once per process) doing two SGD steps of
DeepLabV3+ ResNet-18 in train mode (dropout under a fixed seed) on fixed random images; it prints a
SHA-256 of every parameter and buffer. "Machines" are simulated with what can be simulated here:
the core count (CPU affinity, OMP_NUM_THREADS in the environment), an AVX2-only CPU
(MKL_ENABLE_INSTRUCTIONS=AVX2, DNNL_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2) and an AVX-512 one.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PINNED_THREADS = 2

pytestmark = pytest.mark.slow  # every test starts fresh Python processes that import torch and train

WORKER = r"""
import hashlib, json, os, sys
config = json.loads(sys.argv[1])
applied = {}
if config["pin"]:
    from citypipe.cpu_determinism import pin_cpu_determinism
    applied = pin_cpu_determinism(config["threads"])
import torch
import torch.nn.functional as F
from citypipe.data.dataset import normalize
from citypipe.models.deeplab import ModelConfig, build_model
if not config["pin"]:
    torch.set_num_threads(config["threads"])
torch.manual_seed(0)
model = build_model(ModelConfig("deeplabv3plus", "resnet18", 16, False)).train()
optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
data = torch.Generator().manual_seed(1234)
images = torch.randint(0, 256, (2, 3, 64, 96), dtype=torch.uint8, generator=data)
labels = torch.randint(0, 19, (2, 64, 96), generator=data)
labels[torch.rand(2, 64, 96, generator=data) < 0.1] = 255
torch.manual_seed(7)
for _ in range(2):
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(normalize(images))["out"], labels, ignore_index=255).backward()
    optimizer.step()
digest = hashlib.sha256()
for name, tensor in sorted(model.state_dict().items()):
    digest.update(name.encode())
    digest.update(tensor.contiguous().numpy().tobytes())
print(json.dumps({"hash": digest.hexdigest(), "threads": torch.get_num_threads(),
                  "capability": torch.backends.cpu.get_cpu_capability(), "applied": applied}))
"""

AVX2_MACHINE = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
AVX512_MACHINE = {"ATEN_CPU_CAPABILITY": "avx512"}
CLEARED = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA",
           "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "MKL_DYNAMIC", "OMP_DYNAMIC")


def avx512_available() -> bool:
    try:
        return "avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def run(pin: bool, threads: int, machine: dict[str, str], cores: int | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(machine)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    allowed = sorted(os.sched_getaffinity(0))
    preexec = (lambda: os.sched_setaffinity(0, allowed[:cores])) if cores else None
    proc = subprocess.run([sys.executable, "-c", WORKER, json.dumps({"pin": pin, "threads": threads})], env=env,
                          capture_output=True, text=True, timeout=120, preexec_fn=preexec, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_all(cases: list[tuple]) -> list[dict]:
    with ThreadPoolExecutor(max_workers=2) as pool:  # independent processes: concurrency changes no bits
        return list(pool.map(lambda case: run(*case), cases))


def test_pinned_training_is_bitwise_identical_across_simulated_machines():
    machines = [
        ({"OMP_NUM_THREADS": "1"}, 1),  # a 1-core machine
        ({**AVX2_MACHINE, "OMP_NUM_THREADS": "4"}, None),  # an AVX2-only machine, more threads asked for
    ]
    if avx512_available():
        machines.append(({**AVX512_MACHINE, "OMP_NUM_THREADS": "3"}, None))  # AVX-512 ATen kernels asked for
    results = run_all([(True, PINNED_THREADS, env, cores) for env, cores in machines])
    assert {r["threads"] for r in results} == {PINNED_THREADS}
    assert {r["capability"] for r in results} == {"AVX2"}
    assert all(r["applied"]["MKL_CBWR"] == "COMPATIBLE" for r in results)
    assert len({r["hash"] for r in results}) == 1, [r["hash"][:12] for r in results]


def test_without_the_pinning_thread_count_and_isa_change_the_bits():
    """Why the pinning is needed: the defaults differ between 1 and 2 threads and between oneDNN/MKL ISAs."""
    one, two, avx2 = run_all([(False, 1, {}, None), (False, 2, {}, None), (False, 1, AVX2_MACHINE, None)])
    assert one["hash"] != two["hash"]
    if avx512_available():
        assert one["hash"] != avx2["hash"]


def test_pinning_reports_a_setting_read_too_late():
    code = ("import os, torch; torch.ones(2).add(1); "
            "torch.backends.cpu.get_cpu_capability()\n"
            "from citypipe.cpu_determinism import pin_cpu_determinism\n"
            "try:\n    pin_cpu_determinism(1)\nexcept RuntimeError as e:\n    print('refused:', e)\n")
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                         check=False).stdout
    if not avx512_available():
        pytest.skip("AVX2 is this CPU's best: nothing read too late to detect")
    assert "refused: ATen CPU capability is AVX512" in out
