"""Map a function over jobs in worker processes (or inline for workers=1), with a progress bar."""
from __future__ import annotations

import multiprocessing
from typing import Callable, Iterable, TypeVar

from tqdm import tqdm

Job = TypeVar("Job")
Result = TypeVar("Result")


def map_with_progress(fn: Callable[[Job], Result], jobs: list[Job], workers: int, desc: str) -> list[Result]:
    """Results in job order. Workers are spawned (not forked): safe with torch threads already running."""
    results: list[Result] = []
    with tqdm(total=len(jobs), desc=desc, unit="img") as progress:
        if workers > 1:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                results_iter: Iterable[Result] = pool.imap(fn, jobs, chunksize=max(1, min(8, len(jobs) // (4 * workers))))
                for result in results_iter:
                    results.append(result)
                    progress.update()
        else:
            for job in jobs:
                results.append(fn(job))
                progress.update()
    return results
