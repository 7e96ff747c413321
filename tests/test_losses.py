"""OHEM against F.cross_entropy, and its min_kept quota counted per image of the batch (mmseg)."""
import pytest
import torch
import torch.nn.functional as F

from citypipe.training.losses import (
    SegmentationLoss,
    ohem_cross_entropy,
    ohem_keep_mask,
)


def inverse_log_weights() -> torch.Tensor:
    """Weights spread like CitySynth's inverse-log ones (ENet's 1 / ln(1.02 + p)): 1.5 to ~50."""
    shares = torch.linspace(0.0, 0.4, 19)
    return 1.0 / torch.log(1.02 + shares)


def batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 19, 16, 24, generator=generator) * 2  # (N, K, H, W)
    target = torch.randint(0, 19, (2, 16, 24), generator=generator)  # (N, H, W)
    target[:, :3] = 255
    return logits, target


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("thresh, min_kept", [(1.0, 1), (0.0, 16 * 24)])  # every pixel, by threshold or by quota
@pytest.mark.parametrize("seed", [0, 1])
def test_ohem_keeping_every_pixel_is_cross_entropy(weighted, thresh, min_kept, seed):
    logits, target = batch(seed)
    weight = inverse_log_weights() if weighted else None
    assert bool(ohem_keep_mask(logits, target, thresh, min_kept).eq(target != 255).all())
    expected = F.cross_entropy(logits, target, weight=weight, ignore_index=255)
    assert float(ohem_cross_entropy(logits, target, weight, thresh, min_kept)) == pytest.approx(float(expected), abs=1e-6)
    criterion = SegmentationLoss(weight, True, thresh, min_kept, 0.4)
    assert float(criterion({"out": logits}, target)) == pytest.approx(float(expected), abs=1e-6)


@pytest.mark.parametrize("weighted", [False, True])
def test_ohem_normalises_by_the_kept_pixels_class_weights(weighted):
    logits, target = batch(2)
    weight = inverse_log_weights() if weighted else None
    keep = ohem_keep_mask(logits, target, 0.0, 40)
    assert int(keep.sum()) == 80
    kept_target = torch.where(keep, target, torch.full_like(target, 255))
    expected = F.cross_entropy(logits, kept_target, weight=weight, ignore_index=255)  # weighted mean over the kept pixels
    assert float(ohem_cross_entropy(logits, target, weight, 0.0, 40)) == pytest.approx(float(expected), abs=1e-6)


@pytest.mark.parametrize("min_kept", [10, 50, 150, 200])
def test_min_kept_counts_per_image_with_one_easy_image(min_kept):
    logits, target = batch(3)
    # image 1 is easy: its true class wins by a margin of 8 to 10 (distinct, no ties), so the hardest
    # pixels lie in image 0 (true-class probabilities there are below 0.99)
    margin = 8 + 2 * torch.rand(16, 24, generator=torch.Generator().manual_seed(5))  # (H, W)
    logits[1] = F.one_hot(target[1].clamp(max=18), 19).permute(2, 0, 1).float() * margin  # (K, H, W)
    keep = ohem_keep_mask(logits, target, 0.0, min_kept)  # thresh 0: only the quota keeps pixels
    assert int(keep.sum()) == 2 * min_kept  # min_kept x N, as mmseg's batch_kept (not min_kept per batch)
    hard_valid = int((target[0] != 255).sum())  # 13 x 24 = 312
    from_hard = min(2 * min_kept, hard_valid)  # pooled: the easy image gives only what image 0 can't
    assert int(keep[0].sum()) == from_hard and int(keep[1].sum()) == 2 * min_kept - from_hard
    prob = logits.softmax(1).gather(1, target.clamp(max=18).unsqueeze(1)).squeeze(1)  # (N, H, W)
    assert float(prob[0][target[0] != 255].max()) < 0.99 < float(prob[1][target[1] != 255].min())
    hardest = prob[0][target[0] != 255].sort().values[:from_hard]
    assert torch.equal(prob[0][keep[0]].sort().values, hardest)


def test_threshold_keeps_more_than_the_quota():
    logits, target = batch(4)
    keep = ohem_keep_mask(logits, target, 0.7, 5)
    prob = logits.softmax(1).gather(1, target.clamp(max=18).unsqueeze(1)).squeeze(1)
    assert torch.equal(keep, (target != 255) & (prob < 0.7)) and int(keep.sum()) > 10


def reference_loss_over_all_pixels(logits, target, weight, keep=None) -> float:
    """mmseg's avg_non_ignore=False written out pixel by pixel: sum of w[t] x -log softmax[t] over the
    valid (and kept) pixels, divided by the count of all pixels."""
    log_prob = logits.double().log_softmax(1)  # (N, K, H, W)
    total = 0.0
    n, _, h, w = logits.shape
    for i in range(n):
        for y in range(h):
            for x in range(w):
                t = int(target[i, y, x])
                if t == 255 or (keep is not None and not keep[i, y, x]):
                    continue
                total += (1.0 if weight is None else float(weight[t])) * -float(log_prob[i, t, y, x])
    return total / (n * h * w)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ohem", [False, True])
def test_loss_average_all_counts_ignored_pixels_as_zero(weighted, ohem):
    logits, target = batch(4)  # 3 of 16 rows ignored
    weight = inverse_log_weights() if weighted else None
    keep = ohem_keep_mask(logits, target, 0.5, 40) if ohem else None
    expected = reference_loss_over_all_pixels(logits, target, weight, keep)
    criterion = SegmentationLoss(weight, ohem, 0.5, 40, 0.4, "all")
    assert float(criterion({"out": logits}, target)) == pytest.approx(expected, rel=1e-5)
    with_aux = float(criterion({"out": logits, "aux": logits}, target))
    assert with_aux == pytest.approx(1.4 * expected, rel=1e-5)


def test_loss_average_valid_is_all_rescaled_by_the_valid_share():
    """Unweighted, the two averages differ by the share of non-ignored pixels only (13/16 rows here)."""
    logits, target = batch(5)
    valid = float(SegmentationLoss(None, False, 0.7, 1, 0.0, "valid")({"out": logits}, target))
    over_all = float(SegmentationLoss(None, False, 0.7, 1, 0.0, "all")({"out": logits}, target))
    assert valid == pytest.approx(float(F.cross_entropy(logits, target, ignore_index=255)), rel=1e-6)
    assert over_all == pytest.approx(valid * 13 / 16, rel=1e-5)
