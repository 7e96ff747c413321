"""A stage that fails under `dvc repro` says how to get back the outputs DVC removed before running it
(DVC sets DVC_STAGE and DVC_ROOT for every stage command)."""
import os
import subprocess
import sys
from pathlib import Path

from citypipe.command_line import restore_hint

REPO = Path(__file__).resolve().parents[1]


def test_the_hint_names_the_stages_git_tracked_outputs_and_dvc_checkout():
    hint = restore_hint("train", str(REPO))
    # train's cache: false outputs in dvc.yaml: the DVCLive series and metrics (git-tracked); checkpoints are cached
    assert hint == ("hint: DVC removed stage train's outputs before running it; to get the committed ones back: "
                    "git checkout HEAD -- dvclive/plots dvclive/metrics.json && dvc checkout train")
    assert "metrics/eval.json" in restore_hint("dvc.yaml:evaluate", str(REPO))


def test_no_hint_without_a_readable_stage(tmp_path):
    assert restore_hint("nosuchstage", str(REPO)) is None
    assert restore_hint("train", str(tmp_path)) is None
    (tmp_path / "dvc.yaml").write_text("stages: [")
    assert restore_hint("train", str(tmp_path)) is None
    (tmp_path / "dvc.yaml").write_text("stages:\n  only:\n    cmd: x\n    outs:\n      - cached_folder\n")
    assert restore_hint("only", str(tmp_path)).endswith("to get the committed ones back: dvc checkout only")


def test_a_failing_stage_under_dvc_prints_the_error_then_the_hint(tmp_path):
    command = [sys.executable, str(REPO / "stages" / "evaluate.py"), "--params", str(tmp_path / "missing.yaml"),
               "--data-root", str(tmp_path), "--checkpoints", str(tmp_path), "--cache", str(tmp_path / "c"),
               "--metrics", str(tmp_path / "m.json"), "--class-metrics", str(tmp_path / "c.json"),
               "--per-image", str(tmp_path / "p.csv"), "--plots", str(tmp_path / "plots")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    plain = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert plain.returncode == 1 and plain.stderr.startswith("error: ") and "hint:" not in plain.stderr
    under_dvc = subprocess.run(command, capture_output=True, text=True, timeout=120,
                               env={**env, "DVC_STAGE": "evaluate", "DVC_ROOT": str(REPO)})
    lines = under_dvc.stderr.strip().splitlines()
    assert under_dvc.returncode == 1 and lines[0] == plain.stderr.strip()
    assert lines[1].startswith("hint: DVC removed stage evaluate's outputs") and "metrics/eval.json" in lines[1]
    assert lines[1].endswith("dvc checkout evaluate")
