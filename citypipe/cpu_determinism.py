"""Pin a process's CPU numerics so a training run gives the same bits on any x86-64 Linux machine.

Measured with benchmarks/bench_determinism.py (DeepLabV3+ ResNet-18 train steps, SHA-256 of the
weights): on one machine the bits depend on
  - the intra-op thread count, in every convolution path: oneDNN (its 1x1 convs even switch between
    oneDNN and ATen's im2col+MKL path with the thread count) and ATen's slow_conv2d + MKL sgemm,
    even under MKL_CBWR=AVX2,STRICT (ATen splits the batch across threads);
  - oneDNN's ISA (DNNL_MAX_CPU_ISA AVX2 / AVX512_CORE / SSE41 all differ); oneDNN promises
    bitwise results only for an identical platform, and its blocking follows cache sizes;
  - MKL's code path (MKL_ENABLE_INSTRUCTIONS=AVX2 differs from the AVX-512 default);
  - ATEN_CPU_CAPABILITY=default (scalar) against avx2/avx512 (those two agreed here).
So the pinning is: a fixed thread count (a setting, not the machine's core count), no oneDNN,
MKL on its fixed COMPATIBLE branch (the only fixed branch MKL documents for non-Intel CPUs, e.g.
AMD EPYC; it fixes cache-size and reduction choices too), ATen's AVX2 kernels (present on every
x86-64 machine we target), and no dynamic thread adjustment.

Environment variables that the libraries read once: ATEN_CPU_CAPABILITY (at the first ATen
kernel dispatch) and MKL_CBWR (at MKL's first use). `pin_cpu_determinism` sets them in
os.environ and then checks that they took effect, raising if something already ran; setting them
in the environment before Python starts (`pinned_environment`) is the safe way for launchers.
"""
from __future__ import annotations

import ctypes
import os

MKL_CBWR_BRANCH = 1  # mkl_cbwr_get(MKL_CBWR_BRANCH) -> the branch number
MKL_BRANCH_NUMBERS = {"COMPATIBLE": 3, "AVX2": 10, "AVX512": 12}


def pinned_environment(threads: int) -> dict[str, str]:
    """The environment variables of the pinning: put them in a child process's environment."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    return {
        "ATEN_CPU_CAPABILITY": "avx2",  # ATen's vectorised kernels: same width on AVX2 and AVX-512 machines
        "MKL_CBWR": "COMPATIBLE",  # MKL: one code branch on Intel and AMD, fixed cache sizes and reductions
        "MKL_DYNAMIC": "FALSE",  # MKL and OpenMP must not change the thread count at run time
        "OMP_DYNAMIC": "FALSE",
        "OMP_WAIT_POLICY": "PASSIVE",  # scheduling only, not numerics: idle threads sleep (see citypipe/__init__.py)
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }


def _mkl_branch() -> int | None:
    """MKL's CNR branch as torch's statically linked MKL reports it; None where it cannot be asked."""
    import torch

    try:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
        return int(lib.mkl_serv_cbwr_get(MKL_CBWR_BRANCH))
    except (OSError, AttributeError):
        return None


def pin_cpu_determinism(threads: int, deterministic_algorithms: bool = True) -> dict[str, str]:
    """Pin this process (call before the first torch op; best before `import torch`); returns what was set.

    Raises RuntimeError when a setting read once was already fixed to something else (an op ran
    first, or the environment asked otherwise), so a run cannot silently lose the guarantee.
    """
    env = pinned_environment(threads)
    env.pop("OMP_WAIT_POLICY")  # read when libgomp loaded; citypipe/__init__.py set it before that, if it could
    # ATEN_CPU_CAPABILITY and MKL_CBWR are read at first use, so this works after `import torch`; the
    # OMP_* values are read when libgomp loads (with torch), so there torch.set_num_threads below is
    # what takes effect: pinned_environment() is for launchers that can set them before Python starts.
    os.environ.update(env)
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)  # inter-op parallelism only reorders independent ops; keep it simple
        interop = "1"
    except RuntimeError:  # already started (a parallel op ran): harmless for the numerics
        interop = str(torch.get_num_interop_threads())
    torch.backends.mkldnn.enabled = False  # oneDNN's results depend on ISA, cache sizes and threads
    if deterministic_algorithms:
        torch.use_deterministic_algorithms(True, warn_only=True)
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "AVX2":
        raise RuntimeError(f"ATen CPU capability is {capability}, not AVX2: ATEN_CPU_CAPABILITY was read before "
                           "pin_cpu_determinism ran (or this CPU lacks AVX2); set it in the environment")
    branch = _mkl_branch()
    if branch is not None and branch != MKL_BRANCH_NUMBERS[env["MKL_CBWR"]]:
        raise RuntimeError(f"MKL's CNR branch is {branch}, not {env['MKL_CBWR']}: MKL was initialised before "
                           "pin_cpu_determinism ran; set MKL_CBWR in the environment")
    return {**env, "torch.set_num_threads": str(threads), "torch.set_num_interop_threads": interop,
            "torch.backends.mkldnn.enabled": "False",
            "torch.use_deterministic_algorithms": str(deterministic_algorithms),
            "cpu_capability": capability, "mkl_cbwr_branch": str(branch)}
