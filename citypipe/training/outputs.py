"""What the train stage writes besides checkpoints: per-epoch series for `dvc plots`, final metrics."""
from __future__ import annotations

import math
from pathlib import Path

from citypipe.atomic import write_json, write_text


def history_tsv(history: list[dict], columns: tuple[str, ...]) -> str:
    """Rows of `history` that have all `columns` (validation runs every N epochs only)."""
    lines = ["\t".join(columns)]
    for row in history:
        if all(c in row for c in columns):
            lines.append("\t".join(f"{row[c]:.6g}" if isinstance(row[c], float) else str(row[c]) for c in columns))
    return "\n".join(lines) + "\n"


def write_train_outputs(history: list[dict], best_miou: float, best_epoch: int, plots_dir: Path, metrics_path: Path) -> None:
    plots_dir = Path(plots_dir)
    write_text(plots_dir / "loss.tsv", history_tsv(history, ("epoch", "loss", "lr")))
    write_text(plots_dir / "val.tsv", history_tsv(history, ("epoch", "val_miou", "val_pixel_acc")))
    last = history[-1]
    last_val = next((r for r in reversed(history) if "val_miou" in r), {})
    write_json(metrics_path, {
        "epochs": last["epoch"],
        "final_loss": last["loss"],
        "val_miou": last_val.get("val_miou", math.nan),
        "val_pixel_acc": last_val.get("val_pixel_acc", math.nan),
        "best_val_miou": best_miou if best_miou >= 0 else math.nan,
        "best_epoch": best_epoch,
    })
