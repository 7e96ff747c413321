"""The real `dvc` in a temporary git repository: repro, no-op repro, targeted reruns, experiments,
metrics diff, push / fresh clone / pull, and `dvc plots show` rendered in headless Chromium."""
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import check_plots_render  # noqa: E402

pytestmark = pytest.mark.slow  # dvc repro of a small demo in a temporary repository, several times

SMALL = {
    "synthesize": {"height": 64, "width": 128, "train_images": 8, "val_images": 4, "test_images": 2, "workers": 1},
    "prepare": {"workers": 1},
    "train": {"epochs": 2, "batch_size": 2, "base_size": [64, 128], "crop_size": [64, 128], "val_size": [64, 128],
              "workers": 0, "val_every": 1},
    "inference": {"size": [64, 128], "workers": 0},
    "visualize": {"num_samples": 2},
    "device": {"type": "cpu"},
    "robustness": {"corruptions": ["fog", "gaussian_noise"], "severities": [2], "noise_severities": [1], "frames": 2,
                   "workers": 0},
}


def run(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    env = {**os.environ, **(env or {}), "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    result = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def set_params(project: Path, values: dict[str, object]) -> None:
    """Set 'section.key' values in params.yaml as `dvc exp run -S` does (DVC's own writer: comments kept)."""
    from dvc.utils.hydra import apply_overrides

    apply_overrides(str(project / "params.yaml"), [f"{key}={json.dumps(value)}" for key, value in values.items()])


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
    set_params(work, {f"{section}.{key}": value for section, values in SMALL.items() for key, value in values.items()})
    run(work, "git", "init", "-q")
    run(work, "git", "add", "-A")
    run(work, "git", "commit", "-qm", "start")
    return work


def test_repro_then_noop_then_only_affected_stages(project):
    # every stage process records the params keys its code reads (citypipe/params.py), for the next test
    first = run(project, "dvc", "repro", env={"CITYPIPE_PARAMS_TRACE": str(project.parent / "params_read")})
    assert ran_stages(first) == {"synthesize", "prepare-labels", "train", "evaluate", "visualize", "export-submission",
                                 "robustness", "export-onnx", "quantize-onnx", "evaluate-onnx"}
    assert (project / "metrics" / "eval.json").is_file() and (project / "submission" / "submission.zip").is_file()
    assert (project / "metrics" / "robustness.json").is_file()
    assert list((project / "plots" / "samples").glob("*_panel.png"))
    assert (project / "metrics" / "per_image.csv").is_file() and (project / "plots" / "eval" / "per_image_counts.npy").is_file()
    assert len(list((project / "plots" / "samples").glob("worst*_panel.png"))) == 4  # visualize.worst_frames
    assert "Data and pipelines are up to date" in run(project, "dvc", "repro")
    # identical work, identical bytes: every stage rerun by force leaves every hash in dvc.lock as it was
    lock = (project / "dvc.lock").read_text()
    assert ran_stages(run(project, "dvc", "repro", "--force")) == ran_stages(first)
    assert (project / "dvc.lock").read_text() == lock
    assert "Data and pipelines are up to date" in run(project, "dvc", "status")
    set_params(project, {"visualize.num_samples": 1})
    assert ran_stages(run(project, "dvc", "repro")) == {"visualize"}
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", "baseline")


def declared_keys(stage: dict) -> set[str]:
    """dvc.yaml's params of a stage, sections expanded to their keys."""
    from citypipe.params import Params

    sections = {f.name: f.type for f in dataclasses.fields(Params)}
    hints = typing.get_type_hints(Params)
    keys = set()
    for entry in stage.get("params", []):
        if "." in entry:
            keys.add(entry)
        else:
            keys |= {f"{entry}.{f.name}" for f in dataclasses.fields(hints[entry])} if entry in sections else {entry}
    return keys


def test_each_stage_depends_on_exactly_the_params_keys_its_code_reads(project):
    """A key a stage reads but does not depend on leaves stale outputs; a key it depends on but never
    reads reruns it (a test-time key would retrain the model) for nothing."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        script = stage["cmd"].split()[1]
        read = set(json.loads((project.parent / "params_read" / f"{Path(script).stem}.json").read_text()))
        assert read == declared_keys(stage), (f"{name}: read but not in dvc.yaml: {sorted(read - declared_keys(stage))}; "
                                              f"in dvc.yaml but never read: {sorted(declared_keys(stage) - read)}")


def stale_stages(project: Path) -> set[str]:
    return set(json.loads(run(project, "dvc", "status", "--json")))


INFERENCE_CHANGES = {"checkpoint": "last", "mode": "slide", "size": [32, 64], "crop_size": [32, 64],
                     "stride": [16, 32], "flip": True, "scales": [0.75, 1.0], "amp": True, "batch_size": 1,
                     "workers": 1}


def test_changing_any_inference_key_reruns_the_predicting_stages_and_never_train(project):
    params_file = project / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    assert set(INFERENCE_CHANGES) == set(params["inference"])  # every key of the section is tried
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]  # what each stage reads: the test above
    try:
        for key, value in INFERENCE_CHANGES.items():
            assert params["inference"][key] != value
            params_file.write_text(original)
            set_params(project, {f"inference.{key}": value})
            readers = {name for name, stage in stages.items() if f"inference.{key}" in declared_keys(stage)}
            assert "train" not in readers and {"evaluate", "export-submission"} <= readers, key
            assert stale_stages(project) == readers, key
    finally:
        params_file.write_text(original)
    assert stale_stages(project) == set()


def test_an_experiment_with_multi_scale_testing_does_not_retrain(project):
    output = run(project, "dvc", "exp", "run", "-S", "inference.scales=[0.75,1.0,1.25]")
    assert ran_stages(output) == {"evaluate", "visualize", "export-submission", "robustness", "evaluate-onnx"}
    assert "train" not in ran_stages(output)


def test_dvc_exp_run_set_changes_exactly_one_line_of_params_yaml(project):
    """params.yaml is written in the style DVC writes (block lists, plain quoting), so an experiment's
    params differ from the baseline's in the line it sets, comments kept."""
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", "before the experiment", "--allow-empty")
    output = run(project, "dvc", "exp", "run", "-S", "visualize.alpha=0.6")
    assert ran_stages(output) == {"visualize"}
    assert run(project, "git", "diff", "--numstat", "params.yaml").split() == ["1", "1", "params.yaml"]
    assert "  alpha: 0.6" in (project / "params.yaml").read_text().splitlines()
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", "the experiment's results")


def test_experiment_and_metrics_diff(project):
    run(project, "dvc", "exp", "run", "-S", "train.lr=0.05")
    shown = run(project, "dvc", "exp", "show", "--no-pager", "--csv")
    assert "train.lr" in shown and "miou" in shown and "0.05" in shown
    diff = run(project, "dvc", "metrics", "diff", "--all")
    assert "miou" in diff and "pixel_acc" in diff and "val.miou" in diff
    assert "class_iou" not in diff  # eval_classes.json is a plain output: the diff keeps to the headline numbers


def test_exp_show_has_live_rows_while_an_experiment_trains(project):
    """DVCLive rewrites dvclive/metrics.json after every epoch, so `dvc exp show` shows the running
    experiment's progress before it ends."""
    import json
    import time

    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    before = json.loads((project / "dvclive" / "metrics.json").read_text())  # the last run's summary
    process = subprocess.Popen(["dvc", "exp", "run", "-S", "train.epochs=8"], cwd=project, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        live_rows = []
        deadline = time.monotonic() + 600
        while process.poll() is None and time.monotonic() < deadline and not live_rows:
            shown = json.loads(run(project, "dvc", "exp", "show", "--json", "--no-pager"))
            metrics = shown[0]["data"]["metrics"].get("dvclive/metrics.json", {}).get("data") or {}
            if metrics and metrics != before and metrics.get("step", 8) < 8:
                live_rows.append(metrics)  # this run's, not the last one's, and not its end
            time.sleep(0.5)
        assert live_rows, "no row of the unfinished run was shown"
        assert live_rows[0]["train"]["loss"] > 0
    finally:
        process.wait(timeout=600)
    assert process.returncode == 0


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


chromium = pytest.mark.skipif(check_plots_render.find_chromium() is None,
                              reason="needs Chromium (Debian: apt-get install chromium); .ci/run installs it")


@chromium
def test_plots_show_renders_offline_in_chromium(project, tmp_path):
    """`dvc plots show` with the inlined-vega template: every plot draws marks, every image loads."""
    run(project, "dvc", "plots", "show", "--out", str(tmp_path / "report"))
    page = tmp_path / "report" / "index.html"
    assert "cdn.jsdelivr" not in page.read_text()
    problems = check_plots_render.check_page(page, check_plots_render.find_chromium(), tmp_path / "shot.png")
    assert problems == []
    assert {"training_loss", "validation", "class_iou", "class_frequency"} <= set(
        re.findall(r"vegaEmbed\('#([^']+)'", page.read_text()))


@chromium
def test_plots_diff_with_side_by_side_images_fits_a_1400_px_window(project, tmp_path):
    """`dvc plots diff` puts each revision's panel side by side; the template's CSS shrinks them to fit."""
    run(project, "dvc", "plots", "diff", "HEAD", "--out", str(tmp_path / "diff"))
    page = tmp_path / "diff" / "index.html"
    assert page.read_text().count("_panel.png") >= 2  # two revisions of the same panel
    assert check_plots_render.check_page(page, check_plots_render.find_chromium()) == []


@chromium
def test_the_render_check_fails_on_a_page_without_vega_or_with_an_empty_plot(project, tmp_path):
    run(project, "dvc", "plots", "show", "--out", str(tmp_path / "report"))
    page = (tmp_path / "report" / "index.html").read_text()
    head_end = page.find("</head>")
    no_scripts = tmp_path / "report" / "no_vega.html"  # what DVC's CDN page looks like offline
    no_scripts.write_text(re.sub(r"<script>.*?</script>", "", page[:head_end], flags=re.S) + page[head_end:])
    problems = check_plots_render.check_page(no_scripts, check_plots_render.find_chromium())
    assert any("training_loss" in p and "vega did not run" in p for p in problems)
    start = page.find("vegaEmbed('#training_loss'")
    spec_start = page.rfind('"values": [', 0, start)
    spec_end = page.find("]", spec_start)
    empty = tmp_path / "report" / "empty_plot.html"
    empty.write_text(page[:spec_start] + '"values": []' + page[spec_end + 1:])
    problems = check_plots_render.check_page(empty, check_plots_render.find_chromium())
    assert len(problems) == 1 and re.fullmatch(r"plot 'training_loss': blank \(\d+ coloured pixels\)", problems[0])
    wide = tmp_path / "report" / "wide.html"  # an image box that does not shrink: the page scrolls sideways
    body_end = page.rfind("</body>")  # the last one: vega-embed's code contains the text too
    wide.write_text(page[:body_end] + '<div style="width: 3000px">wide</div>' + page[body_end:])
    problems = check_plots_render.check_page(wide, check_plots_render.find_chromium())
    assert len(problems) == 1 and re.fullmatch(rf"{re.escape(str(wide))}: the page is \d+ px wide, wider than a 1400 px window",
                                               problems[0])


def test_switch_to_a_real_cityscapes_folder_with_dvc_add_and_the_profile(project, tmp_path):
    """The README's switch: `dvc add` the dataset (linked, not copied), apply the profile, and DVC
    sees that prepare-labels onwards must rerun on the new data root (the run itself needs a GPU)."""
    work = tmp_path / "work"
    shutil.copytree(project, work, symlinks=True)
    shutil.copytree(work / "data" / "citysynth", work / "data" / "cityscapes")  # stands in for the download
    run(work, "dvc", "config", "cache.type", "hardlink,symlink")
    run(work, "dvc", "add", "data/cityscapes")
    assert "/cityscapes" in (work / "data" / ".gitignore").read_text()
    run(work, "citypipe", "profile", "cityscapes", "--data-root", "data/cityscapes")
    run(work, "git", "add", "data/cityscapes.dvc", "data/.gitignore", "params.yaml", ".dvc/config")
    run(work, "git", "commit", "-qm", "Real Cityscapes")
    status = run(work, "dvc", "status", "prepare-labels")
    assert "data/cityscapes" in status and "modified" in status
    dry = run(work, "dvc", "repro", "--dry")
    assert {"prepare-labels", "train", "evaluate"} <= ran_stages(dry) and "synthesize" not in ran_stages(dry)
