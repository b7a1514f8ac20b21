"""Feature Pyramid Network (Lin et al. 2017) on top of a bottom-up backbone: C2..C5 -> P2..P6.

Shapes: N images, F FPN channels (256), input H x W padded to a multiple of 32.
    P2: (N, F, H/4, W/4)  P3: (N, F, H/8, W/8)  P4: (N, F, H/16, W/16)  P5: (N, F, H/32, W/32)
    P6: (N, F, ceil(H/64), ceil(W/64)), a stride-2 subsampling of P5 (max-pool with kernel 1), used by the RPN only.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from maskrcnn.model.backbone import make_norm


class FPN(nn.Module):
    """Lateral 1x1 convolutions, a nearest-neighbour top-down pathway, and 3x3 output convolutions, each convolution
    followed by a ``norm`` ("none", "bn" as in torchvision's v2 model, or "gn"; without one, convolutions have a
    bias)."""

    def __init__(self, *, in_channels: list[int], out_channels: int, norm: str = "none"):
        super().__init__()
        bias = norm == "none"
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1, bias=bias) for c in in_channels)
        self.output_convs = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias) for _ in in_channels
        )
        # identities without a norm: no parameters, and the forward stays one
        self.lateral_norms = nn.ModuleList(make_norm(norm, out_channels) for _ in in_channels)
        self.output_norms = nn.ModuleList(make_norm(norm, out_channels) for _ in in_channels)
        self.out_channels = out_channels
        for conv in [*self.lateral_convs, *self.output_convs]:
            nn.init.kaiming_uniform_(conv.weight, a=1)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        """features: [C2, C3, C4, C5] -> [P2, P3, P4, P5, P6].

        The levels are counted from the module's own layers, not from ``features``, so that ``torch.fx`` can follow
        this forward (``model/fold.py`` finds each convolution's norm in it)."""
        top_down = self.lateral_norms[-1](self.lateral_convs[-1](features[-1]))
        outputs = [self.output_norms[-1](self.output_convs[-1](top_down))]
        for level in range(len(self.lateral_convs) - 2, -1, -1):
            lateral = self.lateral_norms[level](self.lateral_convs[level](features[level]))
            upsampled = F.interpolate(top_down, size=lateral.shape[-2:], mode="nearest")
            top_down = lateral.add_(upsampled)  # in place, as lateral + upsampled bit for bit
            outputs.insert(0, self.output_norms[level](self.output_convs[level](top_down)))
        outputs.append(F.max_pool2d(outputs[-1], kernel_size=1, stride=2))  # P6
        return outputs


class BackboneWithFPN(nn.Module):
    """ResNet + FPN: images (N, 3, H, W) -> [P2, P3, P4, P5, P6], each with ``out_channels`` channels."""

    def __init__(self, *, bottom_up: nn.Module, in_channels: list[int], out_channels: int, norm: str = "none"):
        super().__init__()
        self.bottom_up = bottom_up
        self.fpn = FPN(in_channels=in_channels, out_channels=out_channels, norm=norm)
        self.out_channels = out_channels
        self.strides = (4, 8, 16, 32, 64)

    def forward(self, images: Tensor) -> list[Tensor]:
        return self.fpn(self.bottom_up(images))
