"""Where and how a stage runs its model: device, precision (autocast), channels_last, cudnn benchmark, threads.

Every stage that runs a model (train, evaluate, visualize, export-submission, `citypipe infer`) builds
one `Runtime` from params.yaml's `device` section.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from citypipe.cpu_determinism import pin_cpu_determinism
from citypipe.errors import CitypipeError
from citypipe.params import DeviceParams


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    amp_dtype: torch.dtype | None  # None: full fp32
    channels_last: bool

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def describe(self, processes: int = 1) -> str:
        """For a log header: 'cpu (2 threads)', 'cuda (NVIDIA H200, bf16) x 4 processes'."""
        if self.device.type == "cuda":
            kind = f"cuda ({torch.cuda.get_device_name(self.device)}, {str(self.amp_dtype or 'fp32').removeprefix('torch.')})"
        else:
            kind = f"{self.device.type} ({torch.get_num_threads()} threads)"
        return kind + (f" x {processes} processes" if processes > 1 else "")


def resolve_device(kind: str, local_rank: int = 0) -> torch.device:
    """auto: cuda > mps > cpu. Asking for a device that is not there is an error, not a fallback."""
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise CitypipeError("device.type: cuda requested but no CUDA device is available (use auto or cpu)")
        if local_rank >= torch.cuda.device_count():  # one GPU per process: torchrun's LOCAL_RANK picks it
            raise CitypipeError(f"device.processes: local process {local_rank} has no GPU of its own (this machine "
                                f"has {torch.cuda.device_count()} CUDA devices; expected at most that many processes)")
        return torch.device("cuda", local_rank)
    if kind == "mps" and not has_mps:
        raise CitypipeError("device.type: mps requested but MPS is not available (use auto or cpu)")
    return torch.device(kind)


def make_runtime(kind: str, amp: str, channels_last: bool, cudnn_benchmark: bool, num_threads: int,
                 local_rank: int = 0) -> Runtime:
    device = resolve_device(kind, local_rank)
    if num_threads:
        torch.set_num_threads(num_threads)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
        return Runtime(device, dtype, channels_last)
    # CPU and MPS run in fp32: bit-for-bit reproducible metrics on CPU are the contract
    return Runtime(device, None, False)


def runtime_for(device: DeviceParams, local_rank: int = 0) -> Runtime:
    """The runtime that params.yaml's `device` section asks for."""
    return make_runtime(device.type, device.amp, device.channels_last, device.cudnn_benchmark, device.num_threads,
                        local_rank)


def pin_cpu_numerics(device: DeviceParams) -> dict[str, str]:
    """Call first thing in a stage process: with `device.cpu_deterministic` on a CPU run, pin threads
    and kernels so the bits are the same on any x86-64 machine; returns what was pinned ({} if nothing).

    It must run before the process's first torch op (some settings are read once), so stages call it
    right after loading params, not inside the package functions that tests call in-process.
    """
    if not device.cpu_deterministic or resolve_device(device.type).type != "cpu":
        return {}
    try:
        return pin_cpu_determinism(device.num_threads)
    except RuntimeError as error:  # e.g. a CPU without AVX2, or a torch op that ran first
        raise CitypipeError(f"device.cpu_deterministic: {error} (or set device.cpu_deterministic: false)") from None
