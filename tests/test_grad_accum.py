"""train.grad_accum_steps is batch-equivalent only without BatchNorm: BN normalises each micro-batch
with its own statistics, so two steps of batch 2 are not one step of batch 4 (README, Params reference)."""
import copy

import pytest
import torch
from torch import nn

from citypipe.training.losses import SegmentationLoss


def tiny_segmenter(batch_norm: bool) -> nn.Module:
    torch.manual_seed(0)
    norm = nn.BatchNorm2d(8) if batch_norm else nn.Identity()
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), norm, nn.ReLU(), nn.Conv2d(8, 19, 1))


def gradients(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, steps: int) -> torch.Tensor:
    """Backward over `steps` equal micro-batches with the loss divided by `steps`, as the training loop does."""
    model = copy.deepcopy(model).train()
    criterion = SegmentationLoss(None, False, 0.7, 1, 0.4)
    for x, y in zip(images.chunk(steps), labels.chunk(steps)):
        (criterion({"out": model(x)}, y) / steps).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])  # (P,)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_two_accumulated_steps_of_2_vs_one_step_of_4(batch_norm):
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(4, 3, 8, 8, generator=generator) + torch.arange(4).view(4, 1, 1, 1)  # (N, 3, H, W), images differ in mean
    labels = torch.randint(0, 19, (4, 8, 8), generator=generator)  # no ignore: equal pixel counts per micro-batch
    model = tiny_segmenter(batch_norm)
    full, accumulated = gradients(model, images, labels, 1), gradients(model, images, labels, 2)
    if batch_norm:
        assert not torch.allclose(full, accumulated, atol=1e-3)
        assert float(torch.nn.functional.cosine_similarity(full, accumulated, dim=0)) < 0.99
    else:
        torch.testing.assert_close(accumulated, full, atol=1e-5, rtol=0)
