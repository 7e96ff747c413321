"""Cross-entropy with ignore 255, optional class weights, optional OHEM, auxiliary head weight, averaged
over the non-ignored pixels or over all of them (mmseg's default)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from citypipe.labels import IGNORE_INDEX


def ohem_keep_mask(logits: torch.Tensor, target: torch.Tensor, thresh: float, min_kept: int) -> torch.Tensor:
    """mmseg's OHEMPixelSampler: the valid pixels whose true-class probability is below `thresh`,
    and at least the min_kept x N hardest of the batch (pooled: an easy image may give none).

    mmseg's own cut keeps prob < the (k+1)-th smallest, which drops the easiest pixel when the
    quota exceeds the valid pixels; here a quota that large keeps them all.
    """
    valid = target != IGNORE_INDEX  # (N, H, W)
    safe_target = target.clamp(max=logits.shape[1] - 1).unsqueeze(1)  # (N, 1, H, W), 255 -> any class
    prob = logits.softmax(1).gather(1, safe_target).squeeze(1)  # (N, H, W) true-class probability
    valid_prob = prob[valid]
    if valid_prob.numel() == 0:
        return valid
    batch_kept = min(min_kept * target.shape[0], valid_prob.numel())
    kth = valid_prob.kthvalue(batch_kept).values  # the batch_kept-th smallest probability
    return valid & ((prob < thresh) | (prob <= kth))


def ohem_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
                       thresh: float, min_kept: int) -> torch.Tensor:
    """Cross-entropy over the pixels OHEM keeps, normalised as F.cross_entropy(weight=...) is: by
    the kept pixels' class weights, so class weights do not rescale the loss (a plain mean did,
    by the mean weight: x32 with CitySynth's inverse-log weights)."""
    pixel_loss = F.cross_entropy(logits, target, weight=weight, ignore_index=IGNORE_INDEX, reduction="none")  # (N, H, W), x weight[target]
    with torch.no_grad():
        keep = ohem_keep_mask(logits, target, thresh, min_kept)  # (N, H, W)
        if weight is None:
            pixel_weight = keep.to(pixel_loss.dtype)
        else:
            pixel_weight = weight[target.clamp(max=logits.shape[1] - 1)] * keep  # (N, H, W)
    if not keep.any():
        return pixel_loss.sum() * 0.0  # keeps the graph, for DDP and the scaler
    return pixel_loss[keep].sum() / pixel_weight.sum()


def cross_entropy_over_all_pixels(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
                                  keep: torch.Tensor | None) -> torch.Tensor:
    """mmseg's CrossEntropyLoss with avg_non_ignore=False (its default): the pixel losses (x the class
    weight of the target) summed over the kept pixels and divided by all N x H x W pixels, ignored and
    dropped ones counting as 0. On Cityscapes ~11.6% of pixels are ignored: ~0.88x the valid mean."""
    pixel_loss = F.cross_entropy(logits, target, weight=weight, ignore_index=IGNORE_INDEX, reduction="none")  # (N, H, W)
    if keep is not None:
        pixel_loss = pixel_loss * keep
    return pixel_loss.sum() / target.numel()


class SegmentationLoss(nn.Module):
    def __init__(self, class_weights: torch.Tensor | None, ohem: bool, ohem_thresh: float, ohem_min_kept: int,
                 aux_weight: float, average: str = "valid") -> None:
        """average: train.loss_average, "valid" (F.cross_entropy's mean) or "all" (mmseg's)."""
        super().__init__()
        self.register_buffer("class_weights", class_weights, persistent=False)
        self.ohem, self.ohem_thresh, self.ohem_min_kept, self.aux_weight = ohem, ohem_thresh, ohem_min_kept, aux_weight
        self.average = average

    def _single(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()  # the loss in fp32, also under autocast
        if self.average == "all":
            keep = None
            if self.ohem:
                with torch.no_grad():
                    keep = ohem_keep_mask(logits, target, self.ohem_thresh, self.ohem_min_kept)  # (N, H, W)
            return cross_entropy_over_all_pixels(logits, target, self.class_weights, keep)
        if self.ohem:
            return ohem_cross_entropy(logits, target, self.class_weights, self.ohem_thresh, self.ohem_min_kept)
        return F.cross_entropy(logits, target, weight=self.class_weights, ignore_index=IGNORE_INDEX)

    def forward(self, outputs: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """outputs: {"out": (N, K, H, W), optional "aux"}; target: (N, H, W) int64 trainIds."""
        loss = self._single(outputs["out"], target)
        if "aux" in outputs and self.aux_weight > 0:
            loss = loss + self.aux_weight * self._single(outputs["aux"], target)
        return loss
