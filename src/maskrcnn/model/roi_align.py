"""RoIAlign on channels-last feature maps, as weighted gathers (``embedding_bag``): one per call, or per point grid
when the number of sampling points adapts to each box.

Shapes: N images, C channels, H x W feature map, R boxes, S output size, g = sampling ratio (points per bin axis;
per box and axis when adaptive).

Same definition as torchvision's ``roi_align`` (He et al. 2017; ``aligned`` as detectron2's ROIAlignV2): bin (i, j)
of a box averages the bilinear interpolation of the feature map at g x g regularly spaced points inside it. A point
more than one pixel outside the map contributes 0; otherwise it is clamped into the map. The average of a bin is a
fixed linear combination of at most 4 g_y g_x feature vectors (g_y = g_x = g unless adaptive), so the pooled
features are

    out[r, i, j, :] = sum_k  weight[r, i, j, k] * features[index[r, i, j, k], :]

with the feature map viewed as an (N * H * W, C) table, which is what ``F.embedding_bag(mode="sum")`` computes, reading
each C-vector contiguously when the map is channels-last. Example: a 1 x 1 box [0, 0, 1, 1] with S = 1, g = 1 and
aligned=False samples the point (0.5, 0.5): the mean of the four pixels around it, weight 1/4 each.

torchvision's CPU kernel loops over channels for each sampling point and first makes a channels-last map contiguous;
this form is about 10x faster on CPU at R = 1000, C = 256, S = 7, and is used for inference only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _axis_samples(
    start: Tensor, bin_size: Tensor, *, size: int, output_size: int, sampling_ratio: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Sample positions along one axis of each box and their two bilinear neighbours.

    start, bin_size: (R,) -> low, high: (R, S*g) int64 pixel indices; w_low, w_high: (R, S*g) weights, zero for
    points more than one pixel outside the map.
    """
    bins = torch.arange(output_size, dtype=start.dtype, device=start.device).repeat_interleave(sampling_ratio)
    within = torch.arange(sampling_ratio, dtype=start.dtype, device=start.device).repeat(output_size)
    # torchvision's order of operations: start + bin * bin_size + (k + 0.5) * bin_size / g
    pos = start[:, None] + bins * bin_size[:, None] + (within + 0.5) * bin_size[:, None] / sampling_ratio
    valid = (pos >= -1.0) & (pos <= size)
    pos = pos.clamp(min=0)
    low = pos.to(torch.int64)  # truncation (pos >= 0)
    at_edge = low >= size - 1
    low = low.clamp(max=size - 1)
    high = torch.where(at_edge, low, low + 1)
    pos = torch.where(at_edge, low.to(pos.dtype), pos)
    frac = pos - low
    w_high = frac * valid
    w_low = (1 - frac) * valid
    return low, high, w_low, w_high


def roi_align_channels_last(
    features: Tensor, rois: Tensor, *, output_size: int, spatial_scale: float, sampling_ratio: int, aligned: bool
) -> Tensor:
    """features: Tensor[N, C, H, W] (channels-last is fastest); rois: Tensor[R, 5] (batch index, x1, y1, x2, y2) in
    image pixels -> Tensor[R, C, S, S], a channels-last view. ``sampling_ratio`` <= 0 is torchvision's adaptive
    rule (detectron2's): ceil(box height / S) x ceil(box width / S) points per bin, box by box."""
    num_images, channels, height, width = features.shape
    size = output_size
    num_rois = rois.shape[0]
    if num_rois == 0:
        return features.new_zeros((0, channels, size, size))
    rois = rois.to(features.dtype)
    offset = 0.5 if aligned else 0.0
    x1 = rois[:, 1] * spatial_scale - offset
    y1 = rois[:, 2] * spatial_scale - offset
    box_w = rois[:, 3] * spatial_scale - offset - x1
    box_h = rois[:, 4] * spatial_scale - offset - y1
    if not aligned:  # the original RoIAlign makes every box at least 1 x 1
        box_w, box_h = box_w.clamp(min=1.0), box_h.clamp(min=1.0)
    # (N, C, H, W) -> (N, H, W, C) -> (N*H*W, C): a view when the map is channels-last
    table = features.permute(0, 2, 3, 1).reshape(num_images * height * width, channels)
    boxes = (rois[:, 0].to(torch.int64), x1, y1, box_w, box_h)
    if sampling_ratio > 0:
        pooled = _pool(table, boxes, map_size=(height, width), output_size=size, grid=(sampling_ratio, sampling_ratio))
    else:
        pooled = _pool_adaptive(table, boxes, map_size=(height, width), output_size=size)
    # (R, S, S, C) -> (R, C, S, S), channels-last strides
    return pooled.permute(0, 3, 1, 2)


def _pool_adaptive(table: Tensor, boxes: tuple[Tensor, ...], *, map_size: tuple[int, int], output_size: int) -> Tensor:
    """``_pool`` with each box's own point grid, ceil(h / S) x ceil(w / S) as torchvision computes it (a grid of
    0 points pools 0): the boxes are pooled in groups that share a grid -> Tensor[R, S, S, C]."""
    box_w, box_h = boxes[3], boxes[4]
    grids = torch.stack([(box_h / output_size).ceil(), (box_w / output_size).ceil()], dim=1).to(torch.int64)  # (R, 2)
    distinct, group = torch.unique(grids, dim=0, return_inverse=True)  # (G, 2), (R,)
    pooled = table.new_empty((len(group), output_size, output_size, table.shape[1]))
    for k, (g_y, g_x) in enumerate(distinct.tolist()):
        members = torch.nonzero(group == k).squeeze(1)  # (R_k,)
        if g_y > 0 and g_x > 0:
            members_boxes = tuple(b[members] for b in boxes)
            pooled[members] = _pool(table, members_boxes, map_size=map_size, output_size=output_size, grid=(g_y, g_x))
        else:
            pooled[members] = 0
    return pooled


def _pool(
    table: Tensor, boxes: tuple[Tensor, ...], *, map_size: tuple[int, int], output_size: int, grid: tuple[int, int]
) -> Tensor:
    """One weighted gather: boxes (batch index, x1, y1, w, h), each Tensor[R], in map pixels, pooled from ``table``
    (N*H*W, C) at grid = (g_y, g_x) points per bin -> Tensor[R, S, S, C]."""
    image, x1, y1, box_w, box_h = boxes
    height, width = map_size
    size, (g_y, g_x) = output_size, grid
    num_rois = image.shape[0]
    yl, yh, wyl, wyh = _axis_samples(y1, box_h / size, size=height, output_size=size, sampling_ratio=g_y)
    xl, xh, wxl, wxh = _axis_samples(x1, box_w / size, size=width, output_size=size, sampling_ratio=g_x)

    # Row index into the (N*H*W, C) table of each (point y, point x, corner): (R, S*g_y, S*g_x, 4)
    image_offset = image[:, None, None] * (height * width)
    rows_low, rows_high = (yl * width)[:, :, None], (yh * width)[:, :, None]
    index = torch.stack(
        [rows_low + xl[:, None, :], rows_low + xh[:, None, :], rows_high + xl[:, None, :], rows_high + xh[:, None, :]],
        dim=-1,
    ) + image_offset[..., None]
    wy = torch.stack([wyl, wyl, wyh, wyh], dim=-1)[:, :, None, :]  # (R, S*g_y, 1, 4)
    wx = torch.stack([wxl, wxh, wxl, wxh], dim=-1)[:, None, :, :]  # (R, 1, S*g_x, 4)
    weight = wy * wx / (g_y * g_x)  # (R, S*g_y, S*g_x, 4), the bin average folded in

    # (R, S, g_y, S, g_x, 4) -> (R, S, S, g_y, g_x, 4) -> (R*S*S, 4 g_y g_x): one bag of samples per output bin
    bins = (num_rois, size, g_y, size, g_x, 4)
    index = index.view(bins).permute(0, 1, 3, 2, 4, 5).reshape(num_rois * size * size, -1)
    weight = weight.view(bins).permute(0, 1, 3, 2, 4, 5).reshape(num_rois * size * size, -1)
    pooled = F.embedding_bag(index, table, per_sample_weights=weight, mode="sum")  # (R*S*S, C)
    return pooled.view(num_rois, size, size, -1)
