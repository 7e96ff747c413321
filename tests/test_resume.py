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
