import json

import pytest

from citypipe.training.outputs import TrainLog, live_name


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
    assert text[0] == "epoch 1  loss 1.12346  lr 0.0184615  seconds 1.5  images_per_second 41"


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
