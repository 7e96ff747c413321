import math
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from citypipe.cli import main
from citypipe.compare import (
    differing_params,
    experiments_from_exp_show,
    headline_table,
    moved_classes,
    report,
    seed_groups,
    seed_spread,
)
from citypipe.errors import CitypipeError
from citypipe.evaluation.paired import paired_changes
from citypipe.labels import class_names


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
import numpy as np
lr = yaml.safe_load(open("params.yaml"))["train"]["lr"]
json.dump({"miou": 0.5 + lr, "pixel_acc": 0.9, "iiou": 0.3, "miou_ci95_low": 0.49 + lr, "miou_ci95_high": 0.51 + lr},
          open("eval.json", "w"))
json.dump({"class_iou": {"road": 0.9, "car": 0.2 + 3 * lr}}, open("classes.json", "w"))  # a plain output, as in dvc.yaml
# per-image counts: 6 frames, errors shrinking with lr (the seed changes nothing)
counts = np.zeros(6, dtype=[("frame_id", "<U8"), ("confusion", "<i8", (19, 19)), ("boundary_intersection", "<i8", (19,)),
                            ("boundary_union", "<i8", (19,))])
counts["frame_id"] = [f"f{i}" for i in range(6)]
counts["confusion"][:, range(19), range(19)] = 100
counts["confusion"][:, 0, 1] = (np.arange(6) + 10) * int(0.1 / lr)
counts["boundary_intersection"], counts["boundary_union"] = 5, 10
np.save("counts.npy", counts)
"""


def test_compare_command_on_a_real_dvc_repo(tmp_path):
    """A tiny DVC project (one stage, one `dvc exp run`): about 4 s."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}

    def run(*command):
        subprocess.run(command, cwd=tmp_path, env=env, check=True, capture_output=True)

    (tmp_path / "params.yaml").write_text("train:\n  lr: 0.02\n  epochs: 2\n  seed: 0\n")
    (tmp_path / "stage.py").write_text(STAGE)
    (tmp_path / "dvc.yaml").write_text("stages:\n  evaluate:\n    cmd: python stage.py\n    deps: [stage.py]\n"
                                       "    params: [train]\n    metrics:\n      - eval.json:\n          cache: false\n"
                                       "    outs:\n      - counts.npy:\n          cache: false\n"
                                       "      - classes.json:\n          cache: false\n")
    run("git", "init", "-q", "-b", "main")
    run(sys.executable, "-m", "dvc", "init", "-q")
    run(sys.executable, "-m", "dvc", "repro", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "baseline")
    run(sys.executable, "-m", "dvc", "exp", "run", "-q", "-S", "train.lr=0.05", "-n", "lr05")
    run(sys.executable, "-m", "dvc", "exp", "run", "-q", "-S", "train.lr=0.02", "-S", "train.seed=1", "-n", "seed1")
    result = CliRunner().invoke(main, ["compare", "--repo", str(tmp_path), "--top-classes", "1", "--metrics", "eval.json",
                                       "--class-metrics", "classes.json", "--per-image-counts", "counts.npy", "--resamples", "100"])
    assert result.exit_code == 0, result.output
    rows = result.output.splitlines()
    assert rows[2].split()[:5] == ["main", "0.02", "0", "0.5200", "-"]  # HEAD's commit is the default baseline
    assert any(r.split()[:5] == ["lr05", "0.05", "0", "0.5500", "+0.0300"] for r in rows)
    assert "[0.5400, 0.5600]" in result.output  # intervals read from the file: exp show drops lists
    assert "car" in result.output and "road" not in result.output
    # the paired section: counts read through DVC at each experiment's revision
    paired = result.output[result.output.index("Paired changes vs main on the same 6 frames"):]
    lines = {line.split()[0]: line for line in paired.splitlines()[1:] if line.split()}
    assert "better" in lines["lr05"] and "[+0.0000, +0.0000]" in lines["seed1"] and "within noise" in lines["seed1"]
    assert "Seed spread over main, seed1 (only train.seed differs)" in result.output  # the workspace is seed1 again


# ---------------------------------------------------------------- paired comparisons (per-image counts)

def _counts(seed: int, n: int = 8, k: int = 19, better: float = 0.0) -> np.ndarray:
    """A structured per-image array as evaluate writes it; `better` moves that share of errors onto the diagonal."""
    rng = np.random.default_rng(seed)
    conf = rng.poisson(rng.uniform(2, 40, size=(n, k, k))).astype(np.int64)
    conf[:, np.arange(k), np.arange(k)] += rng.integers(50, 900, size=(n, k))
    conf[:, 17, :] = conf[:, :, 17] = 0  # a class in neither
    moved = (conf * better).astype(np.int64)
    moved[:, np.arange(k), np.arange(k)] = 0
    conf = conf - moved
    conf[:, np.arange(k), np.arange(k)] += moved.sum(2)
    inter = rng.integers(0, 50, size=(n, k))
    union = inter + rng.integers(0, 50, size=(n, k))
    array = np.zeros(n, dtype=[("frame_id", "<U32"), ("confusion", "<i8", (k, k)), ("boundary_intersection", "<i8", (k,)),
                               ("boundary_union", "<i8", (k,))])
    array["frame_id"] = [f"frankfurt_000000_{i:06d}" for i in range(n)]
    array["confusion"], array["boundary_intersection"], array["boundary_union"] = conf, inter, union
    return array


def _naive_paired(base, other, resamples, seed):
    """The obvious loop: the same draws for both, summed matrices, mIoU class by class."""
    def miou(conf):
        ious = [conf[c, c] / (conf[c].sum() + conf[:, c].sum() - conf[c, c]) for c in range(conf.shape[0])
                if conf[c].sum() + conf[:, c].sum() - conf[c, c] > 0]
        return sum(ious) / len(ious)

    draws = np.random.default_rng(seed).integers(0, len(base), size=(resamples, len(base)))
    deltas = [miou(other["confusion"][row].sum(0)) - miou(base["confusion"][row].sum(0)) for row in draws]
    return np.quantile(deltas, [0.025, 0.975])


def test_identical_experiments_change_by_exactly_zero():
    base = _counts(0)
    changes = paired_changes(base, base.copy(), 300, 1, class_names())
    for key in ("miou", "boundary_miou"):
        assert (changes[key].value, changes[key].low, changes[key].high) == (0.0, 0.0, 0.0)
        assert changes[key].verdict == "within noise"
    assert all(c.value == c.low == c.high == 0.0 for c in changes["class_iou"].values() if c.value == c.value)
    assert math.isnan(changes["class_iou"]["motorcycle"].value)  # trainId 17: in neither experiment


def test_paired_interval_equals_a_loop_and_frame_order_does_not_matter():
    base, other = _counts(0), _counts(0, better=0.3)
    changes = paired_changes(base, other, 200, 5, class_names())
    low, high = _naive_paired(base, other, 200, 5)
    assert changes["miou"].low == pytest.approx(low, rel=1e-12) and changes["miou"].high == pytest.approx(high, rel=1e-12)
    assert changes["miou"].verdict == "better" and paired_changes(other, base, 200, 5, class_names())["miou"].verdict == "worse"
    shuffled = other[np.random.default_rng(0).permutation(len(other))]
    assert paired_changes(base, shuffled, 200, 5, class_names())["miou"] == changes["miou"]
    with pytest.raises(ValueError, match="not scored on the same frames"):
        paired_changes(base, other[:5], 200, 5, class_names())


def test_report_shows_paired_changes_class_intervals_and_seed_spread():
    experiments = {"main": ({"train": {"lr": 0.02, "seed": 0}}, {"miou": 0.50, "boundary_miou": 0.2}),
                   "seed1": ({"train": {"lr": 0.02, "seed": 1}}, {"miou": 0.52, "boundary_miou": 0.3}),
                   "lr05": ({"train": {"lr": 0.05, "seed": 0}}, {"miou": 0.60, "boundary_miou": 0.2}),
                   "old": ({"train": {"lr": 0.01, "seed": 0}}, {"miou": 0.40})}
    counts = {"main": _counts(0), "seed1": _counts(0), "lr05": _counts(0, better=0.3), "old": None}
    text = report(experiments, "main", 2, markdown=False, counts=counts, resamples=200, seed=0)
    assert "Paired changes vs main on the same 8 frames" in text
    rows = {line.split()[0]: line for line in text.splitlines() if line.split()}
    assert "[+0.0000, +0.0000]" in rows["seed1"] and "within noise" in rows["seed1"]
    assert "better" in rows["lr05"] and "no per-image counts" in rows["old"]
    assert "Seed spread over main, seed1 (only train.seed differs)" in text
    assert seed_groups(experiments) == [["main", "seed1"]]
    spread = seed_spread(experiments, ["main", "seed1"])
    assert spread.loc["miou", "mean"] == pytest.approx(0.51) and spread.loc["miou", "std"] == pytest.approx(0.02 ** 0.5 / 10)
    md = report(experiments, "main", 2, markdown=True, counts=counts, resamples=200, seed=0)
    assert "### Per-class IoU change vs main [95% paired interval]" in md
    assert "### Per-class boundary IoU change vs main" in md
    road = next(line for line in md.splitlines() if line.count("|") > 2 and line.split("|")[1].strip() == "road")
    assert road.count("[") == 2  # seed1 and lr05; "old" has no counts, so no column


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
