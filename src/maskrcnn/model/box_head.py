"""Box head: pooled RoI features -> class logits and class-specific box deltas, and its loss.

Shapes: R RoIs, C channels, S pooled size (7), E conv channels (256), D fc width (1024), K object classes (logits
have K + 1 columns, column 0 is background; deltas have 4 (K + 1) columns, 4 per class, as torchvision lays them out).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maskrcnn.model.backbone import make_norm


class BoxHead(nn.Module):
    """``num_convs`` 3x3 conv + norm + ReLU (torchvision's v2 head has four, with BatchNorm), then flatten and
    ``num_fc`` fully connected layers with ReLU: (R, C, S, S) -> (R, D)."""

    def __init__(
        self,
        *,
        in_channels: int,
        pool_size: int,
        fc_dim: int,
        num_fc: int = 2,
        num_convs: int = 0,
        conv_dim: int = 256,
        norm: str = "none",
    ):
        super().__init__()
        channels = [in_channels] + [conv_dim] * num_convs
        self.convs = nn.ModuleList(
            nn.Conv2d(channels[i], channels[i + 1], 3, padding=1, bias=norm == "none") for i in range(num_convs)
        )
        self.norms = nn.ModuleList(make_norm(norm, conv_dim) for _ in range(num_convs))
        # one ReLU module per conv: the inference conversion can then fuse each into its (folded) convolution
        self.relus = nn.ModuleList(nn.ReLU(inplace=True) for _ in range(num_convs))
        for conv in self.convs:
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        dims = [channels[-1] * pool_size * pool_size] + [fc_dim] * num_fc
        for i in range(num_fc):
            self.add_module(f"fc{i + 1}", nn.Linear(dims[i], dims[i + 1]))
        self.num_fc = num_fc
        self.out_dim = dims[-1]

    def forward(self, x: Tensor) -> Tensor:
        for conv, norm, relu in zip(self.convs, self.norms, self.relus):
            x = relu(norm(conv(x)))  # (R, C, S, S) -> (R, E, S, S)
        x = x.flatten(1)  # (R, E, S, S) -> (R, E*S*S)
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
