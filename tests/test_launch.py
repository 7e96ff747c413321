"""device.processes: the stages that read it start themselves under torch.distributed.run.

Fast: the relaunch decision and command line, the shards, a failure's message, and that a rank other than
0 leaves the outputs alone. Slow: the real stage scripts on CPU with gloo, 2 processes against 1:
evaluate writes the same bytes; train runs, rank 0 alone writes, and the ranks hold the same weights
after every epoch (each rank's digests, through CITYPIPE_RANK_DIGESTS).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from citypipe.distributed import SINGLE, DistInfo, shard_batches, state_digest
from citypipe.errors import CitypipeError
from citypipe.launch import (
    failure_message,
    launcher_arguments,
    needs_launch,
    worker_threads,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("processes, environ, expected", [
    (1, {}, False),
    (2, {}, True),
    (4, {"PATH": "/bin"}, True),
    (2, {"WORLD_SIZE": "2"}, False),  # a torchrun worker: never launches again
    (2, {"LOCAL_RANK": "0"}, False),
    (4, {"WORLD_SIZE": "8", "LOCAL_RANK": "3", "RANK": "7"}, False),  # multi-node torchrun started by hand
])
def test_a_stage_relaunches_only_with_more_processes_and_outside_torchrun(processes, environ, expected):
    assert needs_launch(processes, environ) is expected


def test_the_launcher_command_runs_the_same_script_and_arguments():
    from torch.distributed.run import get_args_parser

    # --log and --nnodes are also torchrun's (abbreviated, or its own): they must reach the stage untouched
    argv = ["stages/train.py", "--params", "p.yaml", "--log", "logs/train.log", "--image-size", "64", "128",
            "--nnodes", "--", "--no-pretrained"]
    arguments = launcher_arguments(4, argv)
    assert arguments == ["--standalone", "--nproc_per_node=4", "--", *argv]
    parsed = get_args_parser().parse_args(arguments)  # as torch.distributed.run reads it
    assert parsed.standalone and parsed.nproc_per_node == "4" and parsed.nnodes == "1:1"
    assert parsed.training_script == "stages/train.py" and parsed.training_script_args == argv[1:]


def test_each_worker_gets_its_threads_or_a_share_of_the_cores():
    assert worker_threads(2, 3, 16) == 3  # device.num_threads is per process
    assert worker_threads(2, 0, 16) == 8  # 0: the cores shared out
    assert worker_threads(3, 0, 16) == 5
    assert worker_threads(4, 0, 2) == 1  # never 0: torch would take all cores in each process
    assert worker_threads(2, 0, None) == 1


def test_a_failed_run_names_the_first_failed_rank_in_one_line():
    failures = {1: SimpleNamespace(exitcode=1, timestamp=20), 0: SimpleNamespace(exitcode=1, timestamp=25),
                2: SimpleNamespace(exitcode=-15, timestamp=26)}  # rank 2: stopped by the launcher, not a failure
    message = failure_message(4, failures)
    assert "\n" not in message
    assert message.startswith("device.processes: rank 1 of 4 exited with status 1")
    assert "; rank 0 failed too;" in message
    killed = failure_message(4, {3: SimpleNamespace(exitcode=-9, timestamp=1)})
    assert "rank 3 of 4 was killed by signal 9 (SIGKILL)" in killed


@pytest.mark.parametrize("items, batch, world", [(15, 4, 2), (6, 4, 2), (5, 2, 2), (500, 4, 4), (3, 4, 4), (0, 2, 3)])
def test_shards_are_contiguous_whole_batches_covering_every_item_once(items, batch, world):
    frames = list(range(items))
    shards = [shard_batches(frames, batch, DistInfo(rank, world, rank)) for rank in range(world)]
    assert [f for shard in shards for f in shard] == frames  # rank order is frame order
    one_process = [frames[i:i + batch] for i in range(0, items, batch)]
    batches = [shard[i:i + batch] for shard in shards for i in range(0, len(shard), batch)]
    assert batches == one_process  # every frame in the same batch as in one process
    assert shard_batches(frames, batch, SINGLE) == frames


def test_device_processes_must_be_a_positive_count():
    from citypipe.params import load_params

    with pytest.raises(CitypipeError, match=r"device\.processes: expected a process count >= 1, got 0"):
        load_params(ROOT / "params.yaml", {"device.processes": 0})
    with pytest.raises(CitypipeError, match=r"device\.processes: expected an integer"):
        load_params(ROOT / "params.yaml", {"device.processes": 2.5})


def test_a_rank_other_than_0_never_touches_the_outputs(tmp_path, monkeypatch):
    from citypipe.command_line import stage_outputs

    outputs = [tmp_path / "out" / "metrics.json", tmp_path / "plots"]
    monkeypatch.setenv("RANK", "1")
    with stage_outputs(*outputs):
        assert not any(tmp_path.iterdir())  # no probe, no lock file, no folder made
    monkeypatch.setenv("RANK", "0")
    with stage_outputs(*outputs):
        assert (tmp_path / "out" / ".metrics.json.lock").is_file()  # rank 0 holds them as one process does


# ---- the real stage scripts, 2 CPU processes with gloo ----

def stage_params(tmp_path: Path, synth_root: Path, processes: int, **values) -> Path:
    """A params.yaml for tiny CPU runs of the fixture data, with `processes` and other 'section.key' values."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    settings = {"data.root": str(synth_root), "device.type": "cpu", "device.processes": processes,
                "device.num_threads": 1, "inference.size": [64, 128], "inference.workers": 0, **values}
    for key, value in settings.items():
        section, name = key.split(".")
        params[section][name] = value
    path = tmp_path / f"params_{processes}.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def run_stage(script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    environment.pop("WORLD_SIZE", None), environment.pop("LOCAL_RANK", None), environment.pop("RANK", None)
    return subprocess.run(["nice", "-n", "10", sys.executable, f"stages/{script}.py", *map(str, args)], cwd=ROOT,
                          env=environment, capture_output=True, text=True, timeout=600, check=False)


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def evaluate_into(out: Path, params: Path, synth_root: Path, cache: Path, checkpoints: Path):
    return run_stage("evaluate", "--params", params, "--data-root", synth_root, "--checkpoints", checkpoints,
                     "--cache", cache, "--metrics", out / "metrics" / "eval.json",
                     "--class-metrics", out / "metrics" / "eval_classes.json",
                     "--per-image", out / "metrics" / "per_image.csv", "--plots", out / "plots")


@pytest.mark.slow  # two evaluate runs, one in 2 processes
def test_evaluate_in_two_processes_writes_the_bytes_of_one(synth_root, prepared, trained_checkpoint, tmp_path):
    cache, checkpoints = prepared[0], trained_checkpoint.parent
    # 6 val frames in batches of 4: rank 0 predicts one full batch, rank 1 the other two frames
    outputs = {}
    for processes in (1, 2):
        params = stage_params(tmp_path, synth_root, processes, **{"inference.batch_size": 4})
        result = evaluate_into(tmp_path / f"p{processes}", params, synth_root, cache, checkpoints)
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.count("evaluate: mIoU") == 1  # rank 0 alone reports
        outputs[processes] = files_of(tmp_path / f"p{processes}")
    assert set(outputs[2]) == set(outputs[1]) == {
        "metrics/eval.json", "metrics/eval_classes.json", "metrics/per_image.csv", "plots/class_iou.csv",
        "plots/confusion_matrix.csv", "plots/trimap_miou.csv", "plots/instance_recall.csv", "plots/per_image_counts.npy"}
    for name, data in outputs[1].items():
        assert outputs[2][name] == data, f"{name} differs between 1 and 2 processes"
    scores = json.loads(outputs[1]["metrics/eval.json"])
    assert scores["num_images"] == 6 and scores["iiou"] == scores["iiou"]  # instances scored: iIoU's float sums are exercised


@pytest.mark.slow  # two robustness runs, one in 2 processes
def test_robustness_in_two_processes_writes_the_bytes_of_one(synth_root, prepared, trained_checkpoint, tmp_path):
    cache, checkpoints = prepared[0], trained_checkpoint.parent
    outputs = {}
    for processes in (1, 2):
        # 4 frames x (clean, fog 1) = 8 images in batches of 3: rank 0 predicts images 0-2, rank 1 images 3-7
        params = stage_params(tmp_path, synth_root, processes, **{
            "robustness.corruptions": ["fog"], "robustness.severities": [1], "robustness.frames": 4,
            "robustness.batch_size": 3, "robustness.workers": 0})
        out = tmp_path / f"p{processes}"
        result = run_stage("robustness", "--params", params, "--data-root", synth_root, "--checkpoints", checkpoints,
                           "--cache", cache, "--metrics", out / "robustness.json", "--corruptions", out / "corruptions.json",
                           "--curves", out / "curves.csv")
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.count("robustness: clean mIoU") == 1
        outputs[processes] = files_of(out)
    assert set(outputs[1]) == {"robustness.json", "corruptions.json", "curves.csv"}
    assert outputs[2] == outputs[1]
    assert json.loads(outputs[1]["corruptions.json"])["num_sets"] == 1


@pytest.mark.slow  # a 2-process training run of 2 tiny epochs
def test_train_in_two_processes_keeps_the_ranks_equal_and_only_rank_0_writes(synth_root, prepared, tmp_path):
    from citypipe.prepare.outputs import write_prepare_outputs

    cache, results = prepared
    weights = tmp_path / "weights"
    write_prepare_outputs(results["train"][1], results["train"][0], "inverse_log", 1.02, "rare_class",
                          weights / "table.csv", weights / "class.json", weights / "sample.json")
    params = stage_params(tmp_path, synth_root, 2, **{
        "train.epochs": 2, "train.batch_size": 2, "train.base_size": [64, 128], "train.crop_size": [64, 128],
        "train.val_size": [64, 128], "train.workers": 0, "train.val_every": 1, "train.val_batch_size": 4})
    out, digests = tmp_path / "run", tmp_path / "digests"
    result = run_stage("train", "--params", params, "--data-root", synth_root, "--cache", cache,
                       "--class-weights", weights / "class.json", "--sample-weights", weights / "sample.json",
                       "--checkpoints", out / "checkpoints", "--live-dir", out / "dvclive", "--log", out / "train.log",
                       env={"CITYPIPE_RANK_DIGESTS": str(digests)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("train: 2 epochs") == 1
    # the same weights on both ranks after each epoch, and they are what rank 0 saved
    rank0, rank1 = ((digests / f"rank{r}.txt").read_text().split("\n")[:-1] for r in (0, 1))
    assert rank0 == rank1 and [line.split()[0] for line in rank0] == ["1", "2"]
    import torch

    last = torch.load(out / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert rank0[-1].split()[1] == state_digest(last["model"])
    assert last["params"]["world_size"] == 2  # a 1-process run will not resume it
    # rank 0 alone wrote: one row per epoch everywhere, no stray probe or lock files
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    log = (out / "train.log").read_text().splitlines()
    assert log[0].startswith("== run ") and "x 2 processes" in log[0]  # one run header, from rank 0
    assert [line.split()[1] for line in log[1:]] == ["1", "2"]
    loss = out / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv"
    assert len(loss.read_text().splitlines()) == 3  # header + 2 epochs
    assert not [p for p in out.rglob(".*") if p.is_file()]


@pytest.mark.slow  # starts 2 processes that fail at once
def test_a_failing_rank_fails_the_stage_with_one_clear_line(synth_root, prepared, tmp_path):
    params = stage_params(tmp_path, synth_root, 2)
    result = evaluate_into(tmp_path / "out", params, synth_root, prepared[0], tmp_path / "no_checkpoints")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: device.processes: rank ") and " of 2 exited with status 1" in lines[-1]
    assert any(line.startswith("error: ") and "checkpoint not found" in line for line in lines)  # a rank's own error
