"""The whole demo: `dvc repro` wall time in a fresh clone of this repository (install excluded),
then a second, no-op `dvc repro`, and a `dvc exp run -S train.lr=...` that reruns train onwards.

Uses the Python environment it is started from (the one the README's first command builds).

    cd benchmarks && python bench_repro.py [--lr 0.01]
"""
import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from common import machine, table

REPO = Path(__file__).resolve().parents[1]


def timed(command: list[str], cwd: Path) -> tuple[str, str]:
    """(seconds, the stages that ran) for one dvc command."""
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True,
                            env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    seconds = time.perf_counter() - start
    ran = [line.split("'")[1] for line in (result.stdout + result.stderr).splitlines() if line.startswith("Running stage")]
    return f"{seconds:.1f}", ", ".join(ran) or "none"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", default="0.01")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "citypipe"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        rows = [("dvc repro (fresh clone)", *timed(["dvc", "repro"], clone)),
                ("dvc repro again (nothing changed)", *timed(["dvc", "repro"], clone))]
        subprocess.run(["git", "add", "-A"], cwd=clone, check=True)
        subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm",
                        "demo results"], cwd=clone, check=True)
        rows.append((f"dvc exp run -S train.lr={args.lr}", *timed(["dvc", "exp", "run", "-S", f"train.lr={args.lr}"], clone)))
    print(f"The demo pipeline on CitySynth; {os.cpu_count()} CPUs; {machine()}")
    print(table(rows, ("command", "seconds", "stages run")))


if __name__ == "__main__":
    main()
