"""Where the model fails, accumulated beside the confusion matrix: Boundary IoU, trimap IoU, per-image
confusion matrices and instance recall by size. `FrameAnalysis.update` takes a batch; `result()`
returns plain numpy counts that `citypipe/evaluation/per_image.py` turns into scores and files.

All of a frame's pixel statistics come from ONE bincount on the device: each valid pixel (ground
truth not 255) gets the code

    ((level * 2 + pred_edge) * 2 + gt_edge) * (K+1) * K + gt * K + pred

where `level` is the narrowest trimap band holding it (citypipe/evaluation/boundary.py) and gt_edge /
pred_edge say whether it lies on its class's Boundary-IoU boundary in the ground truth / prediction.
Summing that (L+1, 2, 2, K+1, K) table over the right axes gives the frame's confusion matrix, its
boundary intersections and unions, and every band's confusion matrix.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist

from citypipe.distributed import current, gather_in_rank_order, gather_rows
from citypipe.evaluation.boundary import (
    band_levels,
    boundary_distance,
    near_other_label,
)
from citypipe.evaluation.instances import InstanceRecall
from citypipe.labels import NUM_CLASSES, label_id_to_train_id_lut

# pixels per bincount step on the CPU: temporaries stay in cache (as in confusion.py)
CPU_CHUNK = 1 << 18


@dataclass(frozen=True)
class AnalysisCounts:
    """Integer counts over the scored frames (K classes, N frames, L trimap widths, B size bins)."""

    frame_ids: tuple[str, ...]  # (N,) in scoring order
    confusion: np.ndarray  # (N, K, K) int64 per-image gt x pred counts (ground truth 255 left out)
    boundary_intersection: np.ndarray  # (N, K) int64 |B(gt==c) & B(pred==c)| over non-ignored pixels
    boundary_union: np.ndarray  # (N, K) int64 |B(gt==c) | B(pred==c)| over non-ignored pixels
    trimap_widths: tuple[int, ...]  # (L,)
    trimap_confusion: np.ndarray  # (L, K, K) int64 gt x pred counts of pixels within each band width
    instances_total: np.ndarray  # (K, B) int64 ground-truth instances per class and size bin
    instances_found: np.ndarray  # (K, B) int64 of which at least half the pixels were predicted as the class


def _bincount(index: torch.Tensor, size: int) -> torch.Tensor:
    counts = torch.zeros(size, dtype=torch.int64, device=index.device)
    chunk = CPU_CHUNK if index.device.type == "cpu" else max(1, index.numel())
    for start in range(0, index.numel(), chunk):
        counts += torch.bincount(index[start:start + chunk], minlength=size)
    return counts


def frame_table(label: torch.Tensor, prediction: torch.Tensor, widths: tuple[int, ...], distance: int,
                num_classes: int) -> torch.Tensor:
    """(H, W) ground truth (255 = ignored) and prediction trainIds -> (L+1, 2, 2, K, K) int64 pixel counts
    indexed [band level, on the prediction's boundary, on the ground truth's boundary, gt, pred]."""
    k = num_classes
    level = band_levels(label[None], widths)[0]  # (H, W) uint8
    edges = near_other_label(torch.stack([label, prediction.to(label.dtype)]), distance, border=True)  # (2, H, W)
    size = (len(widths) + 1) * 4 * (k + 1) * k
    dtype = torch.int16 if size <= torch.iinfo(torch.int16).max else torch.int32
    code = (level.to(dtype) * 2 + edges[1]) * 2 + edges[0]
    index = (code * (k + 1) + label.to(dtype).clamp(max=k)) * k + prediction.to(dtype)
    table = _bincount(index.reshape(-1), size).view(len(widths) + 1, 2, 2, k + 1, k)
    return table[:, :, :, :k, :]  # ground truth 255 (clamped to row K) is not scored


class FrameAnalysis:
    """Accumulates AnalysisCounts on `device`, one frame at a time (frames may differ in size).

    Under DDP each rank accumulates its own frames; `all_reduce` combines them into the whole split's."""

    def __init__(self, device: torch.device | str, boundary_dilation_ratio: float, trimap_widths: Sequence[int],
                 num_classes: int = NUM_CLASSES) -> None:
        widths = tuple(int(w) for w in trimap_widths)
        if not widths or any(w < 1 for w in widths) or list(widths) != sorted(set(widths)):
            raise ValueError(f"trimap_widths must be increasing values >= 1, got {list(trimap_widths)}")
        self.device, self.k, self.widths, self.ratio = torch.device(device), num_classes, widths, boundary_dilation_ratio
        self.frame_ids: list[str] = []
        self._per_image: list[torch.Tensor] = []  # (K, K + 2) per frame: confusion | intersection | union
        self.trimap = torch.zeros(len(widths), num_classes, num_classes, dtype=torch.int64, device=self.device)
        lut = torch.as_tensor(label_id_to_train_id_lut(), device=self.device)
        self.instances = InstanceRecall(self.device, num_classes, lut)

    @torch.no_grad()
    def update(self, prediction: torch.Tensor, label: torch.Tensor, instances: torch.Tensor,
               frame_ids: Sequence[str]) -> None:
        """prediction, label: (N, H, W) trainIds; instances: (N, H, W) instanceIds; all on the device."""
        for i, frame_id in enumerate(frame_ids):
            self._update_frame(prediction[i], label[i], instances[i])
            self.frame_ids.append(frame_id)

    def _update_frame(self, prediction: torch.Tensor, label: torch.Tensor, instances: torch.Tensor) -> None:
        distance = boundary_distance(*label.shape, self.ratio)
        table = frame_table(label, prediction, self.widths, distance, self.k)  # (L+1, 2, 2, K, K)
        confusion = table.sum((0, 1, 2))
        gt_boundary = table[:, :, 1].sum((0, 1, 3))  # (K,) boundary pixels of each ground-truth class
        pred_boundary = table[:, 1].sum((0, 1, 2))  # (K,) boundary pixels of each predicted class
        intersection = table[:, 1, 1].sum(0).diagonal()
        union = gt_boundary + pred_boundary - intersection
        self._per_image.append(torch.cat([confusion, intersection[:, None], union[:, None]], dim=1))
        self.trimap += table.sum((1, 2)).cumsum(0)[: len(self.widths)]  # band i = levels 0..i
        self.instances.update(instances, prediction)

    def all_reduce(self) -> None:
        """Combine all DDP ranks (no-op without a process group): integer totals summed, the per-image
        rows and frame ids gathered in rank order, which is frame order (contiguous shards)."""
        info = current()
        if info.world_size <= 1:
            return
        for tensor in (self.trimap, self.instances.total, self.instances.found):
            dist.all_reduce(tensor)
        rows = gather_rows(self._per_image, (self.k, self.k + 2), np.int64, info)
        self.frame_ids = [frame_id for ids in gather_in_rank_order(self.frame_ids, info) for frame_id in ids]
        self._per_image = [torch.from_numpy(row).to(self.device) for row in rows]

    def result(self) -> AnalysisCounts:
        k = self.k
        rows = (torch.stack(self._per_image).cpu().numpy() if self._per_image
                else np.zeros((0, k, k + 2), dtype=np.int64))
        return AnalysisCounts(
            frame_ids=tuple(self.frame_ids), confusion=rows[:, :, :k], boundary_intersection=rows[:, :, k],
            boundary_union=rows[:, :, k + 1], trimap_widths=self.widths, trimap_confusion=self.trimap.cpu().numpy(),
            instances_total=self.instances.total.cpu().numpy(), instances_found=self.instances.found.cpu().numpy())
