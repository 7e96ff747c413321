"""What the stage scripts and the `citypipe` command share: one-line errors (bad input, out of memory)
and common click options."""
from __future__ import annotations

import functools
import re
import sys
from typing import Any, Callable

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
        sys.exit(1)

    return wrapper


params_option = click.option("--params", "params_path", default="params.yaml", show_default=True,
                             type=click.Path(dir_okay=False), help="The pipeline's params.yaml.")
# the inputs several stages read; dvc.yaml's commands give every path (the one place that owns them)
cache_option = click.option("--cache", required=True, type=click.Path(file_okay=False),
                            help="prepare-labels' trainId cache (read).")
data_root_option = click.option("--data-root", required=True, type=click.Path(file_okay=False),
                                help="The dataset in the official layout (read); dvc.yaml passes ${data.root}.")
checkpoints_option = click.option("--checkpoints", required=True, type=click.Path(file_okay=False),
                                  help="The train stage's folder; inference.checkpoint picks best.pt or last.pt (read).")
