import json
from datetime import datetime, timezone

import pytest

from citypipe.training.outputs import TrainLog, eta_seconds, live_name, params_hash, run_header, text_line


def _history(epochs: int) -> list[dict]:
    rows = []
    for epoch in range(1, epochs + 1):
        row = {"epoch": epoch, "loss": 1 / epoch + 0.1234567, "lr": 0.02 * (1 - epoch / 13),
               "seconds": 1.5 * epoch, "images_per_second": 40.0 + epoch}
        if epoch % 2 == 0:
            row.update(val_miou=epoch / 30, val_pixel_acc=0.5 + epoch / 100)
        rows.append(row)
    return rows


def _files(folder) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _train(folder, history, resumed_from=()):
    log = TrainLog(folder / "dvclive", folder / "logs" / "train.log", list(resumed_from))
    for row in history:
        log.log_epoch(row)
    return log


@pytest.fixture(autouse=True)
def outside_any_repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # DVCLive looks for a DVC repo from the working directory


def test_live_names():
    assert [live_name(k) for k in ("loss", "lr", "val_miou", "val_pixel_acc")] == [
        "train/loss", "train/learning_rate", "val/miou", "val/pixel_acc"]


def test_epochs_go_to_dvclive_without_timings_and_timings_to_the_text_log(tmp_path):
    _train(tmp_path, _history(4)).finish(best_miou=0.13333, best_epoch=4)
    files = _files(tmp_path / "dvclive")
    assert sorted(files) == ["metrics.json", "plots/metrics/train/learning_rate.tsv", "plots/metrics/train/loss.tsv",
                             "plots/metrics/val/miou.tsv", "plots/metrics/val/pixel_acc.tsv"]
    assert files["plots/metrics/val/miou.tsv"].decode().splitlines() == ["step\tmiou", "2\t0.0666667", "4\t0.133333"]
    assert files["plots/metrics/train/loss.tsv"].decode().splitlines()[1] == "1\t1.12346"
    assert not any(word in content for content in files.values() for word in (b"timestamp", b"seconds", b"images"))
    summary = json.loads(files["metrics.json"])
    assert summary["step"] == 4 and summary["val"] == {"miou": 0.133333, "pixel_acc": 0.54, "best_miou": 0.13333,
                                                       "best_epoch": 4}
    text = (tmp_path / "logs" / "train.log").read_text().splitlines()
    assert text[0].startswith("== run ") and text[1] == "epoch 1  loss 1.12346  lr 0.0184615  seconds 1.5  images_per_second 41"


def test_metrics_json_is_rewritten_every_epoch(tmp_path):
    log = _train(tmp_path, _history(3))  # `dvc exp show` reads it while `dvc exp run` trains
    assert json.loads((tmp_path / "dvclive" / "metrics.json").read_text())["step"] == 3
    log.log_epoch(_history(4)[-1])
    assert json.loads((tmp_path / "dvclive" / "metrics.json").read_text())["val"]["miou"] == 0.133333


@pytest.mark.parametrize("stopped_after, checkpointed", [(1, 1), (5, 5), (6, 4), (6, 5)])
def test_a_resumed_run_writes_the_same_bytes_as_an_uninterrupted_one(tmp_path, stopped_after, checkpointed):
    history = _history(8)
    _train(tmp_path / "whole", history).finish(0.266667, 8)
    # stopped after logging `stopped_after` epochs; the checkpoint has `checkpointed` of them
    _train(tmp_path / "resumed", history[:stopped_after])
    _train(tmp_path / "resumed", history[checkpointed:], resumed_from=history[:checkpointed]).finish(0.266667, 8)
    assert _files(tmp_path / "resumed" / "dvclive") == _files(tmp_path / "whole" / "dvclive")
    assert "resumed after epoch" in (tmp_path / "resumed" / "logs" / "train.log").read_text()


def test_a_fresh_run_clears_the_previous_runs_files(tmp_path):
    _train(tmp_path / "old", _history(6))
    _train(tmp_path / "old", _history(2))
    _train(tmp_path / "new", _history(2))
    assert _files(tmp_path / "old" / "dvclive") == _files(tmp_path / "new" / "dvclive")


def test_the_text_log_appends_each_run_under_its_own_header(tmp_path):
    now = datetime(2026, 12, 3, 7, 30, 5, tzinfo=timezone.utc)
    first = run_header("3148c12", "a" * 12, "cpu (2 threads)", None, now)
    assert first == "== run 2026-12-03T07:30:05Z  commit 3148c12  params aaaaaaaaaaaa  device cpu (2 threads)  from scratch"
    TrainLog(tmp_path / "dvclive", tmp_path / "train.log", [], first).log_epoch(_history(1)[0])
    second = run_header("3148c12-dirty", "b" * 12, "cpu (2 threads)", 1, now)
    TrainLog(tmp_path / "dvclive", tmp_path / "train.log", _history(1), second).log_epoch(_history(2)[1])
    lines = (tmp_path / "train.log").read_text().splitlines()
    assert lines[0] == first and lines[1].startswith("epoch 1 ")  # the first run's lines are kept
    assert lines[2].endswith("resumed after epoch 1") and lines[3].startswith("epoch 2 ")


def test_epoch_lines_carry_elapsed_time_and_eta_but_dvclive_does_not():
    assert eta_seconds(elapsed=90.0, epochs_run=3, epochs_left=2) == 60.0
    assert eta_seconds(elapsed=0.0, epochs_run=0, epochs_left=5) == 0.0
    row = {"epoch": 3, "loss": 0.5, "elapsed_seconds": 90.0, "eta_seconds": 60.0}
    assert text_line(row) == "epoch 3  loss 0.5  elapsed_seconds 90  eta_seconds 60"


def test_epoch_progress_never_reaches_dvclive(tmp_path):
    log = TrainLog(tmp_path / "dvclive", tmp_path / "train.log", [])
    log.log_epoch({**_history(1)[0], "elapsed_seconds": 12.0, "eta_seconds": 60.0})
    assert b"eta" not in (tmp_path / "dvclive" / "metrics.json").read_bytes()
    assert not list((tmp_path / "dvclive").rglob("*eta*"))


def test_params_hash_follows_the_params():
    assert params_hash({"train": {"lr": 0.02}}) == params_hash({"train": {"lr": 0.02}})
    assert params_hash({"train": {"lr": 0.02}}) != params_hash({"train": {"lr": 0.05}})
