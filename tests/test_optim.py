"""build_optimizer: the backbone group gets lr x backbone_lr_mult, the heads (DeepLab head and aux head) lr x
head_lr_mult; every trainable parameter is in exactly one group, frozen ones in none; weight decay applies to
every parameter (docs/RECIPE.md: "5e-4 on all parameters"), and the schedule scales each group from its own lr.

The learning rates and the decay are checked by their effect: one step with zero gradients moves each
parameter p to p * (1 - lr_group * weight_decay), for SGD (coupled decay, first momentum step) and for AdamW
(decoupled decay; Adam's own update is 0 for a zero gradient)."""
from __future__ import annotations

import pytest
import torch

from citypipe.models.deeplab import ModelConfig, build_model
from citypipe.training.optim import build_optimizer
from citypipe.training.schedule import lr_factor

LR, WD, BACKBONE_MULT, HEAD_MULT = 0.01, 5e-4, 0.1, 10.0


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(ModelConfig("deeplabv3plus", "resnet18", 16, True))  # with the aux head


def test_groups_partition_the_trainable_parameters(model):
    frozen = [p for n, p in model.named_parameters() if n.startswith("backbone.") and ".bn1." in n]
    assert frozen
    for p in frozen:
        p.requires_grad_(False)
    try:
        optimizer = build_optimizer(model, "sgd", LR, 0.9, False, WD, BACKBONE_MULT, HEAD_MULT)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    ids = [id(p) for group in optimizer.param_groups for p in group["params"]]
    assert len(ids) == len(set(ids))  # no parameter twice
    trainable = {id(p) for p in model.parameters()} - {id(p) for p in frozen}
    assert set(ids) == trainable
    names = {id(p): n for n, p in model.named_parameters()}
    backbone, heads = optimizer.param_groups
    assert backbone["params"] and all(names[id(p)].startswith("backbone.") for p in backbone["params"])
    assert {names[id(p)].split(".")[0] for p in heads["params"]} == {"head", "aux_head"}
    assert (backbone["lr"], heads["lr"]) == (pytest.approx(LR * BACKBONE_MULT), pytest.approx(LR * HEAD_MULT))


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_one_step_decays_each_parameter_by_its_groups_lr_times_weight_decay(model, name):
    torch.manual_seed(1)
    model = build_model(model.config)  # its own copy: this test steps the optimizer
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = build_optimizer(model, name, LR, 0.9, False, WD, BACKBONE_MULT, HEAD_MULT)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for n, p in model.named_parameters():  # biases and norm weights included
        lr = LR * (BACKBONE_MULT if n.startswith("backbone.") else HEAD_MULT)
        error = float((p.detach() - before[n] * (1 - lr * WD)).abs().max())  # (assert_close per tensor is slow)
        assert error <= 1e-6 * float(before[n].abs().max()) + 1e-12, n
    assert all(group["weight_decay"] == WD for group in optimizer.param_groups)


def test_the_schedule_scales_each_group_from_its_own_lr(model):
    optimizer = build_optimizer(model, "sgd", LR, 0.9, False, WD, BACKBONE_MULT, HEAD_MULT)
    factor = lambda it: lr_factor(it, 10, "poly", 0.9, 2, 0.1)  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    for iteration in range(6):
        backbone, heads = (group["lr"] for group in optimizer.param_groups)
        assert backbone == pytest.approx(LR * BACKBONE_MULT * factor(iteration))
        assert heads == pytest.approx(LR * HEAD_MULT * factor(iteration))
        optimizer.step()
        scheduler.step()


def test_nesterov_without_momentum_is_plain_sgd_and_unknown_names_fail(model):
    optimizer = build_optimizer(model, "sgd", LR, 0.0, True, WD, 1.0, 1.0)
    assert optimizer.defaults["nesterov"] is False  # torch refuses nesterov with zero momentum
    with pytest.raises(ValueError, match="adam"):
        build_optimizer(model, "adam", LR, 0.9, False, WD, 1.0, 1.0)
