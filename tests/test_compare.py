import math
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from citypipe.cli import main
from citypipe.compare import (
    differing_params,
    experiments_from_exp_show,
    headline_table,
    moved_classes,
    report,
)
from citypipe.errors import CitypipeError


def _exp(lr, miou, classes, epochs=12, ci=None):
    metrics = {"miou": miou, "pixel_acc": 0.9 + lr, "iiou": miou / 2, "class_iou": classes}
    if ci:
        metrics["miou_ci95_low"], metrics["miou_ci95_high"] = ci
    return {"train": {"lr": lr, "epochs": epochs, "crop_size": [128, 256]}, "model": {"arch": "deeplabv3plus"}}, metrics


EXPERIMENTS = {
    "main": _exp(0.02, 0.50, {"road": 0.90, "car": 0.40, "bus": 0.10, "sky": 0.80}, ci=[0.48, 0.52]),
    "lr05": _exp(0.05, 0.55, {"road": 0.91, "car": 0.50, "bus": 0.05, "sky": 0.80}),
    "long": _exp(0.02, 0.47, {"road": 0.90, "car": 0.41, "bus": 0.30, "sky": 0.79}, epochs=24, ci=[0.45, 0.49]),
}


def test_only_the_params_that_differ_are_columns():
    assert differing_params({n: p for n, (p, _) in EXPERIMENTS.items()}) == ["train.lr", "train.epochs"]
    assert differing_params({"a": {"x": [1, 2]}, "b": {"x": [1, 2]}, "c": {"x": [1, 3]}}) == ["x"]
    assert differing_params({"a": {"x": 1}, "b": {}}) == ["x"]  # a key one experiment lacks differs


def test_headline_table_has_deltas_to_the_baseline_and_intervals_where_present():
    table = headline_table(EXPERIMENTS, "main")
    assert list(table.index) == ["main", "lr05", "long"]
    assert list(table.columns) == ["train.lr", "train.epochs", "miou", "Δmiou", "miou ci95", "pixel_acc", "Δpixel_acc",
                                   "iiou", "Δiiou"]  # no pixel_acc / iiou interval anywhere: no column
    assert table.loc["lr05", "Δmiou"] == pytest.approx(0.05) and table.loc["long", "Δmiou"] == pytest.approx(-0.03)
    assert math.isnan(table.loc["main", "Δmiou"])
    assert table.loc["main", "miou ci95"] == "[0.4800, 0.5200]" and table.loc["lr05", "miou ci95"] == ""
    assert table.loc["long", "train.epochs"] == "24"
    other = headline_table(EXPERIMENTS, "lr05")
    assert list(other.index)[0] == "lr05" and other.loc["main", "Δmiou"] == pytest.approx(-0.05)


def test_headline_table_without_intervals_or_a_metric():
    experiments = {"a": ({"x": 1}, {"miou": 0.5}), "b": ({"x": 2}, {"miou": 0.6, "pixel_acc": 0.9})}
    table = headline_table(experiments, "a")
    assert not any(c.endswith("ci95") for c in table.columns)
    assert math.isnan(table.loc["b", "Δpixel_acc"])  # the baseline has none
    with pytest.raises(CitypipeError, match="--baseline nope: no such experiment"):
        headline_table(experiments, "nope")


def test_moved_classes_are_the_largest_changes_in_any_experiment():
    table = moved_classes(EXPERIMENTS, "main", 2)
    assert list(table.index) == ["bus", "car"]  # bus +0.20 (long), car +0.10 (lr05); road, sky moved 0.01
    assert list(table.columns) == ["main (baseline)", "Δ lr05", "Δ long"]
    assert table.loc["bus", "Δ long"] == pytest.approx(0.2) and table.loc["bus", "main (baseline)"] == 0.1
    assert len(moved_classes(EXPERIMENTS, "main", 0)) == 0


def test_a_class_absent_from_the_baseline_is_a_gap_not_a_crash():
    """eval_classes.json writes a class absent from prediction and ground truth as null."""
    experiments = {"main": _exp(0.02, 0.5, {"road": 0.9, "bus": None}), "lr05": _exp(0.05, 0.55, {"road": 0.8, "bus": 0.1})}
    table = moved_classes(experiments, "main", 2)
    assert list(table.index)[0] == "road" and table.loc["road", "Δ lr05"] == pytest.approx(-0.1)
    assert math.isnan(table.loc["bus", "main (baseline)"]) and math.isnan(table.loc["bus", "Δ lr05"])


def test_report_as_text_and_markdown():
    text = report(EXPERIMENTS, "main", 2, markdown=False)
    assert "+0.0500" in text and "-0.0300" in text and "[0.4800, 0.5200]" in text and "Classes whose IoU" in text
    assert "|" not in text
    md = report(EXPERIMENTS, "main", 2, markdown=True)
    lines = md.splitlines()
    assert lines[0].startswith("| ") and "Δmiou" in lines[0] and set(lines[1]) <= {"|", "-", ":"}
    assert "### Classes whose IoU moved most vs main" in md and "+0.2000" in md


EXP_SHOW = [  # `dvc exp show --json`, trimmed (dvc 3.67.1)
    {"rev": "workspace", "name": None, "error": None, "experiments": None, "data": {
        "rev": "workspace", "params": {"params.yaml": {"data": {"train": {"lr": 0.05}}}},
        "metrics": {"metrics/eval.json": {"data": {"miou": 0.55}}}}},
    {"rev": "bc17728", "name": "main", "error": None, "data": {
        "rev": "bc17728", "params": {"params.yaml": {"data": {"train": {"lr": 0.02}}}},
        "metrics": {"metrics/eval.json": {"data": {"miou": 0.52}},
                    "metrics/eval_classes.json": {"data": {"class_iou": {"road": 0.9}}},
                    "metrics/train.json": {"data": {"final_loss": 0.3}}}},
     "experiments": [
         {"name": "lr01", "executor": None, "revs": [{"rev": "bdb3693", "name": "lr01", "error": None, "data": {
             "rev": "bdb3693", "params": {"params.yaml": {"data": {"train": {"lr": 0.01}}}},
             "metrics": {"metrics/eval.json": {"data": {"miou": 0.51}}}}}]},
         {"name": "broken", "executor": None, "revs": [{"rev": "0000000", "name": "broken", "data": None,
                                                         "error": {"msg": "failed"}}]}]},
]


def test_experiments_from_exp_show_json():
    experiments, revs = experiments_from_exp_show(EXP_SHOW)
    assert list(experiments) == ["workspace", "main", "lr01"]  # the failed one is left out
    assert experiments["main"] == ({"train": {"lr": 0.02}}, {"miou": 0.52, "class_iou": {"road": 0.9}})
    assert revs == {"workspace": "workspace", "main": "bc17728", "lr01": "bdb3693"}


STAGE = """
import json, yaml
lr = yaml.safe_load(open("params.yaml"))["train"]["lr"]
json.dump({"miou": 0.5 + lr, "pixel_acc": 0.9, "iiou": 0.3, "miou_ci95_low": 0.49 + lr, "miou_ci95_high": 0.51 + lr,
           "class_iou": {"road": 0.9, "car": 0.2 + 3 * lr}}, open("eval.json", "w"))
"""


def test_compare_command_on_a_real_dvc_repo(tmp_path):
    """A tiny DVC project (one stage, one `dvc exp run`): about 4 s."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}

    def run(*command):
        subprocess.run(command, cwd=tmp_path, env=env, check=True, capture_output=True)

    (tmp_path / "params.yaml").write_text("train:\n  lr: 0.02\n  epochs: 2\n")
    (tmp_path / "stage.py").write_text(STAGE)
    (tmp_path / "dvc.yaml").write_text("stages:\n  evaluate:\n    cmd: python stage.py\n    deps: [stage.py]\n"
                                       "    params: [train]\n    metrics:\n      - eval.json:\n          cache: false\n")
    run("git", "init", "-q", "-b", "main")
    run(sys.executable, "-m", "dvc", "init", "-q")
    run(sys.executable, "-m", "dvc", "repro", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "baseline")
    run(sys.executable, "-m", "dvc", "exp", "run", "-q", "-S", "train.lr=0.05", "-n", "lr05")
    result = CliRunner().invoke(main, ["compare", "--repo", str(tmp_path), "--top-classes", "1", "--metrics", "eval.json"])
    assert result.exit_code == 0, result.output
    rows = result.output.splitlines()
    assert rows[2].split()[:4] == ["main", "0.02", "0.5200", "-"]  # HEAD's commit is the default baseline
    assert any(r.split()[:4] == ["lr05", "0.05", "0.5500", "+0.0300"] for r in rows)
    assert "[0.5400, 0.5600]" in result.output  # intervals read from the file: exp show drops lists
    assert "car" in result.output and "road" not in result.output


@pytest.mark.parametrize("content, message", [
    ({"error": {"type": "JSONFileCorruptedError", "msg": "unable to read: 'metrics/eval.json', JSON file structure is "
                                                         "corrupted"}},
     "metrics/eval.json (lr01): unreadable metrics file (unable to read: 'metrics/eval.json', JSON file structure is corrupted)"),
    ({"data": "text"}, "metrics/eval.json (lr01): expected a JSON object of metrics, got str"),
    ({"data": [0.5]}, "metrics/eval.json (lr01): expected a JSON object of metrics, got list"),
], ids=["corrupt", "a-string", "a-list"])
def test_a_broken_eval_json_is_one_line_naming_it(content, message):
    """A row without scores would otherwise look like an experiment that scored nothing."""
    import copy

    entries = copy.deepcopy(EXP_SHOW)
    entries[1]["experiments"][0]["revs"][0]["data"]["metrics"]["metrics/eval.json"] = content
    with pytest.raises(CitypipeError) as error:
        experiments_from_exp_show(entries)
    assert str(error.value) == message


def test_class_iou_that_is_not_a_mapping_is_no_classes():
    experiments = {"main": _exp(0.02, 0.5, [0.9, 0.1]), "lr05": _exp(0.05, 0.55, 7)}
    assert len(moved_classes(experiments, "main", 3)) == 0
    assert "main" in report(experiments, "main", 3, markdown=False)
