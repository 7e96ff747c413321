"""Where a label map changes class: the masks behind Boundary IoU and the trimap bands, on the device.

Boundary IoU (Cheng et al., CVPR 2021) takes the boundary of a binary mask M as M minus its erosion,
where the erosion pads M with one row/column of zeros on every side, erodes `d` times with a 3x3
square and crops the padding. `d` 3x3 erosions are one erosion by a (2d+1)x(2d+1) square, and the
zero padding makes every pixel outside the frame "not M". So for M = (labels == c), a pixel p of
class c is on M's boundary exactly when some pixel within Chebyshev distance d of p has another
label or lies outside the frame. That test does not depend on c: one window minimum and maximum per
label map gives the boundary pixels of every class at once (`near_other_label(..., border=True)`).

The trimap band of width k is the same test without the border: ground-truth pixels within Chebyshev
distance k of a pixel of another ground-truth label (ignored 255 counts as a label: it is a class edge
in the annotation). The frame's edge is not a class boundary there.

Window extremes are separable and use doubling (a window of 2r+1 pixels costs ~log2(2r+1) elementwise
maxima per axis, not 2r+1 as max_pool2d does): 1024x2048 frames at r = 32 stay a few milliseconds on a GPU.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

BORDER = -2  # a value no label has: outside the frame counts as "another label"
# neutral fills: a window's maximum / minimum ignores them (labels are 0..255)
NEUTRAL_FOR_MAX, NEUTRAL_FOR_MIN = -1, 32767


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
    """(N, H, W) int16 -> (N, H, W) op over each pixel's (2r+1)^2 window, pixels outside the frame = fill."""
    padded = F.pad(labels, (radius, radius, radius, radius), value=fill)
    return _window_along(_window_along(padded, radius, 1, op), radius, 2, op)


def near_other_label(labels: torch.Tensor, radius: int, border: bool) -> torch.Tensor:
    """(N, H, W) integer labels -> (N, H, W) bool: some pixel within Chebyshev distance `radius` has another
    label (with `border`, pixels outside the frame count as another label)."""
    if radius < 1:
        raise ValueError(f"radius must be >= 1, got {radius}")
    x = labels.to(torch.int16)
    high = _window_extreme(x, radius, torch.maximum, BORDER if border else NEUTRAL_FOR_MAX)
    low = _window_extreme(x, radius, torch.minimum, BORDER if border else NEUTRAL_FOR_MIN)
    return high != low  # the window holds the pixel itself, so a uniform window is all its own label


def band_levels(labels: torch.Tensor, widths: tuple[int, ...]) -> torch.Tensor:
    """(N, H, W) ground truth -> (N, H, W) uint8 level: the index of the narrowest band (of the increasing
    `widths`) that holds the pixel, len(widths) for pixels in none. Bands are nested, so band i is level <= i."""
    level = torch.full(labels.shape, len(widths), dtype=torch.uint8, device=labels.device)
    for i in reversed(range(len(widths))):
        level.masked_fill_(near_other_label(labels, widths[i], border=False), i)
    return level
