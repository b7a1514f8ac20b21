"""Axis-aligned boxes as ``Tensor[R, 4]`` (x1, y1, x2, y2) in absolute pixels, and the box <-> delta coder.

A box covers the continuous region [x1, x2) x [y1, y2); its width is x2 - x1 (no "+1").
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# exp(dw) is clamped so that a box grows at most 1000/16 times its reference: keeps exp() finite on wild deltas.
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


def box_area(boxes: Tensor) -> Tensor:
    """boxes: Tensor[R, 4] -> Tensor[R] areas."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def clip_boxes(boxes: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Clip boxes: Tensor[..., 4] to an image of (height, width); returns a new tensor."""
    height, width = image_size
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    # (..., 2) x 2 -> (..., 2, 2) -> (..., 4) in x1, y1, x2, y2 order
    return torch.stack((x, y), dim=-1).reshape(boxes.shape)


def nonempty_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Tensor[R] bool: boxes whose width and height are both at least ``min_size``, and not 0 (so ``min_size`` 0
    keeps every box with an area, as detectron2's threshold of 0 does)."""
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    return (widths >= min_size) & (heights >= min_size) & (widths > 0) & (heights > 0)


def box_ioa(boxes: Tensor, regions: Tensor) -> Tensor:
    """Intersection over the area of each box: Tensor[R, 4], Tensor[C, 4] -> Tensor[R, C] in [0, 1].

    Used to find proposals lying inside crowd regions (where IoU would be small because the region is large).
    """
    lt = torch.max(boxes[:, None, :2], regions[None, :, :2])  # (R, C, 2)
    rb = torch.min(boxes[:, None, 2:], regions[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)  # (R, C)
    return inter / box_area(boxes).clamp(min=1e-6)[:, None]


class BoxCoder:
    """Encode boxes as deltas (dx, dy, dw, dh) relative to reference boxes, and decode them back.

    For a reference box with centre (x, y) and size (w, h), and a target box (x', y', w', h')::

        dx = wx * (x' - x) / w      dw = ww * log(w' / w)
        dy = wy * (y' - y) / h      dh = wh * log(h' / h)

    The RPN uses weights (1, 1, 1, 1), the box head (10, 10, 5, 5) so that its targets have roughly unit variance.

    Example: reference (0, 0, 10, 10) and target (5, 0, 15, 10) give deltas (0.5, 0, 0, 0) with weights 1.
    """

    def __init__(self, weights: tuple[float, float, float, float], *, scale_clamp: float = DEFAULT_SCALE_CLAMP):
        self.weights = tuple(float(w) for w in weights)
        self.scale_clamp = scale_clamp

    def encode(self, targets: Tensor, references: Tensor) -> Tensor:
        """targets, references: Tensor[R, 4] xyxy -> deltas Tensor[R, 4]."""
        wx, wy, ww, wh = self.weights
        ref_w = references[:, 2] - references[:, 0]
        ref_h = references[:, 3] - references[:, 1]
        ref_x = references[:, 0] + 0.5 * ref_w
        ref_y = references[:, 1] + 0.5 * ref_h
        tgt_w = targets[:, 2] - targets[:, 0]
        tgt_h = targets[:, 3] - targets[:, 1]
        tgt_x = targets[:, 0] + 0.5 * tgt_w
        tgt_y = targets[:, 1] + 0.5 * tgt_h
        dx = wx * (tgt_x - ref_x) / ref_w
        dy = wy * (tgt_y - ref_y) / ref_h
        dw = ww * torch.log(tgt_w / ref_w)
        dh = wh * torch.log(tgt_h / ref_h)
        return torch.stack((dx, dy, dw, dh), dim=1)

    def decode(self, deltas: Tensor, references: Tensor) -> Tensor:
        """deltas: Tensor[R, 4*C] (C boxes per reference, e.g. one per class), references: Tensor[R, 4]
        -> boxes Tensor[R, 4*C] xyxy."""
        references = references.to(deltas.dtype)
        wx, wy, ww, wh = self.weights
        widths = references[:, 2:3] - references[:, 0:1]  # (R, 1)
        heights = references[:, 3:4] - references[:, 1:2]
        ctr_x = references[:, 0:1] + 0.5 * widths
        ctr_y = references[:, 1:2] + 0.5 * heights
        dx = deltas[:, 0::4] / wx  # (R, C)
        dy = deltas[:, 1::4] / wy
        dw = (deltas[:, 2::4] / ww).clamp(max=self.scale_clamp)
        dh = (deltas[:, 3::4] / wh).clamp(max=self.scale_clamp)
        pred_x = dx * widths + ctr_x
        pred_y = dy * heights + ctr_y
        half_w = 0.5 * (torch.exp(dw) * widths)
        half_h = 0.5 * (torch.exp(dh) * heights)
        boxes = torch.stack((pred_x - half_w, pred_y - half_h, pred_x + half_w, pred_y + half_h), dim=2)  # (R, C, 4)
        return boxes.flatten(1)  # (R, C, 4) -> (R, 4*C)
