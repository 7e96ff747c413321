"""What the train stage writes besides checkpoints: per-epoch metrics and series (DVCLive), and a text log."""
from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from citypipe.atomic import io_error

# vary run to run: the text log and progress bar only, never DVC. first_step_seconds: the epoch's first
# step, the device waited for (with device.compile, epoch 1's holds the compiling); steady_images_per_second:
# the steps after it, so whether compiling paid is read off one log line.
TIMINGS = ("seconds", "images_per_second", "first_step_seconds", "steady_images_per_second")
# the run so far (training and validation) and the time its remaining epochs will take at this run's pace
PROGRESS = ("elapsed_seconds", "eta_seconds")


def live_name(key: str) -> str:
    """History keys -> DVCLive metric names: val_miou -> val/miou, loss -> train/loss, lr -> train/learning_rate
    (not train/lr: `dvc exp show` would then have two train.lr columns, the param and the metric)."""
    if key == "lr":
        return "train/learning_rate"
    return f"val/{key[4:]}" if key.startswith("val_") else f"train/{key}"


def _six_digits(value: float) -> float:
    return float(f"{float(value):.6g}")  # as the TSVs always had it: diffs and `dvc exp show` stay readable


def params_hash(run_params: dict) -> str:
    """12 hex digits of the sha256 of the run's params (as the checkpoint records them): two log headers with
    the same hash trained with the same settings and inputs."""
    return hashlib.sha256(json.dumps(run_params, sort_keys=True, default=str).encode()).hexdigest()[:12]


def git_commit(folder: Path) -> str:
    """`git describe --always --dirty` of the repository holding `folder`; 'unknown' outside one."""
    try:
        result = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=folder, capture_output=True,
                                text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else "unknown"


def run_header(commit: str, params_digest: str, device: str, resumed_after: int | None, now: datetime) -> str:
    """One line that opens each run in logs/train.log (the log appends, run after run)."""
    start = f"resumed after epoch {resumed_after}" if resumed_after is not None else "from scratch"
    return (f"== run {now.astimezone(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}  commit {commit}  "
            f"params {params_digest}  device {device}  {start}")


def eta_seconds(elapsed: float, epochs_run: int, epochs_left: int) -> float:
    """The remaining epochs at the mean pace of the epochs this process ran (validation included)."""
    return elapsed / max(1, epochs_run) * epochs_left


def text_line(row: dict) -> str:
    """One epoch for logs/train.log: 'epoch 3  loss 0.4312  lr 0.0183  seconds 12.3  images_per_second 45.6'."""
    return "  ".join(f"{key} {value:.6g}" if isinstance(value, float) else f"{key} {value}" for key, value in row.items())


class TrainLog:
    """The train stage's per-epoch record: metrics and plots through DVCLive (LIVE_DIR/metrics.json, rewritten each
    epoch, so `dvc exp show` has live rows during `dvc exp run`; LIVE_DIR/plots/metrics/{train,val}/*.tsv, step =
    epoch, no timestamps), timings in a plain-text log that DVC does not track.

    A resumed run passes the checkpoint's history: the DVCLive files are rebuilt from it, so they are byte-identical
    to an uninterrupted run's whenever the run was stopped (DVCLive's own resume=True appends to the TSVs, repeats
    an epoch that was logged but not checkpointed, and logs step 0 twice after a one-epoch run).
    """

    def __init__(self, live_dir: Path, text_log: Path, history: list[dict] = (), header: str | None = None):
        from dvclive import Live  # imports DVC: only where training runs

        self._text_log = Path(text_log)
        if header is None:
            resumed = history[-1]["epoch"] if history else None
            header = run_header("unknown", "unknown", "unknown", resumed, datetime.now(timezone.utc))
        # the log first: an unwritable log stops the run before DVCLive clears its folder, and in one line
        self._append(header)
        self._live = Live(dir=str(live_dir), resume=False, report=None, save_dvc_exp=False, dvcyaml=None)
        for row in history:
            self._log_live(row)

    def _log_live(self, row: dict) -> None:
        self._live.step = int(row["epoch"])
        for key, value in row.items():
            if key != "epoch" and key not in TIMINGS + PROGRESS:
                self._live.log_metric(live_name(key), _six_digits(value))
        self._live.next_step()  # writes metrics.json and the step's rows

    def log_epoch(self, row: dict) -> None:
        """{"epoch": 3, "loss": ..., "lr": ..., "seconds": ..., "images_per_second": ..., ["val_miou": ...]}."""
        self._log_live(row)
        self._append(text_line(row))

    def _append(self, line: str) -> None:
        """Appends: earlier runs' lines stay, each under its header."""
        try:
            self._text_log.parent.mkdir(parents=True, exist_ok=True)
            with self._text_log.open("a") as log:
                log.write(line + "\n")
        except OSError as error:
            raise io_error(self._text_log, error, "cannot append to the train log") from None

    def finish(self, best_miou: float, best_epoch: int) -> None:
        """The run's summary: the last epoch's values plus the best validation mIoU and its epoch."""
        if best_miou >= 0:
            self._live.log_metric("val/best_miou", _six_digits(best_miou), plot=False)
            self._live.log_metric("val/best_epoch", int(best_epoch), plot=False)
        self._live.end()
