"""The real `dvc` in a temporary git repository: repro, no-op repro, targeted reruns, experiments,
metrics diff, and push / fresh clone / pull."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SMALL = {
    "synthesize": {"height": 64, "width": 128, "train_images": 8, "val_images": 4, "test_images": 2, "workers": 1},
    "prepare": {"workers": 1},
    "train": {"epochs": 1, "batch_size": 2, "base_size": [64, 128], "crop_size": [64, 128], "workers": 0, "val_every": 1},
    "evaluate": {"size": [64, 128], "workers": 0},
    "visualize": {"num_samples": 2},
    "device": {"type": "cpu"},
}


def run(cwd: Path, *args: str) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    result = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def ran_stages(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("dvc") / "project"
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if name.startswith(("metrics/", "plots/")) or name == "dvc.lock":
            continue  # results of this checkout's own run
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, work / name)
    params = yaml.safe_load((work / "params.yaml").read_text())
    for section, values in SMALL.items():
        params[section].update(values)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(work, "git", "init", "-q")
    run(work, "git", "add", "-A")
    run(work, "git", "commit", "-qm", "start")
    return work


def test_repro_then_noop_then_only_affected_stages(project):
    first = run(project, "dvc", "repro")
    assert ran_stages(first) == {"synthesize", "prepare-labels", "train", "evaluate", "visualize", "export-submission"}
    assert (project / "metrics" / "eval.json").is_file() and (project / "submission" / "submission.zip").is_file()
    assert list((project / "plots" / "samples").glob("*_panel.png"))
    assert "Data and pipelines are up to date" in run(project, "dvc", "repro")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["visualize"]["num_samples"] = 1
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran_stages(run(project, "dvc", "repro")) == {"visualize"}
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", "baseline")


def test_experiment_and_metrics_diff(project):
    run(project, "dvc", "exp", "run", "-S", "train.lr=0.05")
    shown = run(project, "dvc", "exp", "show", "--no-pager", "--csv")
    assert "train.lr" in shown and "miou" in shown and "0.05" in shown
    diff = run(project, "dvc", "metrics", "diff", "--all")
    assert "miou" in diff and "class_iou.road" in diff and "pixel_acc" in diff


def test_push_then_fresh_clone_pulls_model_and_metrics(project, tmp_path):
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", "experiment", "--allow-empty")
    remote = tmp_path / "remote"
    run(project, "dvc", "remote", "add", "-d", "local", str(remote))
    run(project, "git", "commit", "-qam", "remote")
    run(project, "dvc", "push")
    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", str(project), str(clone))
    run(clone, "dvc", "pull")
    assert (clone / "checkpoints" / "best.pt").is_file()
    status = run(clone, "dvc", "status")
    assert "up to date" in status, status
    assert ran_stages(run(clone, "dvc", "repro")) == set()  # nothing retrains
