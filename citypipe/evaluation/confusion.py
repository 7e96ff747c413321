"""A confusion matrix accumulated on the device, and the instance statistics behind iIoU.

Layout: rows = ground-truth trainId, columns = predicted trainId (19 x 19); ground truth 255 is
left out, exactly as the official evaluator leaves out `ignoreInEval` rows.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from citypipe.distributed import current, gather_rows
from citypipe.labels import (
    IGNORE_INDEX,
    NUM_CLASSES,
    evaluated_labels,
    label_id_to_train_id_lut,
)

# trainIds of the categories whose classes all have instances (as the official script selects them)
INSTANCE_CATEGORIES = {"human": (11, 12), "vehicle": (13, 14, 15, 16, 17, 18)}


def average_class_sizes() -> torch.Tensor:
    """(19,) float64: the official average instance size per trainId (0 for stuff classes)."""
    # the official module sets its constants up when imported: import it only when needed
    from cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling import (
        args as official_args,
    )

    sizes = torch.zeros(NUM_CLASSES, dtype=torch.float64)
    for label in evaluated_labels():
        sizes[label.trainId] = official_args.avgClassSize.get(label.name, 0.0)
    return sizes


# Pixels per step on the CPU: int16 temporaries of 512 KB are recycled by the allocator while they
# are hot in cache; whole-frame ones (4 MB at 1024x2048) page-fault on every update, 4x slower.
# One thread in chunks beats two threads on whole halves (the work is memory-bound).
CPU_CHUNK = 1 << 18


def _pair_counts(target: torch.Tensor, prediction: torch.Tensor, n: int) -> torch.Tensor:
    """((n + 1) * n,) counts of target * n + prediction; ignored targets (255) land in row n.

    int16 index math and an extra row instead of a boolean mask: no int64 copies, no compaction.
    """
    if target.device.type != "cpu" and prediction.dtype == torch.uint8:
        return _pair_counts_without_sync(target, prediction, n)
    counts = torch.zeros((n + 1) * n, dtype=torch.int64, device=target.device)
    chunk = CPU_CHUNK if target.device.type == "cpu" else max(1, target.numel())  # one step on GPUs
    for start in range(0, target.numel(), chunk):
        index = target[start:start + chunk].to(torch.int16).clamp_(max=n).mul_(n)
        counts += torch.bincount(index.add_(prediction[start:start + chunk]), minlength=(n + 1) * n)
    return counts


def _pair_counts_without_sync(target: torch.Tensor, prediction: torch.Tensor, n: int) -> torch.Tensor:
    """_pair_counts for uint8 predictions, as a fixed-size scatter: bincount sizes its output from the
    input's max, a read on the host that stalls a GPU's queue once per image; target * n + prediction
    is below (n + 1) * n + 256, so that many bins always suffice. Integer sums: the same counts."""
    index = target.to(torch.int64).clamp_(max=n).mul_(n).add_(prediction)  # (P,)
    counts = torch.zeros((n + 1) * n + 256, dtype=torch.int64, device=target.device)
    return counts.scatter_add_(0, index, torch.ones_like(index))[: (n + 1) * n]


class ConfusionMatrix:
    """Accumulates pixel counts and instance statistics on `device`."""

    def __init__(self, device: torch.device | str = "cpu", num_classes: int = NUM_CLASSES,
                 keep_per_image: bool = False) -> None:
        self.n = num_classes
        self.device = torch.device(device)
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=self.device)
        # each update's own (n, n) counts, for bootstrap intervals over images (update one image at a time)
        self.per_update: list[torch.Tensor] | None = [] if keep_per_image else None
        # iIoU sums per trainId and per instance category: weighted true positives and false negatives
        self.inst_tp = torch.zeros(num_classes, dtype=torch.float64, device=self.device)
        self.inst_fn = torch.zeros_like(self.inst_tp)
        self.cat_tp = torch.zeros(len(INSTANCE_CATEGORIES), dtype=torch.float64, device=self.device)
        self.cat_fn = torch.zeros_like(self.cat_tp)
        # each frame's own iIoU terms [inst_tp | inst_fn | cat_tp | cat_fn], in update order: the sums above
        # are float64, so under DDP they are re-added from every rank's rows in frame order (`all_reduce`),
        # giving the bits of a one-process run rather than a sum of per-rank partial sums
        self._instance_rows: list[torch.Tensor] = []
        self._avg_size = average_class_sizes().to(self.device)
        self._train_id_of = torch.as_tensor(label_id_to_train_id_lut(), device=self.device).long()
        # class -> its instance category (-1: none); 2 lookups per instance instead of per pixel
        self._category_of = torch.full((num_classes,), -1, dtype=torch.int64, device=self.device)
        for c, ids in enumerate(INSTANCE_CATEGORIES.values()):
            self._category_of[list(ids)] = c

    @torch.no_grad()
    def update(self, target: torch.Tensor, prediction: torch.Tensor) -> None:
        """target, prediction: (...,) uint8/integer trainIds of the same shape; target 255 is ignored."""
        counts = _pair_counts(target.reshape(-1), prediction.reshape(-1), self.n)[: self.n * self.n].view(self.n, self.n)
        self.mat += counts
        if self.per_update is not None:
            self.per_update.append(counts)

    @torch.no_grad()
    def update_instances(self, instances: torch.Tensor, prediction: torch.Tensor) -> None:
        """instances: (H, W) official instanceIds (labelId*1000+k); prediction: (H, W) trainIds.

        Per instance of an evaluated class: tp = its pixels predicted as its class, fn = the rest,
        both weighted by the official average class size / instance size; the same per category.
        """
        mask = instances > 1000
        ids = instances[mask]
        if ids.numel() == 0:
            return
        lut = self._train_id_of
        unique, inverse = torch.unique(ids, return_inverse=True)
        train_id = lut[torch.div(unique, 1000, rounding_mode="floor").long()]  # (I,)
        keep = train_id < IGNORE_INDEX  # caravan, trailer: ignoreInEval
        predicted = prediction[mask].long()  # (P,)
        size = torch.bincount(inverse, minlength=len(unique)).double()
        correct = (predicted == train_id[inverse]).double()
        tp = torch.bincount(inverse, weights=correct, minlength=len(unique))
        category = self._category_of[train_id.clamp(max=self.n - 1)]  # (I,)
        pred_category = self._category_of[predicted.clamp(max=self.n - 1)]
        cat_correct = (pred_category == category[inverse]).double()
        cat_tp = torch.bincount(inverse, weights=cat_correct, minlength=len(unique))
        tid = train_id[keep]
        weight = self._avg_size[tid] / size[keep]
        has_category = category[keep] >= 0
        c = category[keep][has_category]
        k, categories = self.n, len(INSTANCE_CATEGORIES)
        row = torch.zeros(2 * k + 2 * categories, dtype=torch.float64, device=self.device)
        row[:k].index_add_(0, tid, tp[keep] * weight)
        row[k:2 * k].index_add_(0, tid, (size[keep] - tp[keep]) * weight)
        row[2 * k:2 * k + categories].index_add_(0, c, (cat_tp[keep] * weight)[has_category])
        row[2 * k + categories:].index_add_(0, c, ((size[keep] - cat_tp[keep]) * weight)[has_category])
        self._instance_rows.append(row)
        self._add_instance_row(row)

    def _add_instance_row(self, row: torch.Tensor) -> None:
        k, categories = self.n, len(INSTANCE_CATEGORIES)
        self.inst_tp += row[:k]
        self.inst_fn += row[k:2 * k]
        self.cat_tp += row[2 * k:2 * k + categories]
        self.cat_fn += row[2 * k + categories:]

    def all_reduce(self) -> None:
        """Combine the statistics of all DDP ranks (no-op without a process group): pixel counts are
        summed (integers: any order gives the same sums); the iIoU sums are re-added frame by frame in
        frame order, and the per-image matrices gathered in frame order, so the result is a one-process
        run's to the bit (ranks hold contiguous shards, citypipe/distributed.py's shard_batches)."""
        info = current()
        if info.world_size <= 1:
            return
        dist.all_reduce(self.mat)
        rows = gather_rows(self._instance_rows, (2 * self.n + 2 * len(INSTANCE_CATEGORIES),), np.float64, info)
        self._instance_rows = [torch.from_numpy(row).to(self.device) for row in rows]
        for tensor in (self.inst_tp, self.inst_fn, self.cat_tp, self.cat_fn):
            tensor.zero_()
        for row in self._instance_rows:  # the same additions, in the same order, as one process makes
            self._add_instance_row(row)
        if self.per_update is not None:
            matrices = gather_rows(self.per_update, (self.n, self.n), np.int64, info)
            self.per_update = [torch.from_numpy(m).to(self.device) for m in matrices]
