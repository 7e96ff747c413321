"""DVC's own views of the committed demo stay readable: `dvc metrics show` holds the headline numbers only
(no per-class or per-corruption columns), so it fits a wide terminal. Reads the committed metrics files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PER_CLASS_WORDS = ("class", "category", "corruptions", "road", "fog")
MAX_WIDTH = 360  # a third of the 1079 columns it had with the per-class tables in it


def _declared_metrics() -> list[str]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return [next(iter(entry)) if isinstance(entry, dict) else entry
            for stage in stages.values() for entry in stage.get("metrics", [])]


def _keys(data: dict, prefix: str = "") -> list[str]:
    return [k for key, value in data.items()
            for k in (_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"])]


def test_dvc_metrics_are_headline_numbers_only():
    declared = _declared_metrics()
    assert "metrics/eval.json" in declared and "metrics/eval_classes.json" not in declared
    for path in declared:
        keys = _keys(json.loads((REPO / path).read_text()))
        assert len(keys) <= 8, (path, keys)
        assert not [k for k in keys if any(word in k for word in PER_CLASS_WORDS)], (path, keys)


def test_dvc_metrics_show_fits_a_third_of_its_old_width():
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "COLUMNS": "1000"}
    result = subprocess.run([sys.executable, "-m", "dvc", "metrics", "show"], cwd=REPO, capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = lines[0].split()
    assert header[0] == "Path" and "miou" in header and "ratio" in header and "fp32.miou" in header
    assert max(len(line.rstrip()) for line in lines) <= MAX_WIDTH, lines[0]
