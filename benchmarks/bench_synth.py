"""CitySynth generation speed (images/s, all files of a frame) at the demo size and at 1024x2048.

    python benchmarks/bench_synth.py
"""
import tempfile
import time
from pathlib import Path

from common import machine, table

from citypipe.synth.writer import synthesize


def main() -> None:
    rows = []
    for (height, width, count) in ((128, 256, 60), (1024, 2048, 8)):
        for workers in (1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                synthesize(Path(tmp) / "d", 0, height, width, {"train": count, "val": 1, "test": 1},
                           {"train": ("aachen",), "val": ("lindau",), "test": ("bonn",)}, workers)
                rows.append((f"{height}x{width}", workers, f"{(count + 2) / (time.perf_counter() - start):.1f}"))
    print(f"CitySynth generation; {machine()}")
    print(table(rows, ("size", "workers", "images/s")))


if __name__ == "__main__":
    main()
