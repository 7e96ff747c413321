"""Compare experiments side by side: the params that differ, the headline metrics with their change from a
baseline (and the bootstrap interval where eval.json has one), the classes whose IoU moved most, the paired
bootstrap of each experiment's change against the baseline on the same frames (from the per-image counts
evaluate writes), and the mean and spread of experiments that differ only in train.seed.

Pure functions over `{experiment name: (params, eval metrics)}` and `{name: per-image counts}`;
`collect_experiments`, `read_per_image_counts` and `read_class_metrics` at the end are the ones that ask DVC
and git."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from citypipe.errors import CitypipeError, first_line
from citypipe.evaluation.counts_file import read_counts_array
from citypipe.evaluation.paired import Change, paired_changes
from citypipe.labels import class_names

HEADLINE = ("miou", "pixel_acc", "iiou", "boundary_miou")
PAIRED = ("miou", "boundary_miou")
SEED_KEY = "train.seed"
# metrics/robustness.json's summary, shown beside mIoU where an experiment has it: the mean mIoU over the
# Cityscapes-C sets and its ratio to the clean mIoU of the same frames
ROBUSTNESS_FILE = "metrics/robustness.json"
ROBUSTNESS = {"miou_corrupted": "miou_corrupted", "ratio": "robustness_ratio"}  # file key -> column

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
    shown = [*HEADLINE, *(c for c in ROBUSTNESS.values()
                          if any(not math.isnan(_number(experiments[n][1], c)) for n in names))]
    for name in names:
        flat, metrics = flatten(params[name]), experiments[name][1]
        row: dict[str, Any] = {key: _param_text(flat.get(key)) for key in changed}
        for key in shown:
            value = _number(metrics, key)
            row[key] = value
            row[f"Δ{key}"] = math.nan if name == baseline else value - _number(base_metrics, key)
            row[f"{key} ci95"] = _interval(metrics, key)
        rows.append(row)
    frame = pd.DataFrame(rows, index=pd.Index(names, name="experiment"))
    empty = [c for c in frame.columns if c.endswith(" ci95") and not frame[c].astype(bool).any()]
    missing = [c for key in HEADLINE if frame[key].isna().all() for c in (key, f"Δ{key}")]  # e.g. older eval.json
    return frame.drop(columns=empty + missing)


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


def _signed_interval(change: Change) -> str:
    return "-" if change.low != change.low else f"[{change.low:+.4f}, {change.high:+.4f}]"


def paired_comparisons(counts: dict[str, np.ndarray | None], baseline: str, resamples: int, seed: int,
                       ) -> tuple[pd.DataFrame, dict[str, dict]]:
    """A row per other experiment: the change in mIoU and boundary mIoU against the baseline on the same frames,
    its 95% paired bootstrap interval and a verdict; and {experiment: paired_changes(...)} for the class tables.
    Experiments without per-image counts, or scored on other frames, get a row that says so."""
    base = counts.get(baseline)
    rows, changes = {}, {}
    for name, other in counts.items():
        if name == baseline:
            continue
        row: dict[str, Any] = {}
        try:
            if base is None or other is None:
                raise ValueError("no per-image counts (evaluate before this feature, or not run)")
            changes[name] = paired_changes(base, other, resamples, seed, class_names())
        except ValueError as error:
            rows[name] = {"note": str(error)}
            continue
        for key in PAIRED:
            change = changes[name][key]
            row[f"Δ{key}"], row[f"Δ{key} ci95"], row[f"{key} verdict"] = change.value, _signed_interval(change), change.verdict
        rows[name] = row
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "experiment"
    return frame, changes


def class_change_table(changes: dict[str, dict], key: str = "class_iou") -> pd.DataFrame:
    """A row per class, a column per experiment: 'change [low, high]' of its IoU against the baseline."""
    names = class_names()
    cells = {experiment: ["-" if c.value != c.value else f"{c.value:+.4f} {_signed_interval(c)}"
                          for c in (changed[key][n] for n in names)] for experiment, changed in changes.items()}
    return pd.DataFrame(cells, index=pd.Index(names, name="class"))


def seed_groups(experiments: Experiments) -> list[list[str]]:
    """Groups of experiments whose params are equal except train.seed, one per seed (the workspace only where
    no experiment has its seed: after `dvc exp run` it repeats the last one), with 2+ seeds, in order."""
    groups: dict[str, dict[str, str]] = {}  # params without the seed -> {seed: experiment}
    for name in sorted(experiments, key=lambda n: n == "workspace"):  # stable: the workspace last
        flat = flatten(experiments[name][0])
        rest = json.dumps({k: v for k, v in flat.items() if k != SEED_KEY}, sort_keys=True)
        groups.setdefault(rest, {}).setdefault(json.dumps(flat.get(SEED_KEY)), name)
    order = {n: i for i, n in enumerate(experiments)}
    return [sorted(g.values(), key=order.get) for g in groups.values() if len(g) > 1]


def seed_spread(experiments: Experiments, group: list[str]) -> pd.DataFrame:
    """Mean, sample standard deviation, min and max of each headline metric over one seed group."""
    rows = {}
    for key in HEADLINE:
        values = np.array([_number(experiments[n][1], key) for n in group])
        values = values[~np.isnan(values)]
        if values.size:
            rows[key] = {"n": str(values.size), "mean": values.mean(),
                         "std": values.std(ddof=1) if values.size > 1 else math.nan,
                         "min": values.min(), "max": values.max()}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "metric"
    return frame


def _section(parts: list[str], title: str, frame: pd.DataFrame, markdown: bool) -> None:
    parts.append(f"### {title}" if markdown else f"{title}:")
    parts.append(render(frame, markdown))


def report(experiments: Experiments, baseline: str, top: int, markdown: bool,
           counts: dict[str, np.ndarray | None] | None = None, resamples: int = 1000, seed: int = 0) -> str:
    parts = [render(headline_table(experiments, baseline), markdown)]
    classes = moved_classes(experiments, baseline, top)
    if len(classes) and len(classes.columns) > 1:
        _section(parts, f"Classes whose IoU moved most vs {baseline}", classes, markdown)
    if counts and len(counts) > 1:
        paired, changes = paired_comparisons(counts, baseline, resamples, seed)
        frames = len(counts[baseline]) if counts.get(baseline) is not None else 0
        _section(parts, f"Paired changes vs {baseline} on the same {frames} frames (95% bootstrap, {resamples} "
                        f"resamples of the frames, seed {seed})", paired, markdown)
        if markdown and changes:
            _section(parts, f"Per-class IoU change vs {baseline} [95% paired interval]", class_change_table(changes),
                     markdown)
            _section(parts, f"Per-class boundary IoU change vs {baseline} [95% paired interval]",
                     class_change_table(changes, "class_boundary_iou"), markdown)
    for group in seed_groups(experiments):
        _section(parts, f"Seed spread over {', '.join(group)} (only {SEED_KEY} differs)",
                 seed_spread(experiments, group), markdown)
    return "\n\n".join(parts) + "\n"


def _eval_metrics(metrics_by_file: dict[str, Any], eval_file: str, name: str = "workspace") -> dict[str, Any]:
    """Merge eval_file and any sibling metrics files (metrics/eval*.json) of one exp show entry.
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
    robustness = ((metrics_by_file or {}).get(ROBUSTNESS_FILE) or {}).get("data") or {}
    if isinstance(robustness, dict):
        merged.update({column: robustness[key] for key, column in ROBUSTNESS.items() if key in robustness})
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


def collect_experiments(repo: Path, all_branches: bool, eval_file: str = "metrics/eval.json",
                        ) -> tuple[Experiments, str, dict[str, str]]:
    """({name: (params, eval metrics)}, the name of HEAD's baseline row, {name: git rev}) from
    `dvc exp show --json` in `repo`."""
    command = [sys.executable, "-m", "dvc", "exp", "show", "--json", *(["--all-branches"] if all_branches else [])]
    entries = json.loads(_run(command, repo))
    experiments, revs = experiments_from_exp_show(entries, eval_file)
    head = _run(["git", "rev-parse", "HEAD"], repo).strip()
    baseline = next((n for n, r in revs.items() if r == head), "workspace")
    return experiments, baseline, revs


def check_project_path(option: str, path: str) -> None:
    """A file read at each revision is named relative to the project: DVC reads a path outside it (absolute, or
    climbing out with '..') as absent at every revision, which would silently drop its tables."""
    parts = Path(path).parts
    if not path.strip() or Path(path).is_absolute() or ".." in parts:
        raise CitypipeError(f"{option} {path!r}: expected a file path inside the project, relative to --repo "
                            "(like metrics/eval_classes.json)")


def _read_at_revs(repo: Path, revs: dict[str, str], path: str) -> dict[str, bytes | None]:
    """{name: the bytes of `path` at that experiment's revision}, read through DVC (git-tracked or in the DVC
    cache alike; "workspace" reads the working tree); None where the revision has no such file."""
    import dvc.api  # slow to import: only when comparing
    from dvc.exceptions import DvcException, PathMissingError

    contents: dict[str, bytes | None] = {}
    for name, rev in revs.items():
        try:
            with dvc.api.open(path, repo=str(repo), rev=None if rev == "workspace" else rev, mode="rb") as handle:
                contents[name] = handle.read()
        except (FileNotFoundError, PathMissingError):
            contents[name] = None
        except (DvcException, OSError) as error:  # a folder, an unreadable file, a broken cache
            raise CitypipeError(f"{path}@{name}: cannot read ({first_line(error)})") from None
    return contents


def _read_somewhere(repo: Path, revs: dict[str, str], path: str, option: str | None) -> dict[str, bytes | None]:
    """_read_at_revs; with `option` (the path was given on the command line, not the default), a path that no
    revision has is an error naming it: a misspelt name would otherwise just leave its tables out."""
    contents = _read_at_revs(repo, revs, path)
    if option is not None and revs and all(data is None for data in contents.values()):
        raise CitypipeError(f"{option} {path}: no such file at any revision compared ({', '.join(revs)})")
    return contents


def read_per_image_counts(repo: Path, revs: dict[str, str], path: str,
                          option: str | None = None) -> dict[str, np.ndarray | None]:
    """{name: per_image_counts.npy of that experiment}; None where the revision has no such file (see
    _read_somewhere for `option`)."""
    counts: dict[str, np.ndarray | None] = {}
    for name, data in _read_somewhere(repo, revs, path, option).items():
        try:
            counts[name] = None if data is None else read_counts_array(data, f"{path}@{name}", len(class_names()))
        except ValueError as error:
            raise CitypipeError(str(error)) from None
    return counts


def read_class_metrics(repo: Path, revs: dict[str, str], path: str,
                       option: str | None = None) -> dict[str, dict[str, Any]]:
    """{name: evaluate's per-class tables (metrics/eval_classes.json) of that experiment}, {} where the revision
    has none (see _read_somewhere for `option`). They are a plain output, not a DVC metric (DVC's tables stay
    at the headline numbers), so they are read at each revision rather than from `dvc exp show`."""
    tables: dict[str, dict[str, Any]] = {}
    for name, data in _read_somewhere(repo, revs, path, option).items():
        if data is None:
            tables[name] = {}
            continue
        try:
            content = json.loads(data)
        except ValueError as error:
            raise CitypipeError(f"{path}@{name}: not JSON ({error})") from None
        except RecursionError:
            raise CitypipeError(f"{path}@{name}: JSON nested too deeply to be per-class tables") from None
        if not isinstance(content, dict):
            raise CitypipeError(f"{path}@{name}: expected a JSON object of per-class tables, got {type(content).__name__}")
        tables[name] = content
    return tables
