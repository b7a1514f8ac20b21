"""Box head: pooled RoI features -> class logits and class-specific box deltas, and its loss.

Shapes: R RoIs, C channels, S pooled size (7), D fc width (1024), K object classes (logits have K + 1 columns,
column 0 is background; deltas have 4 (K + 1) columns, 4 per class, as torchvision lays them out).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class BoxHead(nn.Module):
    """Flatten, then ``num_fc`` fully connected layers with ReLU: (R, C, S, S) -> (R, D)."""

    def __init__(self, *, in_channels: int, pool_size: int, fc_dim: int, num_fc: int = 2):
        super().__init__()
        dims = [in_channels * pool_size * pool_size] + [fc_dim] * num_fc
        for i in range(num_fc):
            self.add_module(f"fc{i + 1}", nn.Linear(dims[i], dims[i + 1]))
        self.num_fc = num_fc
        self.out_dim = dims[-1]

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)  # (R, C, S, S) -> (R, C*S*S)
        for i in range(self.num_fc):
            x = F.relu(getattr(self, f"fc{i + 1}")(x), inplace=True)  # the linear's output is not kept for backward
        return x


class BoxPredictor(nn.Module):
    """(R, D) -> class logits (R, K+1) and box deltas (R, 4(K+1))."""

    def __init__(self, *, in_dim: int, num_classes: int):
        super().__init__()
        self.cls_score = nn.Linear(in_dim, num_classes + 1)
        self.bbox_pred = nn.Linear(in_dim, (num_classes + 1) * 4)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


def box_head_losses(
    class_logits: Tensor, box_deltas: Tensor, gt_labels: Tensor, gt_deltas: Tensor, *, beta: float
) -> dict[str, Tensor]:
    """Cross-entropy over K+1 classes, and smooth-L1 on the ground-truth class's deltas of foreground RoIs.

    class_logits: (R, K+1); box_deltas: (R, 4(K+1)); gt_labels: (R,) int64 in 0..K; gt_deltas: (R, 4).
    The box loss is summed over foreground RoIs and divided by R (all sampled RoIs), as in Fast R-CNN, so that it is
    exactly 0 when no RoI is foreground.
    """
    num_rois = max(gt_labels.numel(), 1)
    loss_cls = F.cross_entropy(class_logits, gt_labels, reduction="sum") / num_rois
    fg = torch.nonzero(gt_labels > 0).squeeze(1)
    # (R, 4(K+1)) -> (R, K+1, 4), then each foreground RoI's own class
    deltas = box_deltas.reshape(box_deltas.shape[0], -1, 4)[fg, gt_labels[fg]]
    loss_box = F.smooth_l1_loss(deltas, gt_deltas[fg], beta=beta, reduction="sum") / num_rois
    return {"loss_cls": loss_cls, "loss_box_reg": loss_box}
