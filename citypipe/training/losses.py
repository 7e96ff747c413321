"""Cross-entropy with ignore 255, optional class weights, optional OHEM, auxiliary head weight."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from citypipe.labels import IGNORE_INDEX


def ohem_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
                       thresh: float, min_kept: int) -> torch.Tensor:
    """Online hard example mining (mmseg's OHEMPixelSampler): keep pixels whose true-class
    probability is below `thresh`, and at least the `min_kept` hardest ones."""
    pixel_loss = F.cross_entropy(logits, target, weight=weight, ignore_index=IGNORE_INDEX, reduction="none")  # (N, H, W)
    with torch.no_grad():
        valid = target != IGNORE_INDEX
        prob = logits.softmax(1).gather(1, target.clamp(max=logits.shape[1] - 1).unsqueeze(1)).squeeze(1)
        prob = prob.masked_fill(~valid, 1.0)
        sorted_prob = prob[valid].sort().values
        if sorted_prob.numel() == 0:
            return pixel_loss.sum() * 0.0
        kth = sorted_prob[min(min_kept, sorted_prob.numel()) - 1]
        keep = valid & (prob < max(thresh, float(kth)))
    return pixel_loss[keep].mean() if keep.any() else pixel_loss.sum() * 0.0


class SegmentationLoss(nn.Module):
    def __init__(self, class_weights: torch.Tensor | None, ohem: bool, ohem_thresh: float, ohem_min_kept: int,
                 aux_weight: float) -> None:
        super().__init__()
        self.register_buffer("class_weights", class_weights, persistent=False)
        self.ohem, self.ohem_thresh, self.ohem_min_kept, self.aux_weight = ohem, ohem_thresh, ohem_min_kept, aux_weight

    def _single(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()  # the loss in fp32, also under autocast
        if self.ohem:
            return ohem_cross_entropy(logits, target, self.class_weights, self.ohem_thresh, self.ohem_min_kept)
        return F.cross_entropy(logits, target, weight=self.class_weights, ignore_index=IGNORE_INDEX)

    def forward(self, outputs: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """outputs: {"out": (N, K, H, W), optional "aux"}; target: (N, H, W) int64 trainIds."""
        loss = self._single(outputs["out"], target)
        if "aux" in outputs and self.aux_weight > 0:
            loss = loss + self.aux_weight * self._single(outputs["aux"], target)
        return loss
