"""device.processes: a stage that reads it starts itself again under torch's own launcher.

With `device.processes: N > 1`, `python stages/train.py ARGS` (what dvc.yaml runs) becomes, inside that
same process, `python -m torch.distributed.run --standalone --nproc_per_node=N -- stages/train.py ARGS`:
N worker processes on this machine, one per GPU (or N CPU processes with gloo), while DVC still sees
one stage and one exit status. A worker finds torchrun's WORLD_SIZE / LOCAL_RANK in its environment
and so never launches again; for the same reason, a stage started under torchrun by hand (multi-node:
torchrun --nnodes ... --rdzv-endpoint ...) runs as it is told, whatever device.processes says.

No torch import at module level: the decision is made before a stage loads torch, and a run of one
process never loads torch.distributed.run at all.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

# torchrun sets both in every worker; either one means this process is already a worker
WORKER_VARIABLES = ("WORLD_SIZE", "LOCAL_RANK")


def is_worker(environ: Mapping[str, str] = os.environ) -> bool:
    return any(name in environ for name in WORKER_VARIABLES)


def needs_launch(processes: int, environ: Mapping[str, str] = os.environ) -> bool:
    return processes > 1 and not is_worker(environ)


def launcher_arguments(processes: int, argv: Sequence[str]) -> list[str]:
    """torch.distributed.run's command line that runs `argv` (this stage's own: script, then its arguments)
    in `processes` local workers. --standalone: a rendezvous on a free localhost port, so two runs on one
    machine never collide. '--' before the script: torchrun's parser would otherwise read the stage's own
    options as abbreviations of its own (train's --log is 'ambiguous', matching --log-dir and others)."""
    return ["--standalone", f"--nproc_per_node={processes}", "--", argv[0], *argv[1:]]


def worker_threads(processes: int, num_threads: int, cores: int | None) -> int:
    """Each worker's OMP_NUM_THREADS (unless the environment sets it): device.num_threads, which is per
    process; for 0 (torch's default), the machine's cores shared out, instead of torchrun's 1 (slow) or
    torch's all cores in every process (N x oversubscribed)."""
    return num_threads if num_threads > 0 else max(1, (cores or 1) // processes)


def failure_message(processes: int, failures: Mapping[int, object]) -> str:
    """One line for a failed multi-process run, from torch's ProcessFailure records (rank -> .exitcode, .timestamp)."""
    first = min(failures, key=lambda rank: getattr(failures[rank], "timestamp", 0))
    failure = failures[first]
    code = failure.exitcode
    how = f"exited with status {code}" if code >= 0 else f"was killed by signal {-code} ({_signal_name(-code)})"
    # ranks stopped by the launcher after the first failure (negative codes) are not failures of their own
    others = sorted(rank for rank in failures if rank != first and failures[rank].exitcode > 0)
    also = f"; rank{'s' if len(others) > 1 else ''} {', '.join(map(str, others))} failed too" if others else ""
    return (f"device.processes: rank {first} of {processes} {how} (its own error is above){also}; "
            "every process of the run was stopped")


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


def run_under_torchrun(processes: int, num_threads: int) -> None:
    """Return at once when this process should do the stage's work itself (one process, or a torchrun
    worker); otherwise run this same command in `processes` workers and exit with the run's status:
    0 when every worker succeeded, 1 with one 'error:' line naming the first failed rank otherwise.
    `num_threads`: device.num_threads, each worker's CPU threads (0: the cores shared out)."""
    if not needs_launch(processes):
        return
    _launch(processes, num_threads)


def _launch(processes: int, num_threads: int) -> NoReturn:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    os.environ.setdefault("OMP_NUM_THREADS", str(worker_threads(processes, num_threads, os.cpu_count())))
    args = get_args_parser().parse_args(launcher_arguments(processes, sys.argv))
    try:
        run(args)
    except ChildFailedError as error:
        print(f"error: {failure_message(processes, error.failures)}", file=sys.stderr, flush=True)
        sys.exit(1)
    except SignalException as error:  # the stage was cancelled (dvc's Ctrl-C, a kill): the workers are stopped
        print(f"error: device.processes: stopped by {error.sigval.name}; every process of the run was stopped",
              file=sys.stderr, flush=True)
        sys.exit(1)
    sys.exit(0)
