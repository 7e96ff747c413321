"""What the stage scripts and the `citypipe` command share: one-line errors (bad input, out of memory)
and common click options."""
from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import os
import re
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

import click

from citypipe.errors import CitypipeError, is_out_of_memory


def citypipe_message(error: CitypipeError) -> str:
    """Our one-line message, also when a DataLoader worker raised it: PyTorch re-raises it as
    'Caught CitypipeError in DataLoader worker process 0.' + the worker's traceback, whose last line
    is 'citypipe.errors.CitypipeError: <message>'."""
    text = str(error).strip()
    if "\nOriginal Traceback" not in text:
        return text
    last = text.splitlines()[-1]
    return last.split(": ", 1)[1] if ": " in last else last


def restore_hint(stage: str, root: str) -> str | None:
    """For a stage that failed under `dvc repro` / `dvc exp run` (DVC sets DVC_STAGE and DVC_ROOT): DVC removed
    the stage's outputs before running it, so say how to get the committed ones back: its git-tracked
    outputs (`cache: false`) from git, the others from the DVC cache. None when dvc.yaml cannot be read."""
    import yaml  # here: only a failed stage pays for it

    name = stage.rsplit(":", 1)[-1]  # DVC_STAGE is 'train', or 'dvc.yaml:train' outside the root's dvc.yaml
    try:
        definition = yaml.safe_load((Path(root) / "dvc.yaml").read_text())["stages"][name]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    in_git = [path for kind in ("outs", "metrics", "plots") for entry in definition.get(kind) or []
              if isinstance(entry, dict) for path, options in entry.items() if (options or {}).get("cache") is False]
    git = f"git checkout HEAD -- {' '.join(in_git)} && " if in_git else ""
    return (f"hint: DVC removed stage {name}'s outputs before running it; to get the committed ones back: "
            f"{git}dvc checkout {name}")


def _allocation(error: BaseException) -> str:
    """'RuntimeError allocating 20.00 GiB' from torch's or numpy's long message."""
    found = re.search(r"allocate ([\d.]+ ?[A-Za-z]+)", str(error))
    return f"{type(error).__name__} allocating {found.group(1)}" if found else type(error).__name__


OUT_OF_MEMORY = ("out of memory ({}); use smaller images or batches: inference.size, inference.batch_size, "
                 "train.crop_size, train.batch_size, train.val_batch_size in params.yaml, or --size for citypipe infer")


def reports_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn CitypipeError and running out of memory into 'error: <message>' on stderr and exit status 1
    (no traceback)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except CitypipeError as error:
            click.echo(f"error: {citypipe_message(error)}", err=True)
        except (MemoryError, RuntimeError) as error:
            if not is_out_of_memory(error):
                raise
            click.echo("error: " + OUT_OF_MEMORY.format(_allocation(error)), err=True)
        except OSError as error:  # an I/O fault no writer named: the path the OS gives, else the message
            from citypipe.atomic import io_error  # here: `citypipe --help` does not load numpy

            click.echo(f"error: {io_error(error.filename or '(no path given)', error, 'input/output error')}", err=True)
        if os.environ.get("DVC_STAGE"):
            hint = restore_hint(os.environ["DVC_STAGE"], os.environ.get("DVC_ROOT", "."))
            if hint:
                click.echo(hint, err=True)
        # objects of the failed run (DVCLive's git repository among them) freed now, not at interpreter
        # shutdown, where their finalizers print 'sys.meta_path is None' tracebacks
        gc.collect()
        sys.exit(1)

    return wrapper


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """Linux: have the kernel send SIGTERM to this process when its parent dies, so a killed `dvc repro`
    leaves no orphan stage writing into the outputs that the next run is writing too."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    with contextlib.suppress(AttributeError, OSError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request took effect
        raise CitypipeError("the parent process is gone (its stage was cancelled); not starting")


def memory_keys(error: BaseException, keys_by_code: dict[str, str]) -> str:
    """The params keys behind an out-of-memory error: those of the first code fragment (a path part like
    'citypipe/prediction/') that the allocation's traceback passes through; '' matches any code."""
    files = [frame.filename.replace("\\", "/") for frame in traceback.extract_tb(error.__traceback__)]
    return next((keys for fragment, keys in keys_by_code.items() if not fragment or any(fragment in f for f in files)), "")


def is_main_process() -> bool:
    """Rank 0 under torchrun (device.processes > 1), or a run of one process: the one that writes a stage's
    outputs, logs and DVCLive files, and prints its summary."""
    return os.environ.get("RANK", "0") == "0"


@contextlib.contextmanager
def stage_outputs(*outputs: Any, lock: bool = True, memory: dict[str, str] | None = None,
                  inputs: tuple[Any, ...] = ()) -> Iterator[None]:
    """A stage's run: it stops with its parent, its outputs are separate paths that replace none of its
    `inputs`, are writable (checked before the long work) and no other process writes them meanwhile
    (see atomic.hold_outputs). Running out of memory names the keys that size the work where it ran out
    (`memory`: code fragment -> keys, see memory_keys). Under torchrun (device.processes > 1) only rank 0
    writes, so only rank 0 claims the outputs: the other ranks never touch them (no probe, no lock file)."""
    from citypipe.atomic import hold_outputs

    die_with_parent()
    with hold_outputs(*(outputs if is_main_process() else ()), lock=lock, inputs=inputs):
        try:
            yield
        except (MemoryError, RuntimeError) as error:
            keys = memory_keys(error, memory or {}) if is_out_of_memory(error) else ""
            if not keys:
                raise
            raise CitypipeError(f"out of memory ({_allocation(error)}); lower {keys} in params.yaml") from None


params_option = click.option("--params", "params_path", default="params.yaml", show_default=True,
                             type=click.Path(dir_okay=False), help="The pipeline's params.yaml.")
# the inputs several stages read; dvc.yaml's commands give every path (the one place that owns them)
cache_option = click.option("--cache", required=True, type=click.Path(file_okay=False),
                            help="prepare-labels' trainId cache (read).")
data_root_option = click.option("--data-root", required=True, type=click.Path(file_okay=False),
                                help="The dataset in the official layout (read); dvc.yaml passes ${data.root}.")
checkpoints_option = click.option("--checkpoints", required=True, type=click.Path(file_okay=False),
                                  help="The train stage's folder; inference.checkpoint picks best.pt or last.pt (read).")
