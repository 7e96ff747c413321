"""What the stage scripts and the `citypipe` command share: one-line errors (bad input, out of memory)
and common click options."""
from __future__ import annotations

import functools
import re
import sys
from typing import Any, Callable

import click

from citypipe.errors import CitypipeError


def citypipe_message(error: CitypipeError) -> str:
    """Our one-line message, also when a DataLoader worker raised it: PyTorch re-raises it as
    'Caught CitypipeError in DataLoader worker process 0.' + the worker's traceback, whose last line
    is 'citypipe.errors.CitypipeError: <message>'."""
    text = str(error).strip()
    if "\nOriginal Traceback" not in text:
        return text
    last = text.splitlines()[-1]
    return last.split(": ", 1)[1] if ": " in last else last


def is_out_of_memory(error: BaseException) -> bool:
    """torch.OutOfMemoryError (CUDA), MemoryError (numpy), or a RuntimeError from another allocator
    (CPU: "can't allocate memory", MPS: "out of memory"); by name, so that no stage imports torch for it."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def _allocation(error: BaseException) -> str:
    """'RuntimeError allocating 20.00 GiB' from torch's or numpy's long message."""
    found = re.search(r"allocate ([\d.]+ ?[A-Za-z]+)", str(error))
    return f"{type(error).__name__} allocating {found.group(1)}" if found else type(error).__name__


OUT_OF_MEMORY = ("out of memory ({}); use smaller images or batches: evaluate.size, evaluate.batch_size, "
                 "train.crop_size, train.batch_size in params.yaml, or --image-size for citypipe infer")


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
        sys.exit(1)

    return wrapper


params_option = click.option("--params", "params_path", default="params.yaml", show_default=True,
                             type=click.Path(dir_okay=False), help="The pipeline's params.yaml.")
# the inputs several stages read, with the paths dvc.yaml gives them
cache_option = click.option("--cache", default="data/trainids", show_default=True,
                            help="prepare-labels' trainId cache.")
checkpoint_option = click.option("--checkpoint", default="checkpoints/best.pt", show_default=True,
                                 help="The trained model.")
