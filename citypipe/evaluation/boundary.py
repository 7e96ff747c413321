"""Where a label map changes class: the masks behind Boundary IoU and the trimap bands, on the device.

Boundary IoU (Cheng et al., CVPR 2021) takes the boundary of a binary mask M as M minus its erosion,
where the erosion pads M with one row/column of zeros on every side, erodes `d` times with a 3x3
square and crops the padding. `d` 3x3 erosions are one erosion by a (2d+1)x(2d+1) square, and the
zero padding makes every pixel outside the frame "not M". So for M = (labels == c), a pixel p of
class c is on M's boundary exactly when some pixel within Chebyshev distance d of p has another
label or lies outside the frame. That test does not depend on c, so one pass per label map gives the
boundary pixels of every class at once (`near_other_label(..., border=True)`): the pixels with an
8-neighbour of another label (`label_edges`), dilated by d - 1.

The trimap band of width k is the same test without the border: ground-truth pixels within Chebyshev
distance k of a pixel of another ground-truth label (ignored 255 counts as a label: it is a class edge
in the annotation). The frame's edge is not a class boundary there.

Window extremes are separable, on uint8, and use doubling: a window of 2r+1 pixels costs ~log2(2r+1)
elementwise maxima per axis, not 2r+1 as max_pool2d's (measured on the CPU: a 23-pixel max_pool2d pair on
a 1024x2048 map took ~0.45 s; benchmarks/bench_analysis.py times the whole analysis).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

# Labels are uint8 trainIds (0..18, ground truth also 255). Fills for pixels outside the frame:
BORDER = 254  # a value no label has: outside counts as "another label" (breaks a window's uniformity)
NEUTRAL_FOR_MAX, NEUTRAL_FOR_MIN = 0, 255  # leave a window's maximum / minimum as they are


def boundary_distance(height: int, width: int, ratio: float) -> int:
    """Boundary IoU's erosion count d = max(1, round(ratio * diagonal)) (Python rounds halves to even,
    as the reference implementation's int(round(...)) does)."""
    return max(1, int(round(ratio * math.sqrt(height ** 2 + width ** 2))))


def _window_along(x: torch.Tensor, radius: int, dim: int, op: Callable) -> torch.Tensor:
    """op (torch.maximum / torch.minimum) over windows of 2*radius+1 along `dim` of an already padded x;
    the result is 2*radius shorter along `dim`."""
    width = 2 * radius + 1
    out_len = x.shape[dim] - 2 * radius
    span, m = 1, x
    while span * 2 <= width:  # doubling: afterwards m[i] = op over x[i : i + span], span <= width < 2 * span
        m = op(m.narrow(dim, 0, m.shape[dim] - span), m.narrow(dim, span, m.shape[dim] - span))
        span *= 2
    # two overlapping spans of length `span` cover the window [i, i + width)
    return op(m.narrow(dim, 0, out_len), m.narrow(dim, width - span, out_len))


def _window_extreme(labels: torch.Tensor, radius: int, op: Callable, fill: int) -> torch.Tensor:
    """(N, H, W) uint8 -> (N, H, W) op over each pixel's (2r+1)^2 window, pixels outside the frame = fill."""
    padded = F.pad(labels, (radius, radius, radius, radius), value=fill)
    return _window_along(_window_along(padded, radius, 1, op), radius, 2, op)


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """(N, H, W) uint8 0/1 -> 1 where a pixel within Chebyshev distance `radius` is 1 (outside the frame: 0)."""
    return mask if radius == 0 else _window_extreme(mask, radius, torch.maximum, 0)


def label_edges(labels: torch.Tensor, border: bool) -> torch.Tensor:
    """(N, H, W) integer labels -> (N, H, W) uint8: 1 where an 8-neighbour has another label (with `border`,
    also pixels on the frame's edge: outside counts as another label)."""
    if labels.dtype != torch.uint8:
        raise ValueError(f"labels must be uint8 trainIds, got {labels.dtype}")
    if border and bool((labels == BORDER).any()):
        raise ValueError(f"label value {BORDER} is reserved for outside the frame")
    x = labels  # uint8: half the memory traffic of int16 (the work is memory-bound)
    high = _window_extreme(x, 1, torch.maximum, BORDER if border else NEUTRAL_FOR_MAX)
    low = _window_extreme(x, 1, torch.minimum, BORDER if border else NEUTRAL_FOR_MIN)
    return (high != low).to(torch.uint8)  # the window holds the pixel itself: uniform = all its own label


def near_other_label(labels: torch.Tensor, radius: int, border: bool) -> torch.Tensor:
    """(N, H, W) integer labels -> (N, H, W) bool: some pixel within Chebyshev distance `radius` has another
    label (with `border`, pixels outside the frame count as another label).

    = the edge pixels (label_edges) dilated by radius - 1: on a king's-move path from p to the nearest pixel
    of another label, the label changes between two neighbours, the first of which is an edge pixel at most
    radius - 1 from p. One max per doubling step, instead of a max and a min per radius."""
    if radius < 1:
        raise ValueError(f"radius must be >= 1, got {radius}")
    return _dilate(label_edges(labels, border), radius - 1).bool()


def band_levels(labels: torch.Tensor, widths: tuple[int, ...]) -> torch.Tensor:
    """(N, H, W) ground truth -> (N, H, W) uint8 level: the index of the narrowest band (of the increasing
    `widths`) that holds the pixel, len(widths) for pixels in none. Bands are nested, so band i is level <= i.

    Each band dilates the previous one by the difference of widths (squares add up, also at the frame's edge)."""
    band = label_edges(labels, border=False)
    level = torch.full(labels.shape, len(widths), dtype=torch.uint8, device=labels.device)
    previous = 1
    for width in widths:
        band = _dilate(band, width - previous)
        level -= band  # a pixel in k of the nested bands ends at level len(widths) - k
        previous = width
    return level
