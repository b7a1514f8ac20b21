"""Mask head: a small FCN from pooled RoI features to one M x M mask logit map per class, and its loss.

Shapes: R RoIs, C channels, S pooled size (14), M = 2S mask size (28), K object classes (K + 1 maps; map 0, the
background's, is never trained or used, and keeps torchvision's weight layout).

Masks are decoupled from classification: each class has its own map, the loss reads only the ground-truth class's
map, with a per-pixel sigmoid (not a softmax over classes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align

from maskrcnn.model.backbone import make_norm


class MaskHead(nn.Module):
    """``num_convs`` 3x3 conv + norm + ReLU (norm "none", or "bn" as torchvision's v2 head), a 2x2 stride-2
    transposed conv + ReLU, a 1x1 conv to K+1 logit maps."""

    def __init__(self, *, in_channels: int, conv_dim: int, num_convs: int, num_classes: int, norm: str = "none"):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels if i == 0 else conv_dim, conv_dim, 3, padding=1, bias=norm == "none")
            for i in range(num_convs)
        )
        self.norms = nn.ModuleList(make_norm(norm, conv_dim) for _ in range(num_convs))
        self.deconv = nn.ConvTranspose2d(conv_dim if num_convs else in_channels, conv_dim, 2, stride=2)
        self.predictor = nn.Conv2d(conv_dim, num_classes + 1, 1)
        for layer in [*self.convs, self.deconv]:
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.zeros_(self.predictor.bias)

    def features(self, x: Tensor) -> Tensor:
        """(R, C, S, S) -> (R, D, 2S, 2S), the maps before the per-class predictor (D = conv_dim)."""
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(norm(conv(x)), inplace=True)  # in place: a conv's (or norm's) output is not kept for backward
        return F.relu(self.deconv(x), inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """(R, C, S, S) -> mask logits (R, K+1, 2S, 2S)."""
        return self.predictor(self.features(x))

    def class_logits(self, x: Tensor, labels: Tensor) -> Tensor:
        """(R, C, S, S), labels (R,) in 1..K -> (R, 2S, 2S), each RoI's map of its own class only (inference)."""
        return predict_class_maps(self.features(x), self.predictor, labels)


def predict_class_maps(features: Tensor, predictor: nn.Conv2d, labels: Tensor) -> Tensor:
    """The 1x1 ``predictor`` applied to each RoI for one class: features (R, D, M, M), labels (R,) -> (R, M, M).

    Equals ``predictor(features)[arange(R), labels]`` without computing the K other maps (K times fewer products).
    """
    weight = predictor.weight[labels, :, 0, 0]  # (K+1, D, 1, 1) -> (R, D)
    # (R, D, M, M) x (R, D) -> (R, M, M)
    return torch.einsum("rdhw,rd->rhw", features, weight) + predictor.bias[labels][:, None, None]


def mask_targets(gt_masks: Tensor, matched: Tensor, boxes: Tensor, *, size: int, aligned: bool) -> Tensor:
    """Cut each box's region out of its matched ground-truth mask and resample it to size x size.

    gt_masks: (G, H, W) one image's instance masks; matched: (R,) int64 index into them; boxes: (R, 4)
    -> (R, size, size) float in {0, 1}. Sampling uses RoIAlign, like the features, so targets line up with what the
    head sees; each RoI reads its matched mask directly (no per-RoI copy of a full-size mask).
    """
    if boxes.shape[0] == 0:
        return boxes.new_zeros((0, size, size))
    rois = torch.cat([matched[:, None].to(boxes.dtype), boxes], dim=1)  # (R, 5): mask index, x1, y1, x2, y2
    # (G, H, W) -> (G, 1, H, W) -> RoIAlign -> (R, 1, size, size) -> (R, size, size)
    cropped = roi_align(gt_masks[:, None].to(boxes.dtype), rois, (size, size), 1.0, 0, aligned)[:, 0]
    return (cropped >= 0.5).to(boxes.dtype)


def mask_loss(mask_logits: Tensor, gt_labels: Tensor, targets: Tensor) -> Tensor:
    """Mean per-pixel binary cross-entropy on each foreground RoI's ground-truth class map.

    mask_logits: (R, K+1, M, M); gt_labels: (R,) int64 in 1..K; targets: (R, M, M). With no RoI the loss is an
    exact 0 that still depends on the logits (so every parameter gets a gradient, zero).
    """
    if gt_labels.numel() == 0:
        return mask_logits.sum() * 0.0
    logits = mask_logits[torch.arange(gt_labels.numel(), device=gt_labels.device), gt_labels]  # (R, M, M)
    return F.binary_cross_entropy_with_logits(logits, targets)
