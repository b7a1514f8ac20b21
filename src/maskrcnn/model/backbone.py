"""ResNet bottom-up backbone (He et al. 2016), returning the res2..res5 feature maps C2..C5.

Shapes: N images, C channels, H x W input (padded to a multiple of 32).
    C2: (N, 4w, H/4, W/4)   C3: (N, 8w, H/8, W/8)   C4: (N, 16w, H/16, W/16)   C5: (N, 32w, H/32, W/32)
for bottleneck ResNets (50, 101) with stem width w = 64; basic-block ResNets (18, 34) have w, 2w, 4w, 8w channels.

The stride of each stage sits in its first block's 3x3 convolution ("ResNet v1.5", as torchvision), or in its first
1x1 convolution (``stride_in_1x1``: the original MSRA ResNets, which detectron2's R50/R101 weights start from).
ResNeXt (Xie et al. 2017) splits each bottleneck's 3x3 convolution into ``groups`` groups of ``width_per_group``
channels at res2, doubling per stage: X101-32x8d has 256, 512, 1024, 2048 channels inside its bottlenecks and the
usual 256 .. 2048 between them. Parameter names follow torchvision's ``ResNet`` (conv1, bn1, layer1.0.conv1, ...,
downsample.0/1), so ImageNet checkpoints (ResNeXt ones too) load as they are.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

STAGE_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters (all buffers, no gradients).

    y = (x - running_mean) / sqrt(running_var + eps) * weight + bias. torchvision's COCO Mask R-CNN weights were
    trained with eps = 0.
    """

    def __init__(self, num_features: int, *, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def scale_and_shift(self) -> tuple[Tensor, Tensor]:
        """(scale, shift): Tensor[C] each, so that the layer computes x * scale + shift."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: Tensor) -> Tensor:
        scale, shift = self.scale_and_shift()
        # the shift is added in place: one activation-sized allocation fewer, the same result bit for bit
        return (x * scale.reshape(1, -1, 1, 1)).add_(shift.reshape(1, -1, 1, 1))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A BatchNorm2d state dict carries a step counter that frozen statistics have no use for.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def make_norm(kind: str, channels: int, *, frozen_eps: float = 1e-5) -> nn.Module:
    """kind: "frozen_bn" | "bn" | "gn" (32 groups) | "none" (the identity) -> a normalisation layer over
    ``channels``."""
    if kind == "none":
        return nn.Identity()
    if kind == "frozen_bn":
        return FrozenBatchNorm2d(channels, eps=frozen_eps)
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "gn":
        return nn.GroupNorm(min(32, channels), channels)
    raise ValueError(f"unknown norm {kind!r}; expected frozen_bn, bn, gn or none")


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, *, in_channels: int, width: int, stride: int, norm: str, frozen_eps: float):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = make_norm(norm, width, frozen_eps=frozen_eps)
        self.conv2 = nn.Conv2d(width, out_channels, 3, padding=1, bias=False)
        self.bn2 = make_norm(norm, out_channels, frozen_eps=frozen_eps)
        # one ReLU module per place: the inference conversion can then fuse each into the convolution before it
        self.relu1 = nn.ReLU(inplace=True)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out_channels, stride, norm, frozen_eps)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity  # in place, as out + identity bit for bit
        return self.relu(out)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(
        self,
        *,
        in_channels: int,
        width: int,
        stride: int,
        norm: str,
        frozen_eps: float,
        inner_width: int | None = None,
        groups: int = 1,
        stride_in_1x1: bool = False,
    ):
        """Outputs ``4 * width`` channels; ``inner_width`` (default ``width``) channels inside, the 3x3 convolution
        in ``groups`` groups; the stride in the 3x3 convolution, or in the first 1x1 with ``stride_in_1x1``."""
        super().__init__()
        out_channels = width * self.expansion
        inner = width if inner_width is None else inner_width
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(in_channels, inner, 1, stride=stride_1x1, bias=False)
        self.bn1 = make_norm(norm, inner, frozen_eps=frozen_eps)
        self.conv2 = nn.Conv2d(inner, inner, 3, stride=stride_3x3, padding=1, groups=groups, bias=False)
        self.bn2 = make_norm(norm, inner, frozen_eps=frozen_eps)
        self.conv3 = nn.Conv2d(inner, out_channels, 1, bias=False)
        self.bn3 = make_norm(norm, out_channels, frozen_eps=frozen_eps)
        # one ReLU module per place: the inference conversion can then fuse each into the convolution before it
        self.relu1 = nn.ReLU(inplace=True)
        self.relu2 = nn.ReLU(inplace=True)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out_channels, stride, norm, frozen_eps)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity  # in place, as out + identity bit for bit
        return self.relu(out)


def _shortcut(in_channels: int, out_channels: int, stride: int, norm: str, frozen_eps: float) -> nn.Module | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
        make_norm(norm, out_channels, frozen_eps=frozen_eps),
    )


class ResNet(nn.Module):
    """ResNet-18/34/50/101 (ResNeXt-50/101 with ``groups`` > 1) without its classifier; forward returns
    [C2, C3, C4, C5]."""

    def __init__(
        self,
        *,
        depth: int,
        norm: str,
        frozen_eps: float = 1e-5,
        stem_width: int = 64,
        freeze_at: int = 0,
        groups: int = 1,
        width_per_group: int = 64,
        stride_in_1x1: bool = False,
    ):
        super().__init__()
        if depth not in STAGE_BLOCKS:
            raise ValueError(f"unsupported ResNet depth {depth}; expected one of {sorted(STAGE_BLOCKS)}")
        block = Bottleneck if depth >= 50 else BasicBlock
        if block is BasicBlock and (groups != 1 or width_per_group != 64 or stride_in_1x1):
            raise ValueError(f"ResNet-{depth} has basic blocks: groups, width_per_group and stride_in_1x1 need a "
                             "bottleneck ResNet (50, 101)")
        self.conv1 = nn.Conv2d(3, stem_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = make_norm(norm, stem_width, frozen_eps=frozen_eps)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        in_channels = stem_width
        self.out_channels: list[int] = []
        for stage, num_blocks in enumerate(STAGE_BLOCKS[depth]):
            width = stem_width * 2**stage
            # ResNeXt: groups x width_per_group channels at res2 (for the usual stem of 64), doubling per stage
            grouped = {} if block is BasicBlock else {
                "inner_width": groups * (stem_width * width_per_group // 64) * 2**stage,
                "groups": groups,
                "stride_in_1x1": stride_in_1x1,
            }  # fmt: skip
            blocks = []
            for i in range(num_blocks):
                stride = 2 if (i == 0 and stage > 0) else 1
                blocks.append(
                    block(
                        in_channels=in_channels, width=width, stride=stride, norm=norm, frozen_eps=frozen_eps, **grouped
                    )
                )
                in_channels = width * block.expansion
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
            self.out_channels.append(in_channels)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self._freeze(freeze_at)

    def _freeze(self, freeze_at: int) -> None:
        """Stop gradients to the stem (freeze_at >= 1) and to res2..res{freeze_at} (freeze_at >= 2)."""
        frozen = [self.conv1, self.bn1] if freeze_at >= 1 else []
        frozen += [getattr(self, f"layer{i}") for i in range(1, freeze_at)]
        for module in frozen:
            for p in module.parameters():
                p.requires_grad_(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (N, w, H/4, W/4)
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c2, c3, c4, c5]
