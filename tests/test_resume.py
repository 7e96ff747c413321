"""Resume for real: a training process killed with SIGKILL, with loader workers, ends like an
uninterrupted one; lost or broken checkpoints are recreated, not trusted."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent
EPOCHS = 3

pytestmark = pytest.mark.slow  # every test here trains in a subprocess (3 epochs, 2 loader workers)

# A separate process, as DVC runs the stage: train the fixture data with 2 loader workers.
TRAIN_SCRIPT = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
from pathlib import Path
from conftest import small_training
synth_root, cache, out = map(Path, sys.argv[1:4])
small_training(synth_root, (cache, None), out, prepared_weights=Path(sys.argv[4]),
               **{{"train.epochs": {EPOCHS}, "train.workers": 2, "train.val_every": 1, "train.crop_size": [48, 96]}})()
"""


def train_process(synth_root, prepared, out: Path, weights: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", TRAIN_SCRIPT, str(synth_root), str(prepared[0]), str(out), str(weights)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    return output


def weights_of(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def assert_same_run(a: Path, b: Path) -> None:
    for name in ("last.pt", "best.pt"):
        wa, wb = weights_of(a / "checkpoints" / name), weights_of(b / "checkpoints" / name)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), name
        # and the very bytes, which DVC hashes (torch.save must not embed the temporary file's name)
        assert (a / "checkpoints" / name).read_bytes() == (b / "checkpoints" / name).read_bytes(), name
    live_a, live_b = sorted((a / "dvclive").rglob("*.*")), sorted((b / "dvclive").rglob("*.*"))
    assert [p.relative_to(a) for p in live_a] == [p.relative_to(b) for p in live_b]
    for file_a, file_b in zip(live_a, live_b):  # metrics.json and every per-epoch series
        assert file_a.read_bytes() == file_b.read_bytes(), file_a.relative_to(a)


@pytest.fixture(scope="module")
def weights_files(synth_root, prepared, tmp_path_factory) -> Path:
    from citypipe.prepare.outputs import write_prepare_outputs

    folder = tmp_path_factory.mktemp("weights")
    counts, ids = prepared[1]["train"][1], prepared[1]["train"][0]
    write_prepare_outputs(counts, ids, "inverse_log", 1.02, "rare_class", folder / "table.csv", folder / "class.json",
                          folder / "sample.json")
    return folder


@pytest.fixture(scope="module")
def uninterrupted(synth_root, prepared, weights_files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    finish(train_process(synth_root, prepared, out, weights_files))
    return out


def test_sigkill_during_an_epoch_then_rerun_ends_bit_identical(synth_root, prepared, weights_files, uninterrupted, tmp_path):
    process = train_process(synth_root, prepared, tmp_path, weights_files)
    last = tmp_path / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 300
    while not last.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # epoch 1 is saved: the process is now in epoch 2, its workers running
    assert process.poll() is None, "the run finished before it could be killed: make the test's run longer"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert torch.load(last, weights_only=True)["epoch"] < EPOCHS
    output = finish(train_process(synth_root, prepared, tmp_path, weights_files))
    assert "resuming from" in output
    assert_same_run(uninterrupted, tmp_path)


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_a_lost_or_broken_best_checkpoint_is_recreated(synth_root, prepared, weights_files, uninterrupted, tmp_path, damage):
    import shutil

    shutil.copytree(uninterrupted, tmp_path / "run")
    best = tmp_path / "run" / "checkpoints" / "best.pt"
    if damage == "delete":
        best.unlink()
    else:
        os.truncate(best, best.stat().st_size // 2)
    output = finish(train_process(synth_root, prepared, tmp_path / "run", weights_files))
    assert "training from scratch recreates it" in output
    assert_same_run(uninterrupted, tmp_path / "run")


def test_best_checkpoint_holds_what_inference_needs_and_last_the_training_state(uninterrupted):
    best = torch.load(uninterrupted / "checkpoints" / "best.pt", weights_only=True)
    last = torch.load(uninterrupted / "checkpoints" / "last.pt", weights_only=True)
    assert set(best) == {"model", "model_config", "params", "epoch", "miou", "model_format"}
    assert {"optimizer", "scheduler", "scaler", "history"} <= set(last)
    assert json.loads((uninterrupted / "dvclive" / "metrics.json").read_text())["val"]["best_epoch"] == best["epoch"]


# --- issue 26: what a rerun resumes, and what it never destroys (in-process runs of one or three short epochs) ----

def _in_process(synth_root, prepared, out: Path, weights: Path, **overrides):
    import sys as _sys

    _sys.path.insert(0, str(TESTS))
    from conftest import small_training

    settings = {"train.epochs": EPOCHS, "train.workers": 0, "train.val_every": 1, "train.crop_size": [48, 96], **overrides}
    return small_training(synth_root, (prepared[0], None), out, prepared_weights=weights, **settings)


def _checkpoint_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "checkpoints").glob("*.pt"))}


@pytest.fixture(scope="module")
def in_process_run(synth_root, prepared, weights_files, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("in_process")
    _in_process(synth_root, prepared, out, weights_files)()
    return out


class _Killed(BaseException):
    """Stands for SIGKILL at one point of a run (BaseException: nothing in the run catches it)."""


def test_a_kill_between_best_and_last_resumes_the_run(synth_root, prepared, weights_files, in_process_run, tmp_path,
                                                      monkeypatch, capsys):
    """A new best at epoch N is saved, then the process dies before last.pt of epoch N: best is epoch N, last
    epoch N-1. The rerun resumes after N-1 (it used to discard the whole run) and ends byte-identical."""
    from citypipe.training import trainer

    best_epoch = torch.load(in_process_run / "checkpoints" / "best.pt", weights_only=True)["epoch"]
    if best_epoch < 2:
        pytest.skip("the reference run's only best is epoch 1: no last.pt of an earlier epoch to resume")
    real_save = trainer.save_checkpoint

    def save_then_die(path: Path, state: dict) -> None:
        real_save(path, state)
        if path.name == "best.pt" and state["epoch"] == best_epoch:
            raise _Killed

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_die)
    with pytest.raises(_Killed):
        _in_process(synth_root, prepared, tmp_path, weights_files)()
    monkeypatch.undo()
    last = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert (last["epoch"], torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=True)["epoch"]) == \
        (best_epoch - 1, best_epoch)
    capsys.readouterr()
    _in_process(synth_root, prepared, tmp_path, weights_files)()
    assert f"resuming from {tmp_path / 'checkpoints' / 'last.pt'} after epoch {best_epoch - 1}" in capsys.readouterr().out
    assert _checkpoint_bytes(tmp_path) == _checkpoint_bytes(in_process_run)


def _invert_images(root: Path, split: str) -> None:
    from PIL import Image

    for image in sorted((root / "leftImg8bit" / split).rglob("*.png")):
        with Image.open(image) as picture:
            Image.eval(picture, lambda v: 255 - v).save(image)


@pytest.mark.parametrize("split", ["train", "val"])
def test_changed_data_retrains_instead_of_resuming(synth_root, prepared, weights_files, tmp_path, capsys, split):
    """A finished run, then its training (or validation) images change: the rerun trains from scratch, as a
    fresh run on the new data does, instead of 'resuming' with nothing left to do."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synth_root, data)
    one_epoch = {"train.epochs": 1}
    _in_process(data, prepared, tmp_path / "run", weights_files, **one_epoch)()
    before = _checkpoint_bytes(tmp_path / "run")
    overrides = dict(one_epoch)
    _invert_images(data, split)
    capsys.readouterr()
    _in_process(data, prepared, tmp_path / "run", weights_files, **overrides)()
    assert "was trained with other params; starting from scratch" in capsys.readouterr().out
    _in_process(data, prepared, tmp_path / "fresh", weights_files, **overrides)()
    assert _checkpoint_bytes(tmp_path / "run") == _checkpoint_bytes(tmp_path / "fresh") != before


def test_a_failing_fresh_run_keeps_the_previous_best_and_one_without_a_best_drops_it(
        synth_root, prepared, weights_files, in_process_run, tmp_path, monkeypatch):
    """Validation crashing in the first epoch of a fresh run (other params) must not have deleted the last good
    best.pt; a run that ends with no best of its own (NaN mIoU) must not leave another run's best.pt standing in."""
    import shutil

    from citypipe.training import trainer

    shutil.copytree(in_process_run, tmp_path / "run")
    good = (tmp_path / "run" / "checkpoints" / "best.pt").read_bytes()

    def crash(confusion):
        raise RuntimeError("validation crashed")

    monkeypatch.setattr(trainer, "compute_scores", crash)
    with pytest.raises(RuntimeError, match="validation crashed"):
        _in_process(synth_root, prepared, tmp_path / "run", weights_files, **{"train.epochs": 1})()
    assert (tmp_path / "run" / "checkpoints" / "best.pt").read_bytes() == good
    monkeypatch.setattr(trainer, "compute_scores", lambda confusion: {"miou": float("nan"), "pixel_acc": 0.0})
    _in_process(synth_root, prepared, tmp_path / "run", weights_files, **{"train.epochs": 1})()
    assert not (tmp_path / "run" / "checkpoints" / "best.pt").exists()
