"""The reference that the parity tests, the export tests and the benchmarks compare against: torchvision's
maskrcnn_resnet50_fpn with fixed random weights that behave like a trained file's, and the parity rule that matches
two sets of detections."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import box_iou


def randomised_torchvision_model() -> torch.nn.Module:
    """torchvision's R50-FPN Mask R-CNN with fixed random weights: non-trivial BatchNorm statistics used with eps 0
    (as in the published COCO file), and class logits scaled up so that detections are confident (scores ~0.9)."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    torch.manual_seed(0)
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.eps = 0.0
                m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) * 4 + 1)
        model.roi_heads.box_predictor.cls_score.weight.mul_(120.0)
    return model


@dataclass
class Detections:
    """boxes (D, 4) xyxy, labels (D,), scores (D,), masks (D, H, W) bool: numpy arrays, like maskrcnn's Prediction."""

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    masks: np.ndarray

    @classmethod
    def from_torchvision(cls, output: dict[str, torch.Tensor]) -> Detections:
        """One image's output of torchvision's Mask R-CNN (masks (D, 1, H, W) probabilities, thresholded at 0.5)."""
        return cls(
            boxes=output["boxes"].numpy(),
            labels=output["labels"].numpy(),
            scores=output["scores"].numpy(),
            masks=(output["masks"][:, 0] > 0.5).numpy(),
        )


def match_detections(expected, got) -> tuple[int, int, list[float]]:
    """The parity rule: an expected detection is matched by one of ``got`` with the same label, box IoU > 0.99 and
    score within 1e-3 (the best-overlapping if several). ``expected``, ``got``: Detections or Predictions.

    -> (matched, total expected, mask IoU of each matched pair).
    """
    iou = box_iou(torch.from_numpy(expected.boxes), torch.from_numpy(got.boxes))  # (E, G)
    same_label = torch.from_numpy(expected.labels)[:, None] == torch.from_numpy(got.labels)[None, :]
    close_score = (torch.from_numpy(expected.scores)[:, None] - torch.from_numpy(got.scores)[None, :]).abs() < 1e-3
    candidates = (iou > 0.99) & same_label & close_score
    matched, mask_ious = 0, []
    for e in range(len(expected.scores)):
        js = torch.nonzero(candidates[e]).squeeze(1)
        if len(js) == 0:
            continue
        matched += 1
        j = int(js[iou[e, js].argmax()])
        a, b = expected.masks[e], got.masks[j]
        union = (a | b).sum()
        mask_ious.append(float((a & b).sum() / union) if union else 1.0)
    return matched, len(expected.scores), mask_ious
