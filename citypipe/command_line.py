"""What the stage scripts and the `citypipe` command share: one-line errors and common click options."""
from __future__ import annotations

import functools
import sys
from typing import Any, Callable

import click

from citypipe.errors import CitypipeError


def reports_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn CitypipeError into 'error: <message>' on stderr and exit status 1 (no traceback)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except CitypipeError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(1)

    return wrapper


params_option = click.option("--params", "params_path", default="params.yaml", show_default=True,
                             type=click.Path(dir_okay=False), help="The pipeline's params.yaml.")
# the inputs several stages read, with the paths dvc.yaml gives them
cache_option = click.option("--cache", default="data/trainids", show_default=True,
                            help="prepare-labels' trainId cache.")
checkpoint_option = click.option("--checkpoint", default="checkpoints/best.pt", show_default=True,
                                 help="The trained model.")
