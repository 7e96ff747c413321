"""The custom vega-lite templates in .dvc/plots/ (what `dvc plots show` / `dvc plots diff` draw): legends that
tell revisions apart, and the class-share chart on a log axis over numbers (DVC passes CSV fields as strings).
tests/test_dvc_pipeline.py renders the page in headless Chromium where one is installed."""
import json
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = sorted((REPO / ".dvc" / "plots").glob("*.json"))


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_dash_legends_are_off_beside_point_marks(path):
    """A strokeDash legend draws its entries as the mark's points: identical black dots (the revisions could not be
    told apart in `dvc plots diff`). Revisions are told apart by shape instead."""
    spec = json.loads(path.read_text())
    mark, encoding = spec.get("mark", {}), spec.get("encoding", {})
    if isinstance(mark, dict) and mark.get("point") and "strokeDash" in encoding:
        assert encoding["strokeDash"].get("legend", "missing") is None, path.name
        assert encoding.get("shape", {}).get("field") == encoding["strokeDash"]["field"] == "rev", path.name


def test_class_shares_are_drawn_on_a_log_axis_sorted_by_number():
    plots = {next(iter(p)): next(iter(p.values())) for p in yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
             if isinstance(p, dict)}
    template = json.loads((REPO / ".dvc" / "plots" / f"{plots['class_frequency']['template']}.json").read_text())
    assert template["encoding"]["x"]["scale"]["type"] == "log"
    assert "toNumber" in template["transform"][0]["calculate"]  # "9.5" > "34.6" as strings
    assert template["encoding"]["y"]["sort"]["field"] == template["encoding"]["x"]["field"] == "value"
