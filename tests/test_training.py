import json
from pathlib import Path

import pytest
import torch
from conftest import small_training

from citypipe.data.sampling import EpochSampler
from citypipe.errors import CitypipeError
from citypipe.training import loop as loop_module
from citypipe.training.losses import SegmentationLoss, ohem_cross_entropy
from citypipe.training.schedule import lr_factor


@pytest.mark.parametrize("ohem", [False, True])
def test_loss_ignores_255(ohem):
    torch.manual_seed(0)
    logits = torch.randn(2, 19, 8, 8)
    target = torch.randint(0, 19, (2, 8, 8))
    target[:, :4] = 255
    criterion = SegmentationLoss(None, ohem, 0.7, 10, 0.4)
    changed = logits.clone()
    changed[:, :, :4] = torch.randn(2, 19, 4, 8) * 10  # only ignored pixels change
    assert criterion({"out": logits}, target) == pytest.approx(float(criterion({"out": changed}, target)))
    all_ignored = torch.full((2, 8, 8), 255)
    assert float(ohem_cross_entropy(logits, all_ignored, None, 0.7, 10)) == 0.0


def test_class_weights_and_aux_weight_enter_the_loss():
    logits, target = torch.randn(1, 19, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long)
    plain = SegmentationLoss(None, False, 0.7, 1, 0.4)({"out": logits}, target)
    with_aux = SegmentationLoss(None, False, 0.7, 1, 0.4)({"out": logits, "aux": logits}, target)
    assert float(with_aux) == pytest.approx(1.4 * float(plain))
    weights = torch.ones(19)
    weights[0] = 3.0
    weighted = SegmentationLoss(weights, False, 0.7, 1, 0.4)({"out": logits}, target)
    assert float(weighted) == pytest.approx(float(plain))  # one class only: the weighted mean is unchanged
    target[0, 0, 0] = 1
    a = SegmentationLoss(weights, False, 0.7, 1, 0.4)({"out": logits}, target)
    b = SegmentationLoss(None, False, 0.7, 1, 0.4)({"out": logits}, target)
    assert float(a) != pytest.approx(float(b))


def test_weighted_sampler_draws_rare_images_more_often():
    weights = torch.tensor([1.0] * 9 + [9.0])  # image 9 holds a rare class
    sampler = EpochSampler(10, weights, seed=0)
    draws = []
    for epoch in range(200):
        sampler.set_epoch(epoch)
        draws += [i for i, _ in sampler]
    counts = torch.bincount(torch.tensor(draws), minlength=10).double()
    assert counts[9] / counts[:9].mean() == pytest.approx(9.0, rel=0.15)
    uniform = EpochSampler(10, None, seed=0)
    assert sorted(i for i, _ in uniform) == list(range(10))


def test_sampler_splits_one_draw_across_ranks():
    weights = torch.rand(11)
    single = list(EpochSampler(11, weights, seed=5))
    ranks = [list(EpochSampler(11, weights, seed=5, rank=r, world_size=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 6
    interleaved = [item for pair in zip(*ranks) for item in pair]
    assert interleaved[:11] == single


@pytest.mark.parametrize("iteration, schedule, expected", [
    (0, "poly", 0.1), (5, "poly", 0.55), (10, "poly", 0.9 ** 0.9), (100, "poly", 0.0),
    (50, "cosine", 0.5), (100, "cosine", 0.0), (10, "cosine", 0.5 * (1 + __import__("math").cos(__import__("math").pi * 0.1))),
])
def test_schedule_values(iteration, schedule, expected):
    assert lr_factor(iteration, 100, schedule, 0.9, 10, 0.1) == pytest.approx(expected)


def test_schedule_decays_to_min_lr_like_mmseg_poly():
    lr, min_lr = 0.01, 1e-4
    for iteration in (20, 50, 100):
        mmseg = (lr - min_lr) * (1 - iteration / 100) ** 0.9 + min_lr
        assert lr * lr_factor(iteration, 100, "poly", 0.9, 10, 0.1, min_lr / lr) == pytest.approx(mmseg)


def _small_run(synth_root, prepared, out: Path, **overrides):
    return small_training(synth_root, prepared, out, **{"train.crop_size": [48, 96], "train.val_every": 1,
                                                         "train.warmup_iters": 2, **overrides})


@pytest.mark.slow  # a training, a killed one and its resumption: 242 s at load 15
def test_resume_after_a_kill_ends_like_an_uninterrupted_run(synth_root, prepared, tmp_path, monkeypatch):
    _small_run(synth_root, prepared, tmp_path / "straight")()
    real = loop_module.train_one_epoch

    def killed_in_second_epoch(*args, **kwargs):
        if kwargs.get("epoch", args[1] if len(args) > 1 else None) == 1:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    run = _small_run(synth_root, prepared, tmp_path / "resumed")
    monkeypatch.setattr(loop_module, "train_one_epoch", killed_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        run()
    assert torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(loop_module, "train_one_epoch", real)
    state = run()
    assert state.epoch == 2
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert json.loads((tmp_path / "straight" / "dvclive" / "metrics.json").read_text()) == \
        json.loads((tmp_path / "resumed" / "dvclive" / "metrics.json").read_text())
    rows = (tmp_path / "resumed" / "dvclive" / "plots" / "metrics" / "val" / "miou.tsv").read_text().strip().splitlines()
    assert rows[0] == "step\tmiou" and len(rows) == 3


def test_non_finite_loss_stops_the_run(synth_root, prepared, tmp_path):
    with pytest.raises(CitypipeError, match="non-finite loss"):
        _small_run(synth_root, prepared, tmp_path, **{"train.lr": 1e12, "train.warmup_iters": 0})()


@pytest.mark.parametrize("amp_dtype", [torch.bfloat16, pytest.param(torch.float16, marks=pytest.mark.slow)])  # CPU fp16: 300 s at load 15
def test_mixed_precision_and_channels_last_branches_of_the_loop(amp_dtype):
    """The loop's CUDA fast paths (autocast, channels_last input, fp16 grad scaler), run on the CPU,
    which supports them too: the step trains, the loss stays finite, fp16 goes through the scaler."""
    from citypipe.distributed import DistInfo
    from citypipe.models.deeplab import ModelConfig, build_model
    from citypipe.runtime import Runtime

    torch.manual_seed(0)
    model = build_model(ModelConfig("deeplabv3plus", "resnet18", 16, True)).to(memory_format=torch.channels_last)
    runtime = Runtime(torch.device("cpu"), amp_dtype, channels_last=True)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8, enabled=amp_dtype == torch.float16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1.0)
    batches = [(torch.randint(0, 256, (2, 3, 64, 128), dtype=torch.uint8), torch.randint(0, 19, (2, 64, 128), dtype=torch.uint8))
               for _ in range(2)]
    before = [p.detach().clone() for p in model.parameters()]
    scaler_steps = []
    unscaled_step = scaler.step
    scaler.step = lambda opt, *args, **kwargs: scaler_steps.append(1) or unscaled_step(opt, *args, **kwargs)
    state = loop_module.TrainState()
    setup = loop_module.TrainingSetup(model, model, batches, None, optimizer, scheduler,
                                      SegmentationLoss(None, False, 0.7, 100, 0.4), scaler, runtime, DistInfo(0, 1, 0),
                                      loop_module.LoopConfig(1, 0, 1, 1))
    stats = loop_module.train_one_epoch(setup, 0, state)
    assert torch.isfinite(torch.tensor(stats["loss"])) and state.iteration == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert len(scaler_steps) == (2 if amp_dtype == torch.float16 else 0)  # fp16 steps go through the scaler


def test_another_runs_best_checkpoint_stays_until_the_run_ends_without_one_and_corrupt_weights_are_named(tmp_path):
    from citypipe.training.loop import TrainState
    from citypipe.training.resume import finish_run, fresh_start
    from citypipe.training.trainer import read_weights

    (tmp_path / "best.pt").write_bytes(b"another run's best")
    assert fresh_start(tmp_path).epoch == 0 and (tmp_path / "best.pt").exists()  # nothing deleted before its replacement
    finish_run(tmp_path, TrainState(), {"run": 1})  # ended without a best of its own: the other run's must not stand in
    assert not (tmp_path / "best.pt").exists()
    (tmp_path / "class_weights.json").write_text("{not json")
    with pytest.raises(CitypipeError, match=r"class_weights.json: class weights is not valid JSON \(.*rerun prepare-labels\)"):
        read_weights(tmp_path / "class_weights.json", ["road"], "class weights")


class _CountingBatches:
    """A loader stand-in: `n` fixed (image, label) batches, counting how many the loop drew."""

    def __init__(self, n: int) -> None:
        gen = torch.Generator().manual_seed(0)
        self.batches = [(torch.randint(0, 256, (2, 3, 8, 16), dtype=torch.uint8, generator=gen),
                         torch.randint(0, 19, (2, 8, 16), dtype=torch.uint8, generator=gen)) for _ in range(n)]
        self.drawn = 0

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            self.drawn += 1
            yield batch


@pytest.mark.parametrize("bad_batch, batches, stopped_after, read_range", [
    (3, 25, 10, "1-10"),  # caught at the first read, 7 batches later
    (13, 14, 14, "11-14"),  # caught at the epoch's end, before fit writes a checkpoint
])
def test_a_non_finite_loss_read_late_still_stops_the_run_naming_the_batch(bad_batch, batches, stopped_after,
                                                                          read_range):
    """The loop reads the loss every READ_EVERY batches (no host sync per step); a NaN in between is
    still reported with its own batch number, and the epoch never returns (no checkpoint of NaN weights)."""
    from citypipe.distributed import DistInfo
    from citypipe.runtime import Runtime

    assert loop_module.READ_EVERY == 10
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 19, 1)
    calls = []
    base = SegmentationLoss(None, False, 0.7, 100, 0.4)

    def criterion(outputs, target):
        calls.append(1)
        loss = base({"out": outputs}, target)
        return loss * float("nan") if len(calls) == bad_batch else loss

    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = _CountingBatches(batches)
    setup = loop_module.TrainingSetup(model, model, loader, None, optimizer,
                                      torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1.0), criterion,
                                      torch.amp.GradScaler("cpu", enabled=False),
                                      Runtime(torch.device("cpu"), None, False), DistInfo(0, 1, 0),
                                      loop_module.LoopConfig(1, 0, 1, 1))
    with pytest.raises(CitypipeError, match=rf"non-finite loss \(nan\) at epoch 1, batch {bad_batch} "
                                            rf"\(read with batches {read_range}\)"):
        loop_module.train_one_epoch(setup, 0, loop_module.TrainState())
    assert loader.drawn == stopped_after
