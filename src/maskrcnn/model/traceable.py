"""Mask R-CNN inference on one image with every size computed as a tensor, so that a trace (ONNX export) works for
any image size.

Shapes: H x W the image, h x w resized, Hp x Wp padded, L levels, R proposals, K classes, D detections, M mask size.

``MaskRCNN.forward`` does its size arithmetic in Python ints (resize scale, padding, anchor cache, per-level counts),
which a trace would freeze to the example image's values. ``TraceableMaskRCNN`` runs the same stages with the same
modules and parameters, but as tensor operations throughout: the resize scale, the padding, the anchor grids,
top-k counts, clipping bounds and the box scaling all follow the input's shape in the traced graph. Data-dependent
counts (boxes kept by score filters and NMS) come from nonzero / NMS ops. It returns mask probabilities at M x M,
not pasted: pasting is done by the caller with ``structures.masks.paste_masks``, as ``MaskRCNN`` does.

Its outputs equal ``MaskRCNN``'s up to float rounding (tests/export compares them through ONNX Runtime).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms, roi_align

from maskrcnn.model.mask_rcnn import MaskRCNN
from maskrcnn.model.poolers import MultiLevelRoIAlign, assign_levels


def _clip(boxes: Tensor, size: Tensor) -> Tensor:
    """boxes: (..., 4) xyxy; size: (2,) int64 (h, w) -> boxes clipped to [0, w] x [0, h]."""
    h, w = size[0].to(boxes.dtype), size[1].to(boxes.dtype)
    x = boxes[..., 0::2].clamp(min=0)
    y = boxes[..., 1::2].clamp(min=0)
    x = torch.minimum(x, w)
    y = torch.minimum(y, h)
    # (..., 2) x 2 -> (..., 2, 2) -> (..., 4) in x1, y1, x2, y2 order
    return torch.stack((x, y), dim=-1).reshape(boxes.shape)


def _nonempty(boxes: Tensor, min_size: float) -> Tensor:
    """(R, 4) -> (R,) bool: width and height at least ``min_size``."""
    return ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)


class TraceableMaskRCNN(nn.Module):
    """One image in, detections out: (image, score_threshold) -> (boxes, scores, labels, mask_probs).

    image: Tensor[3, H, W] uint8 RGB; score_threshold: Tensor[] float32 (detections below it get no mask and are not
    returned) -> boxes: (D, 4) float32 xyxy in the image's pixels, scores: (D,), labels: (D,) int64 in 1..K,
    mask_probs: (D, M, M) float32 in [0, 1] (each detection's own class), in decreasing score order.
    """

    def __init__(self, model: MaskRCNN):
        super().__init__()
        self.model = model
        self.eval()

    def forward(self, image: Tensor, score_threshold: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        m = self.model
        original_size = torch._shape_as_tensor(image)[1:]  # (2,) int64: H, W
        x, resized_size = self._preprocess(image)
        features = m.backbone(x)  # [P2, ..., P6], each (1, F, H_l, W_l)
        proposals = self._proposals(features, torch._shape_as_tensor(x)[2:], resized_size)
        boxes, scores, labels = self._detect(features[:4], proposals, resized_size)
        keep = torch.nonzero(scores >= score_threshold).squeeze(1)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        mask_logits = m.roi_heads.mask_head.class_logits(self._pool(m.roi_heads.mask_pooler, features[:4], boxes), labels)
        # float32 ratio of the original to the resized size, as MaskRCNN.postprocess computes it
        ratio = original_size.to(torch.float32) / resized_size.to(torch.float32)  # (h, w)
        boxes = boxes * torch.stack([ratio[1], ratio[0], ratio[1], ratio[0]])
        return boxes, scores, labels, mask_logits.sigmoid()

    def _preprocess(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """(3, H, W) uint8 -> (1, 3, Hp, Wp) normalised, resized, zero-padded; and (h, w) int64."""
        m = self.model
        x = image.to(torch.float32) / 255.0
        x = (x - m.pixel_mean) / m.pixel_std
        # The resize rule of MaskRCNN._resize in float64, operation for operation, as Python's floats compute it:
        # floor(H * min(min_size / short side, max_size / long side)). (1-D tensors throughout: the exporter would
        # turn 0-dim ones into float32 scalars, and the size would then be off by one pixel for some images.)
        size = torch._shape_as_tensor(x)[1:].to(torch.float64)  # (2,): H, W
        sides = torch.cat([size.min(dim=0, keepdim=True).values, size.max(dim=0, keepdim=True).values])  # (2,)
        limits = torch.tensor([float(m.min_size), float(m.max_size)], dtype=torch.float64)
        scale = (limits / sides).min(dim=0, keepdim=True).values  # (1,)
        resized = torch.floor(size * scale).to(torch.int64)  # (2,): h, w
        x = F.interpolate(x[None], size=(resized[0], resized[1]), mode="bilinear", align_corners=False)
        d = m.size_divisible
        padded = torch.div(resized + (d - 1), d, rounding_mode="floor") * d
        pad = padded - resized
        x = F.pad(x, (0, pad[1], 0, pad[0]))
        return x, resized

    def _proposals(self, features: list[Tensor], padded_size: Tensor, resized_size: Tensor) -> Tensor:
        """RPN: top-k per level, decode, clip, drop small, NMS per level, top-k -> (R, 4)."""
        rpn = self.model.rpn
        generator = rpn.anchor_generator
        logits_per_level, deltas_per_level = rpn.head(features)
        boxes_all, scores_all, levels_all = [], [], []
        for level, (feature, logits, deltas) in enumerate(zip(features, logits_per_level, deltas_per_level)):
            grid = torch._shape_as_tensor(feature)[2:]  # (H_l, W_l)
            if generator.strides_from_image_size:
                stride = torch.div(padded_size, grid, rounding_mode="floor")
            else:
                stride = torch.full((2,), generator.strides[level], dtype=torch.int64)
            anchors = self._grid_anchors(grid, stride, generator.cell_anchors[level])
            # (1, A, H, W) -> (H*W*A,);  (1, A*4, H, W) -> (1, A, 4, H, W) -> (H, W, A, 4) -> (H*W*A, 4)
            logits = logits.permute(0, 2, 3, 1).reshape(-1)
            num_anchors = logits_per_level[level].shape[1]
            deltas = deltas.reshape(1, num_anchors, 4, deltas.shape[-2], deltas.shape[-1])
            deltas = deltas.permute(0, 3, 4, 1, 2).reshape(-1, 4)
            k = torch.minimum(torch._shape_as_tensor(logits)[0], torch.tensor(rpn.pre_nms_topk[1]))
            top_logits, idx = logits.topk(k)
            boxes = rpn.box_coder.decode(deltas[idx], anchors[idx])
            boxes_all.append(boxes)
            scores_all.append(top_logits.sigmoid())
            levels_all.append(torch.full_like(idx, level))
        boxes, scores, levels = torch.cat(boxes_all), torch.cat(scores_all), torch.cat(levels_all)
        boxes = _clip(boxes, resized_size)
        keep = torch.nonzero(_nonempty(boxes, rpn.min_box_size)).squeeze(1)
        boxes, scores, levels = boxes[keep], scores[keep], levels[keep]
        keep = batched_nms(boxes, scores, levels, rpn.nms_thresh)[: rpn.post_nms_topk[1]]
        return boxes[keep]

    @staticmethod
    def _grid_anchors(grid: Tensor, stride: Tensor, cell: Tensor) -> Tensor:
        """grid (H_l, W_l), stride (s_y, s_x) int64, cell (A, 4) -> (H_l*W_l*A, 4) in (y, x, a) order."""
        shift_x = torch.arange(grid[1], dtype=torch.int64) * stride[1]
        shift_y = torch.arange(grid[0], dtype=torch.int64) * stride[0]
        yy, xx = torch.meshgrid(shift_y, shift_x, indexing="ij")
        xx, yy = xx.reshape(-1), yy.reshape(-1)
        shifts = torch.stack((xx, yy, xx, yy), dim=1).to(torch.float32)  # (H_l*W_l, 4)
        # (H_l*W_l, 1, 4) + (1, A, 4) -> (H_l*W_l*A, 4)
        return (shifts.view(-1, 1, 4) + cell.view(1, -1, 4)).reshape(-1, 4)

    @staticmethod
    def _pool(pooler: MultiLevelRoIAlign, features: list[Tensor], boxes: Tensor) -> Tensor:
        """features: L x (1, C, H_l, W_l); boxes (R, 4) -> (R, C, S, S), each box from its FPN level."""
        rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], dim=1)  # (R, 5)
        levels = assign_levels(boxes, min_level=pooler.min_level, max_level=pooler.max_level)
        out = features[0].new_zeros((rois.shape[0], features[0].shape[1], *pooler.output_size))
        for level, (feature, scale) in enumerate(zip(features, pooler.scales)):
            idx = torch.nonzero(levels == level).squeeze(1)
            pooled = roi_align(
                feature, rois[idx], pooler.output_size, spatial_scale=scale,
                sampling_ratio=pooler.sampling_ratio, aligned=pooler.aligned,
            )
            out = out.index_put((idx,), pooled)
        return out

    def _detect(self, features: list[Tensor], proposals: Tensor, resized_size: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Box head: classify and refine proposals, score threshold, per-class NMS, the top detections."""
        heads = self.model.roi_heads
        class_logits, box_deltas = heads.box_predictor(heads.box_head(self._pool(heads.box_pooler, features, proposals)))
        num_classes = class_logits.shape[1]  # K + 1
        boxes = heads.box_coder.decode(box_deltas, proposals)  # (R, 4(K+1))
        scores = class_logits.softmax(dim=-1)  # (R, K+1)
        # (R, 4(K+1)) -> (R, K+1, 4), background dropped -> (R*K, 4): one candidate per (RoI, class)
        boxes = _clip(boxes.reshape(-1, num_classes, 4), resized_size)[:, 1:].reshape(-1, 4)
        labels = torch.arange(1, num_classes).view(1, -1).expand_as(scores[:, 1:]).reshape(-1)
        scores = scores[:, 1:].reshape(-1)
        keep = torch.nonzero(scores > heads.score_thresh).squeeze(1)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = torch.nonzero(_nonempty(boxes, 1e-2)).squeeze(1)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = batched_nms(boxes, scores, labels, heads.nms_thresh)[: heads.detections_per_image]
        return boxes[keep], scores[keep], labels[keep]
