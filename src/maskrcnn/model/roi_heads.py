"""RoI heads: the box branch (classify and refine proposals) and the mask branch (a mask per detection).

Shapes: N images, R_i proposals of image i, G_i ground-truth instances, K object classes, D_i detections, M mask size.

Training: proposals plus the ground-truth boxes are matched to ground truth (IoU >= 0.5 foreground), a balanced
sample (25% foreground) feeds the box losses, and the sampled foreground RoIs feed the mask loss.
Inference: per-class boxes and softmax scores, score threshold, per-class NMS, the top detections; masks are then
predicted on the detected boxes, and the predicted class's map is kept.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms, box_iou

from maskrcnn.model.box_head import BoxHead, BoxPredictor, box_head_losses
from maskrcnn.model.mask_head import MaskHead, mask_loss, mask_targets
from maskrcnn.model.matcher import BACKGROUND, IGNORE, Matcher
from maskrcnn.model.poolers import MultiLevelRoIAlign
from maskrcnn.model.sampler import sample_balanced
from maskrcnn.structures.boxes import BoxCoder, box_ioa, clip_boxes, nonempty_boxes
from maskrcnn.structures.sizes import is_tracing


class RoIHeads(nn.Module):
    def __init__(
        self,
        *,
        box_pooler: MultiLevelRoIAlign,
        box_head: BoxHead,
        box_predictor: BoxPredictor,
        mask_pooler: MultiLevelRoIAlign,
        mask_head: MaskHead,
        box_reg_weights: tuple[float, float, float, float],
        fg_iou_thresh: float,
        bg_iou_thresh: float,
        batch_size_per_image: int,
        positive_fraction: float,
        box_loss_beta: float,
        crowd_ioa_thresh: float,
        score_thresh: float,
        nms_thresh: float,
        detections_per_image: int,
        min_box_size: float = 1e-2,
    ):
        """min_box_size: detections narrower or lower than this, in the pixels of the resized image, are dropped."""
        super().__init__()
        self.box_pooler = box_pooler
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.mask_pooler = mask_pooler
        self.mask_head = mask_head
        self.box_coder = BoxCoder(box_reg_weights)
        self.matcher = Matcher(high=fg_iou_thresh, low=bg_iou_thresh, allow_low_quality_matches=False)
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction
        self.box_loss_beta = box_loss_beta
        self.crowd_ioa_thresh = crowd_ioa_thresh
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_image = detections_per_image
        self.min_box_size = min_box_size

    def forward(
        self,
        features: list[Tensor],
        proposals: list[Tensor],
        image_sizes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]] | None = None,
        *,
        score_threshold: float | Tensor = 0.0,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """features: the pooled levels L x (N, C, H_l, W_l); proposals: N x Tensor[R_i, 4]; image_sizes: (h, w) ints,
        or 0-dim tensors while tracing.

        Training -> ([], losses). Inference -> (N x {"boxes": (D, 4), "scores": (D,), "labels": (D,) int64 in 1..K,
        "mask_probs": (D, M, M)}, {}), boxes in the coordinates of the (resized) input images; the detections of
        each image are those of ``score_thresh``, NMS and ``detections_per_image``, less those scoring below
        ``score_threshold`` (dropped before the mask branch).
        """
        features = self.box_pooler.layout(features)  # as the poolers read them; one copy, shared by both
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training mode")
            samples = self._sample_proposals(proposals, targets)
            losses = self._forward_box_train(features, samples)
            losses.update(self._forward_mask_train(features, samples, targets))
            return [], losses
        detections = self._forward_box_inference(features, proposals, image_sizes)
        for d in detections:
            keep = d["scores"] >= score_threshold
            d.update({k: v[keep] for k, v in d.items()})
        self._forward_mask_inference(features, detections)
        return detections, {}

    # ---- training -------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def _sample_proposals(
        self, proposals: list[Tensor], targets: list[dict[str, Tensor]]
    ) -> list[dict[str, Tensor]]:
        """Per image: {"boxes": (S, 4) sampled RoIs, "labels": (S,) 0..K, "matched": (S,) gt index (-1 for
        background), "gt_boxes": (S, 4) each RoI's regression target box}, foreground first."""
        samples = []
        for boxes, target in zip(proposals, targets):
            gt_boxes, gt_labels = target["boxes"], target["labels"]
            boxes = torch.cat([boxes, gt_boxes.to(boxes.dtype)])  # ground truth is a proposal too
            matches = self.matcher(box_iou(gt_boxes, boxes))  # (R,)
            labels = gt_labels[matches.clamp(min=0)] if gt_labels.numel() else torch.zeros_like(matches)
            labels[matches == BACKGROUND] = 0
            labels[matches == IGNORE] = -1
            crowd = target.get("crowd_boxes")
            if crowd is not None and crowd.numel() > 0:
                in_crowd = box_ioa(boxes, crowd.to(boxes.dtype)).max(dim=1).values > self.crowd_ioa_thresh
                labels[in_crowd & (labels == 0)] = -1
            pos, neg = sample_balanced(
                labels, batch_size=self.batch_size_per_image, positive_fraction=self.positive_fraction
            )
            keep = torch.cat([pos, neg])
            matched = matches[keep]
            matched[len(pos) :] = -1
            sampled_boxes = boxes[keep]
            # Background RoIs regress to themselves: a finite target that the loss never reads.
            gt_for_roi = sampled_boxes.clone()
            gt_for_roi[: len(pos)] = gt_boxes[matched[: len(pos)]].to(boxes.dtype)
            samples.append(
                {"boxes": sampled_boxes, "labels": labels[keep], "matched": matched, "gt_boxes": gt_for_roi}
            )
        return samples

    def _forward_box_train(self, features: list[Tensor], samples: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        boxes = [s["boxes"] for s in samples]
        class_logits, box_deltas = self.box_predictor(self.box_head(self.box_pooler(features, boxes)))
        gt_deltas = [self.box_coder.encode(s["gt_boxes"], s["boxes"]) for s in samples]
        return box_head_losses(
            class_logits,
            box_deltas,
            torch.cat([s["labels"] for s in samples]),
            torch.cat(gt_deltas),
            beta=self.box_loss_beta,
        )

    def _forward_mask_train(
        self, features: list[Tensor], samples: list[dict[str, Tensor]], targets: list[dict[str, Tensor]]
    ) -> dict[str, Tensor]:
        """Mask loss on the foreground RoIs whose instance has a mask: one matched to a box-only instance
        (``target["has_mask"]`` False) is neither a positive nor a background mask target."""
        fg_boxes, fg_labels, fg_targets = [], [], []
        size = self.mask_head_output_size
        for s, target in zip(samples, targets):
            fg = torch.nonzero(s["labels"] > 0).squeeze(1)
            if "has_mask" in target:
                fg = fg[target["has_mask"][s["matched"][fg]]]
            boxes = s["boxes"][fg]
            fg_boxes.append(boxes)
            fg_labels.append(s["labels"][fg])
            fg_targets.append(
                mask_targets(target["masks"], s["matched"][fg], boxes, size=size, aligned=self.mask_pooler.aligned)
            )
        if sum(len(b) for b in fg_boxes) == 0:
            # No foreground with a mask anywhere: an exact zero that still reaches the mask head's parameters.
            zero = sum(p.sum() for p in self.mask_head.parameters()) * 0.0
            return {"loss_mask": zero}
        mask_logits = self.mask_head(self.mask_pooler(features, fg_boxes))
        return {"loss_mask": mask_loss(mask_logits, torch.cat(fg_labels), torch.cat(fg_targets))}

    @property
    def mask_head_output_size(self) -> int:
        return 2 * self.mask_pooler.output_size[0]

    # ---- inference ------------------------------------------------------------------------------------------------

    def _forward_box_inference(
        self, features: list[Tensor], proposals: list[Tensor], image_sizes: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        class_logits, box_deltas = self.box_predictor(self.box_head(self.box_pooler(features, proposals)))
        boxes_all = self.box_coder.decode(box_deltas, torch.cat(proposals))  # (R, 4(K+1))
        scores_all = class_logits.softmax(dim=-1)  # (R, K+1)
        num_classes = scores_all.shape[1]
        counts = [p.shape[0] for p in proposals]
        detections = []
        for boxes, scores, size in zip(boxes_all.split(counts), scores_all.split(counts), image_sizes):
            # (R, 4(K+1)) -> (R, K+1, 4), background column dropped, then one candidate per (RoI, class)
            boxes = clip_boxes(boxes.reshape(-1, num_classes, 4), size)[:, 1:].reshape(-1, 4)
            labels = torch.arange(1, num_classes, device=scores.device).repeat(scores.shape[0])
            scores = scores[:, 1:].reshape(-1)
            keep = torch.nonzero(scores > self.score_thresh).squeeze(1)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = nonempty_boxes(boxes, self.min_box_size)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_image]
            detections.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
        return detections

    def _forward_mask_inference(self, features: list[Tensor], detections: list[dict[str, Tensor]]) -> None:
        """Adds "mask_probs": (D, M, M), the sigmoid of each detection's predicted-class map, to each image's dict."""
        size = self.mask_head_output_size
        boxes = [d["boxes"] for d in detections]
        counts = [b.shape[0] for b in boxes]
        if not is_tracing() and sum(counts) == 0:  # a traced graph runs the mask head on any number of boxes
            for d in detections:
                d["mask_probs"] = d["boxes"].new_zeros((0, size, size))
            return
        labels = torch.cat([d["labels"] for d in detections])
        probs = self.mask_head.class_logits(self.mask_pooler(features, boxes), labels).sigmoid()  # (D, M, M)
        for d, p in zip(detections, probs.split(counts)):
            d["mask_probs"] = p
