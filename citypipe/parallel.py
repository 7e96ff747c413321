"""Map a function over jobs in worker processes or threads (or inline for workers=1), with a progress bar."""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

from tqdm import tqdm

Job = TypeVar("Job")
Result = TypeVar("Result")


def map_with_progress(fn: Callable[[Job], Result], jobs: list[Job], workers: int, desc: str,
                      threads: bool = False) -> list[Result]:
    """Results in job order; the first exception stops the map and is raised.

    threads=True suits work that releases the GIL (codecs, numpy); otherwise workers are
    spawned processes (not forked: safe with torch threads already running).
    """
    results: list[Result] = []
    with tqdm(total=len(jobs), desc=desc, unit="img") as progress:
        if workers > 1 and threads:
            with ThreadPoolExecutor(workers) as pool:
                for result in pool.map(fn, jobs):  # on an error, map cancels the jobs not yet started
                    results.append(result)
                    progress.update()
        elif workers > 1:
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
