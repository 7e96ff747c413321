"""Compare experiments side by side: the params that differ, the headline metrics with their change from a
baseline (and the bootstrap interval where eval.json has one), and the classes whose IoU moved most.

Pure functions over `{experiment name: (params, eval metrics)}`; `collect_experiments` at the end is the one
that asks DVC (`dvc exp show --json`) and git."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from citypipe.errors import CitypipeError

HEADLINE = ("miou", "pixel_acc", "iiou")

Experiments = dict[str, tuple[dict[str, Any], dict[str, Any]]]  # name -> (params, eval metrics)


def flatten(nested: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 0.02}} -> {"train.lr": 0.02}; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def differing_params(params: dict[str, dict[str, Any]]) -> list[str]:
    """Dotted param names whose value is not the same in every experiment, in params.yaml order."""
    flat = [flatten(p) for p in params.values()]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    return [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flat}) > 1]


def _param_text(value: Any) -> str:
    """Params as params.yaml writes them (0.02, [512, 1024], true); missing ones as '-'."""
    return "-" if value is None else json.dumps(value) if isinstance(value, (list, bool)) else str(value)


def _mapping(value: Any) -> dict[str, Any]:
    """class_iou as a mapping; anything else (null, a list DVC dropped, a number) as no classes."""
    return value if isinstance(value, dict) else {}


def _number(metrics: dict[str, Any], key: str) -> float:
    value = metrics.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _interval(metrics: dict[str, Any], key: str) -> str:
    """The bootstrap interval eval.json gives as KEY_ci95_low / KEY_ci95_high (flat numbers, which
    `dvc exp show` and `dvc metrics diff` show; they drop lists); '' where there is none."""
    low, high = _number(metrics, f"{key}_ci95_low"), _number(metrics, f"{key}_ci95_high")
    return "" if math.isnan(low) or math.isnan(high) else f"[{low:.4f}, {high:.4f}]"


def headline_table(experiments: Experiments, baseline: str) -> pd.DataFrame:
    """One row per experiment (baseline first): differing params, then each headline metric, its change from the
    baseline and its 95% interval (a column only when some experiment has one)."""
    if baseline not in experiments:
        raise CitypipeError(f"--baseline {baseline}: no such experiment (have: {', '.join(experiments)})")
    names = [baseline, *(n for n in experiments if n != baseline)]
    params = {n: experiments[n][0] for n in names}
    changed = differing_params(params)
    base_metrics = experiments[baseline][1]
    rows = []
    for name in names:
        flat, metrics = flatten(params[name]), experiments[name][1]
        row: dict[str, Any] = {key: _param_text(flat.get(key)) for key in changed}
        for key in HEADLINE:
            value = _number(metrics, key)
            row[key] = value
            row[f"Δ{key}"] = math.nan if name == baseline else value - _number(base_metrics, key)
            row[f"{key} ci95"] = _interval(metrics, key)
        rows.append(row)
    frame = pd.DataFrame(rows, index=pd.Index(names, name="experiment"))
    empty = [c for c in frame.columns if c.endswith(" ci95") and not frame[c].astype(bool).any()]
    return frame.drop(columns=empty)


def moved_classes(experiments: Experiments, baseline: str, top: int, key: str = "class_iou") -> pd.DataFrame:
    """The `top` classes whose IoU changed most (largest |change| in any experiment) vs the baseline:
    a row per class with the baseline's IoU and each experiment's change."""
    base = _mapping(experiments[baseline][1].get(key))
    others = [n for n in experiments if n != baseline]
    # a class absent from prediction and ground truth is null in eval_classes.json: NaN here, '-' when shown
    changes = pd.DataFrame({n: {c: _number(_mapping(experiments[n][1].get(key)), c) - _number(base, c) for c in base}
                            for n in others}, index=list(base))
    if changes.empty or top <= 0:
        return pd.DataFrame(columns=[f"{baseline} (baseline)", *(f"Δ {n}" for n in others)])
    order = changes.abs().max(axis=1).sort_values(ascending=False, kind="stable").index[:top]
    table = changes.loc[order].rename(columns=lambda n: f"Δ {n}")
    table.insert(0, f"{baseline} (baseline)", [_number(base, c) for c in order])
    table.index.name = "class"
    return table


def _cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Numbers as text: 4 decimals, changes signed, missing values as '-'."""
    def cell(column: str, value: Any) -> str:
        if isinstance(value, float):
            if math.isnan(value):
                return "-"
            return f"{value:+.4f}" if column.startswith("Δ") else f"{value:.4f}"
        return str(value)

    return pd.DataFrame({c: [cell(c, v) for v in frame[c]] for c in frame.columns}, index=frame.index)


def render(frame: pd.DataFrame, markdown: bool) -> str:
    """A plain text table, or a Markdown one (`--md`) for a pull request."""
    cells = _cells(frame)
    if markdown:
        return cells.to_markdown(stralign="right", disable_numparse=True)
    return cells.to_string()


def report(experiments: Experiments, baseline: str, top: int, markdown: bool) -> str:
    parts = [render(headline_table(experiments, baseline), markdown)]
    classes = moved_classes(experiments, baseline, top)
    if len(classes) and len(classes.columns) > 1:
        title = f"Classes whose IoU moved most vs {baseline}"
        parts.append(f"### {title}" if markdown else f"{title}:")
        parts.append(render(classes, markdown))
    return "\n\n".join(parts) + "\n"


def _eval_metrics(metrics_by_file: dict[str, Any], eval_file: str, name: str = "workspace") -> dict[str, Any]:
    """Merge eval_file and its siblings (metrics/eval.json + metrics/eval_classes.json) of one exp show entry.
    A file DVC could not read, or one that is not a JSON object of metrics, is an error naming it: its
    row would otherwise show as an experiment without scores."""
    prefix = eval_file.removesuffix(".json")
    merged: dict[str, Any] = {}
    for path, content in sorted((metrics_by_file or {}).items()):
        if not path.startswith(prefix):
            continue
        content = content if isinstance(content, dict) else {}
        if content.get("error"):
            message = (content["error"] or {}).get("msg") if isinstance(content["error"], dict) else content["error"]
            raise CitypipeError(f"{path} ({name}): unreadable metrics file ({' '.join(str(message).split())})")
        data = content.get("data")
        if data is not None and not isinstance(data, dict):
            raise CitypipeError(f"{path} ({name}): expected a JSON object of metrics, got {type(data).__name__}")
        merged.update(data or {})
    return merged


def _params(params_by_file: dict[str, Any]) -> dict[str, Any]:
    return ((params_by_file or {}).get("params.yaml") or {}).get("data") or {}


def experiments_from_exp_show(entries: list[dict[str, Any]], eval_file: str = "metrics/eval.json",
                              ) -> tuple[Experiments, dict[str, str]]:
    """`dvc exp show --json` -> ({name: (params, eval metrics)}, {name: git rev}); the workspace is
    "workspace", a baseline commit its branch name, an experiment its name. Entries with errors are skipped."""
    experiments: Experiments = {}
    revs: dict[str, str] = {}

    def add(name: str, state: dict[str, Any]) -> None:
        data = state.get("data")
        if state.get("error") or not data:
            return
        experiments[name] = (_params(data.get("params")), _eval_metrics(data.get("metrics"), eval_file, name))
        revs[name] = state["rev"]

    for entry in entries:
        workspace = entry["rev"] == "workspace"
        add("workspace" if workspace else entry.get("name") or entry["rev"][:7], entry)
        for exp_range in entry.get("experiments") or []:
            state = exp_range["revs"][0]
            add(exp_range.get("name") or state.get("name") or state["rev"][:7], state)
    return experiments, revs


def _run(command: list[str], cwd: Path) -> str:
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    except OSError as error:
        raise CitypipeError(f"{command[0]}: cannot run ({error.strerror})") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise CitypipeError(f"{' '.join(command[:4])}: failed in {cwd} ({last})")
    return result.stdout


def collect_experiments(repo: Path, all_branches: bool, eval_file: str = "metrics/eval.json") -> tuple[Experiments, str]:
    """({name: (params, eval metrics)}, the name of HEAD's baseline row) from `dvc exp show --json` in `repo`."""
    command = [sys.executable, "-m", "dvc", "exp", "show", "--json", *(["--all-branches"] if all_branches else [])]
    entries = json.loads(_run(command, repo))
    experiments, revs = experiments_from_exp_show(entries, eval_file)
    head = _run(["git", "rev-parse", "HEAD"], repo).strip()
    baseline = next((n for n, r in revs.items() if r == head), "workspace")
    return experiments, baseline
