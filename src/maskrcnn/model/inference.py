"""The inference-time conversion of a Mask R-CNN: same function, laid out for speed on CPU.

``prepare_for_inference(model)`` returns a converted copy (the model itself is left as it was, still trainable):

- the ResNet's norms (frozen BN, or BN in eval mode) are folded into its convolutions, and each ReLU and residual
  addition runs inside its convolution's oneDNN kernel (``model/fused.py``); GroupNorm backbones keep their norms;
- the FPN's lateral convolutions are matrix products that add the top-down pathway in the same product and write
  NCHW maps for the Winograd convolutions that follow (see below);
- every convolution and feature map is channels-last (N, H, W, C in memory), the layout oneDNN convolves without
  reordering; RoIAlign then reads the channels-last maps directly (``model/roi_align.py``);
- the RPN head's 3x3 conv + ReLU is fused and its two 1x1 predictors (objectness, deltas) are merged into one conv;
- the mask head's conv + ReLU pairs are fused, its transposed convolution becomes a 1x1 convolution, and only each
  detection's own class map is computed.

Outputs equal the model's up to float rounding (folding and channels-last change the order of additions). The
copy is inference-only: its modules refuse ``train()`` and its state dict has other keys, so save the original.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import skip_init

from maskrcnn.model.backbone import ResNet
from maskrcnn.model.fpn import FPN
from maskrcnn.model.fused import FusedConv2d, FusedResNet, plain_ops_only
from maskrcnn.model.mask_head import MaskHead
from maskrcnn.model.mask_rcnn import MaskRCNN
from maskrcnn.model.rpn import RPNHead


class _InferenceOnly(nn.Module):
    def train(self, mode: bool = True) -> nn.Module:
        if mode:
            raise RuntimeError(f"{type(self).__name__} is inference-only; train the model built by maskrcnn.model.build")
        return super().train(False)


class FusedFPN(_InferenceOnly):
    """FPN for channels-last C2..C5 whose output convolutions run as Winograd convolutions on NCHW maps.

    The lateral 1x1 convolutions are matrix products that read the channels-last maps as (H*W, C) matrices and
    write NCHW maps, adding the upsampled coarser level in the same product (GEMM's beta * C term): so no map is
    ever converted between layouts. [C2..C5] -> [P2..P6].
    """

    def __init__(self, fpn: FPN):
        super().__init__()
        self.lateral_convs = nn.ModuleList(FusedConv2d(conv, relu=False) for conv in fpn.lateral_convs)
        self.output_convs = nn.ModuleList(FusedConv2d(conv, relu=False, winograd=True) for conv in fpn.output_convs)
        self.out_channels = fpn.out_channels

    def _lateral(self, level: int, x: Tensor, top_down: Tensor | None) -> Tensor:
        """x: (N, C_l, H, W) -> lateral conv (N, F, H, W) [+ top_down upsampled to H x W], NCHW."""
        conv = self.lateral_convs[level]
        upsampled = None if top_down is None else F.interpolate(top_down, size=x.shape[-2:], mode="nearest")
        if plain_ops_only() or x.device.type != "cpu":
            return conv(x, residual=upsampled)
        n, c, h, w = x.shape
        weight = conv.weight.reshape(conv.weight.shape[0], c)  # (F, C_l)
        rows = x.permute(0, 2, 3, 1).reshape(n, h * w, c)  # (N, H*W, C_l): a view of a channels-last map
        if upsampled is None:
            out = torch.matmul(weight, rows.transpose(1, 2))  # (N, F, H*W)
        else:
            # (N, F, H*W) + (F, C_l) @ (N, C_l, H*W)
            out = upsampled.view(n, -1, h * w).baddbmm_(weight.expand(n, -1, -1), rows.transpose(1, 2))
        out += conv.bias[:, None]
        return out.view(n, -1, h, w)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        top_down = self._lateral(len(features) - 1, features[-1], None)
        outputs = [self.output_convs[-1](top_down)]
        for level in range(len(features) - 2, -1, -1):
            top_down = self._lateral(level, features[level], top_down)
            outputs.insert(0, self.output_convs[level](top_down))
        outputs.append(F.max_pool2d(outputs[-1], kernel_size=1, stride=2))  # P6
        return outputs


class FusedRPNHead(_InferenceOnly):
    """RPNHead with conv + ReLU fused and one 1x1 conv predicting A objectness logits and 4A deltas together."""

    def __init__(self, head: RPNHead):
        super().__init__()
        self.conv = FusedConv2d(head.conv, relu=True, winograd=True)
        # skip_init: no random initialisation (it would advance the global RNG, which a training run evaluating
        # through a Predictor relies on for exact resume); the weights are copied in below
        device = head.conv.weight.device
        merged = skip_init(nn.Conv2d, head.conv.out_channels, head.objectness_logits.out_channels * 5, 1, device=device)
        with torch.no_grad():
            merged.weight.copy_(torch.cat([head.objectness_logits.weight, head.anchor_deltas.weight]))
            merged.bias.copy_(torch.cat([head.objectness_logits.bias, head.anchor_deltas.bias]))
        self.predictor = FusedConv2d(merged, relu=False)
        self.num_anchors = head.objectness_logits.out_channels

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """features: L x (N, C, H_l, W_l) -> logits L x (N, A, H_l, W_l), deltas L x (N, A*4, H_l, W_l)."""
        logits, deltas = [], []
        for x in features:
            out = self.predictor(self.conv(x))  # (N, 5A, H_l, W_l)
            logits.append(out[:, : self.num_anchors])
            deltas.append(out[:, self.num_anchors :])
        return logits, deltas


class FusedMaskHead(_InferenceOnly):
    """MaskHead with conv + ReLU fused, on channels-last maps; the same ``forward`` and ``class_logits``.

    The 2x2 stride-2 transposed convolution writes each input pixel's 2 x 2 output block from that pixel alone, so it
    is a 1x1 convolution to 4D channels, ordered (a, b, d) for output pixel (2i + a, 2j + b), followed by a
    rearrangement of those channels into space. ``class_logits`` applies the class's 1x1 predictor before that
    rearrangement, on the (R, S, S, 4, D) channels-last maps as they are, so the 2S x 2S x D maps are never copied.
    """

    def __init__(self, head: MaskHead):
        super().__init__()
        self.convs = nn.ModuleList(FusedConv2d(conv, relu=True, winograd=True) for conv in head.convs)
        deconv = head.deconv
        if deconv.kernel_size != (2, 2) or deconv.stride != (2, 2) or deconv.padding != (0, 0) or deconv.groups != 1:
            raise ValueError(f"expected a 2x2 stride-2 transposed convolution, got {deconv}")
        in_dim, dim = deconv.in_channels, deconv.out_channels
        as_conv = skip_init(nn.Conv2d, in_dim, 4 * dim, 1, device=deconv.weight.device)  # no RNG use, as above
        with torch.no_grad():
            # (in, out, a, b) -> (a, b, out, in) -> (4 * out, in, 1, 1)
            as_conv.weight.copy_(deconv.weight.permute(2, 3, 1, 0).reshape(4 * dim, in_dim, 1, 1))
            as_conv.bias.copy_(deconv.bias.repeat(4))
        self.upsample = FusedConv2d(as_conv, relu=True)
        self.predictor = head.predictor
        self.dim = dim

    def _subpixel_features(self, x: Tensor) -> Tensor:
        """(R, C, S, S) -> (R, 4D, S, S) channels-last, channel (a * 2 + b) * D + d holding pixel (2i + a, 2j + b)."""
        for conv in self.convs:
            x = conv(x)
        return self.upsample(x.contiguous(memory_format=torch.channels_last))

    def features(self, x: Tensor) -> Tensor:
        """(R, C, S, S) -> (R, D, 2S, 2S)."""
        y = self._subpixel_features(x)
        num, _, size, _ = y.shape
        # (R, 4D, S, S) -> (R, 2, 2, D, S, S) -> (R, D, S, 2, S, 2) -> (R, D, 2S, 2S)
        return y.view(num, 2, 2, self.dim, size, size).permute(0, 3, 4, 1, 5, 2).reshape(
            num, self.dim, 2 * size, 2 * size
        )

    def forward(self, x: Tensor) -> Tensor:
        """(R, C, S, S) -> mask logits (R, K+1, 2S, 2S)."""
        return self.predictor(self.features(x))

    def class_logits(self, x: Tensor, labels: Tensor) -> Tensor:
        """(R, C, S, S), labels (R,) in 1..K -> (R, 2S, 2S)."""
        y = self._subpixel_features(x)
        num, _, size, _ = y.shape
        table = y.permute(0, 2, 3, 1).reshape(num, size * size * 4, self.dim)  # (R, S*S*4, D), a view
        weight = self.predictor.weight[labels, :, 0, 0]  # (R, D)
        maps = torch.bmm(table, weight[:, :, None])  # (R, S*S*4, 1)
        # (R, S, S, 2, 2) [i, j, a, b] -> (R, S, 2, S, 2) [i, a, j, b] -> (R, 2S, 2S)
        maps = maps.view(num, size, size, 2, 2).permute(0, 1, 3, 2, 4).reshape(num, 2 * size, 2 * size)
        return maps + self.predictor.bias[labels][:, None, None]


def prepare_for_inference(model: MaskRCNN, *, inplace: bool = False) -> MaskRCNN:
    """A converted copy of ``model`` for fast inference (see the module docstring), in eval mode, without gradients.

    Call it after loading weights; ``model`` itself is not modified, unless ``inplace``: then it is converted and
    returned (no copy of the weights is made; the model is inference-only afterwards).
    """
    prepared = (model if inplace else copy.deepcopy(model)).eval().requires_grad_(False)
    backbone = prepared.backbone
    if isinstance(backbone.bottom_up, ResNet) and FusedResNet.supports(backbone.bottom_up):
        backbone.bottom_up = FusedResNet(backbone.bottom_up)
    else:  # GroupNorm: the norms stay, the convolutions still run channels-last
        backbone.bottom_up.to(memory_format=torch.channels_last)
    backbone.fpn = FusedFPN(backbone.fpn)
    prepared.rpn.head = FusedRPNHead(prepared.rpn.head)
    prepared.roi_heads.mask_head = FusedMaskHead(prepared.roi_heads.mask_head)
    return prepared.eval()
