"""Region Proposal Network (Ren et al. 2015) over FPN levels: objectness and box deltas per anchor, then proposals.

Shapes: N images, L levels, A anchors per cell, level l has H_l x W_l cells, T = sum_l H_l * W_l * A anchors in
all, G ground-truth boxes of an image, R proposals of an image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms, box_iou

from maskrcnn.model.anchors import AnchorGenerator
from maskrcnn.model.matcher import BACKGROUND, IGNORE, Matcher
from maskrcnn.model.sampler import sample_balanced
from maskrcnn.structures.boxes import BoxCoder, box_ioa, clip_boxes, nonempty_boxes
from maskrcnn.structures.sizes import at_most


class RPNHead(nn.Module):
    """A shared 3x3 conv + ReLU (``num_convs`` of them: ``conv``, then ``extra_convs``; torchvision's v2 model has
    two), then 1x1 convs to A objectness logits and 4A box deltas per cell.

    The two 1x1 predictors run as one convolution to 5A channels, so each map is read once (1.9x the two separate
    convolutions on P2-P6 of an 800 x 1216 image, two threads; benchmarks/levers.py).
    """

    def __init__(self, *, in_channels: int, num_anchors: int, num_convs: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.extra_convs = nn.ModuleList(nn.Conv2d(in_channels, in_channels, 3, padding=1) for _ in range(num_convs - 1))
        self.objectness_logits = nn.Conv2d(in_channels, num_anchors, 1)
        self.anchor_deltas = nn.Conv2d(in_channels, num_anchors * 4, 1)
        for conv in (self.conv, *self.extra_convs, self.objectness_logits, self.anchor_deltas):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """features: L x (N, C, H_l, W_l) -> logits L x (N, A, H_l, W_l), deltas L x (N, A*4, H_l, W_l)."""
        num_anchors = self.objectness_logits.out_channels
        # (A, C, 1, 1) and (4A, C, 1, 1) -> (5A, C, 1, 1)
        weight = torch.cat([self.objectness_logits.weight, self.anchor_deltas.weight])
        bias = torch.cat([self.objectness_logits.bias, self.anchor_deltas.bias])
        logits, deltas = [], []
        for x in features:
            x = F.relu(self.conv(x), inplace=True)  # in place: the conv's output is not kept for its backward
            for conv in self.extra_convs:
                x = F.relu(conv(x), inplace=True)
            out = F.conv2d(x, weight, bias)  # (N, 5A, H_l, W_l)
            logits.append(out[:, :num_anchors])
            deltas.append(out[:, num_anchors:])
        return logits, deltas


def rpn_losses(
    pred_logits: Tensor,
    pred_deltas: Tensor,
    gt_labels: Tensor,
    gt_deltas: Tensor,
    *,
    batch_size_per_image: int,
    positive_fraction: float,
    beta: float,
) -> dict[str, Tensor]:
    """Objectness BCE and smooth-L1 box loss over a balanced sample of anchors of each image.

    pred_logits: (N, T); pred_deltas: (N, T, 4); gt_labels: (N, T) int64 (1 object, 0 background, -1 ignore);
    gt_deltas: (N, T, 4). Both losses are normalised by the number of sampled anchors, so an image without objects
    contributes exactly 0 box loss.
    """
    num_images, num_anchors = gt_labels.shape
    positives, negatives = [], []
    for i, labels in enumerate(gt_labels):
        pos, neg = sample_balanced(labels, batch_size=batch_size_per_image, positive_fraction=positive_fraction)
        positives.append(pos + i * num_anchors)
        negatives.append(neg + i * num_anchors)
    pos = torch.cat(positives)
    sampled = torch.cat([pos, *negatives])
    num_sampled = max(sampled.numel(), 1)

    logits = pred_logits.reshape(-1)  # (N, T) -> (N*T,)
    labels = gt_labels.reshape(-1)
    loss_objectness = F.binary_cross_entropy_with_logits(
        logits[sampled], labels[sampled].to(logits.dtype), reduction="sum"
    ) / num_sampled
    loss_box = F.smooth_l1_loss(
        pred_deltas.reshape(-1, 4)[pos], gt_deltas.reshape(-1, 4)[pos], beta=beta, reduction="sum"
    ) / num_sampled
    return {"loss_rpn_objectness": loss_objectness, "loss_rpn_box": loss_box}


class RPN(nn.Module):
    def __init__(
        self,
        *,
        head: RPNHead,
        anchor_generator: AnchorGenerator,
        pre_nms_topk: tuple[int, int],
        post_nms_topk: tuple[int, int],
        nms_thresh: float,
        min_box_size: float,
        fg_iou_thresh: float,
        bg_iou_thresh: float,
        batch_size_per_image: int,
        positive_fraction: float,
        box_loss_beta: float,
        crowd_ioa_thresh: float = 0.7,
    ):
        """pre_nms_topk, post_nms_topk: (training, inference) counts, per level and per image respectively."""
        super().__init__()
        self.head = head
        self.anchor_generator = anchor_generator
        self.pre_nms_topk = pre_nms_topk
        self.post_nms_topk = post_nms_topk
        self.nms_thresh = nms_thresh
        self.min_box_size = min_box_size
        self.matcher = Matcher(high=fg_iou_thresh, low=bg_iou_thresh, allow_low_quality_matches=True)
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.box_loss_beta = box_loss_beta
        self.crowd_ioa_thresh = crowd_ioa_thresh

    def forward(
        self,
        features: list[Tensor],
        image_sizes: list[tuple[int, int]],
        padded_size: tuple[int, int],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """features: L x (N, C, H_l, W_l) -> proposals N x Tensor[R, 4] (detached), losses (training only).

        image_sizes, padded_size: (height, width) as ints, or 0-dim tensors while tracing (``structures/sizes.py``).
        """
        anchors_per_level = self.anchor_generator(padded_size, features)  # L x (H_l*W_l*A, 4)
        logits_per_level, deltas_per_level = self.head(features)
        num_images = features[0].shape[0]
        # (N, A, H, W) -> (N, H, W, A) -> (N, H*W*A)
        pred_logits = torch.cat([x.permute(0, 2, 3, 1).reshape(num_images, -1) for x in logits_per_level], dim=1)
        # (N, A*4, H, W) -> (N, A, 4, H, W) -> (N, H, W, A, 4) -> (N, H*W*A, 4)
        pred_deltas = torch.cat(
            [
                x.view(num_images, -1, 4, x.shape[-2], x.shape[-1]).permute(0, 3, 4, 1, 2).reshape(num_images, -1, 4)
                for x in deltas_per_level
            ],
            dim=1,
        )
        anchors = torch.cat(anchors_per_level)  # (T, 4)
        proposals = self._select_proposals(
            pred_logits.detach(), pred_deltas.detach(), anchors, [a.shape[0] for a in anchors_per_level], image_sizes
        )
        if not self.training:
            return proposals, {}
        if targets is None:
            raise ValueError("targets are required in training mode")
        gt_labels, gt_deltas = self._label_anchors(anchors, targets)
        losses = rpn_losses(
            pred_logits,
            pred_deltas,
            gt_labels,
            gt_deltas,
            batch_size_per_image=self.batch_size_per_image,
            positive_fraction=self.positive_fraction,
            beta=self.box_loss_beta,
        )
        return proposals, losses

    def _select_proposals(
        self,
        pred_logits: Tensor,
        pred_deltas: Tensor,
        anchors: Tensor,
        anchors_per_level: list[int],
        image_sizes: list[tuple[int, int]],
    ) -> list[Tensor]:
        """Top-k anchors per level by objectness, decoded, clipped, small boxes dropped, NMS per level, top-k."""
        pre_nms_topk = self.pre_nms_topk[0 if self.training else 1]
        post_nms_topk = self.post_nms_topk[0 if self.training else 1]
        num_images = pred_logits.shape[0]
        top_idx, levels = [], []
        offset = 0
        for level, (logits, count) in enumerate(zip(pred_logits.split(anchors_per_level, dim=1), anchors_per_level)):
            idx = logits.topk(at_most(count, pre_nms_topk), dim=1).indices  # (N, k)
            top_idx.append(idx + offset)
            levels.append(torch.full_like(idx[0], level))  # (k,)
            offset += count
        top_idx = torch.cat(top_idx, dim=1)  # (N, K)
        levels = torch.cat(levels)  # (K,)
        batch_idx = torch.arange(num_images, device=top_idx.device)[:, None]
        scores = pred_logits[batch_idx, top_idx].sigmoid()  # (N, K)
        deltas = pred_deltas[batch_idx, top_idx]  # (N, K, 4)
        boxes = self.box_coder.decode(deltas.reshape(-1, 4), anchors[top_idx].reshape(-1, 4))
        boxes = boxes.view(num_images, -1, 4)  # (N*K, 4) -> (N, K, 4)

        proposals = []
        for boxes_i, scores_i, size in zip(boxes, scores, image_sizes):
            boxes_i = clip_boxes(boxes_i, size)
            keep = nonempty_boxes(boxes_i, self.min_box_size)
            boxes_i, scores_i, levels_i = boxes_i[keep], scores_i[keep], levels[keep]
            keep = batched_nms(boxes_i, scores_i, levels_i, self.nms_thresh)[:post_nms_topk]
            proposals.append(boxes_i[keep])
        return proposals

    @torch.no_grad()
    def _label_anchors(self, anchors: Tensor, targets: list[dict[str, Tensor]]) -> tuple[Tensor, Tensor]:
        """-> labels (N, T) int64 in {1, 0, -1} and regression targets (N, T, 4) for each image's anchors."""
        all_labels, all_deltas = [], []
        for target in targets:
            gt_boxes = target["boxes"]
            matches = self.matcher(box_iou(gt_boxes, anchors))  # (T,)
            labels = torch.ones_like(matches)
            labels[matches == BACKGROUND] = 0
            labels[matches == IGNORE] = -1
            crowd = target.get("crowd_boxes")
            if crowd is not None and crowd.numel() > 0:
                in_crowd = box_ioa(anchors, crowd).max(dim=1).values > self.crowd_ioa_thresh
                labels[in_crowd & (labels == 0)] = -1
            if gt_boxes.numel() == 0:
                deltas = torch.zeros_like(anchors)
            else:
                deltas = self.box_coder.encode(gt_boxes[matches.clamp(min=0)], anchors)
            all_labels.append(labels)
            all_deltas.append(deltas)
        return torch.stack(all_labels), torch.stack(all_deltas)
