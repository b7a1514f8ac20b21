"""Inference-only fused layers: a convolution with its (frozen or eval-mode) BatchNorm folded in, and its ReLU and
residual addition run inside the same oneDNN kernel on CPU.

Shapes: N images, C_in / C_out channels, H x W feature maps; tensors are expected in channels-last memory order
(the layout oneDNN convolves without reordering), but any layout gives the same result.

Folding: BatchNorm computes y = x * s + t with s = gamma / sqrt(var + eps) and t = beta - mean * s per output
channel, so conv(x, W) * s + t = conv(x, W * s) + t: the folded convolution has weight W * s[:, None, None, None] and
bias t. Example: a 1x1 conv with weight 2 followed by a norm with s = 0.5, t = 1 becomes a 1x1 conv with weight 1
and bias 1.

3x3 stride-1 convolutions on wide maps can instead run as Winograd convolutions (Lavin & Gray 2016; NNPACK's
F(6x6, 3x3): 64 products for 36 outputs of a 3x3 kernel instead of 324, about 3x faster on CPU than a direct
convolution at 256 channels, with relative errors around 1e-5). They read and write NCHW maps.

These modules hold no gradients and refuse ``train()``: training uses the unfused model of ``model/build.py``.
Traced or exported (ONNX), they run as plain ``conv2d`` (+ ``add``, ``relu``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maskrcnn.model.backbone import BasicBlock, Bottleneck, FrozenBatchNorm2d, ResNet

# oneDNN convolution with fused post-ops: the kernels torch.compile's CPU backend emits for conv + ReLU and
# conv + add + ReLU. Absent from builds without oneDNN, where the plain ops are used.
_POINTWISE = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)
_HAS_FUSED_CONV = _POINTWISE is not None and torch.backends.mkldnn.is_available()


def winograd_available() -> bool:
    """True when this torch build has NNPACK and it initialises on this CPU (the call also initialises it)."""
    return hasattr(torch, "_nnpack_spatial_convolution") and bool(torch._nnpack_available())


def plain_ops_only() -> bool:
    """Tracing, exporting or compiling: the custom kernels are not part of the graph vocabulary."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


def norm_scale_shift(norm: nn.Module) -> tuple[Tensor, Tensor]:
    """(scale, shift): Tensor[C] each, so that ``norm`` (frozen, or BatchNorm2d in eval mode) is x * scale + shift.

    Raises ValueError for a norm that depends on its input's statistics (GroupNorm, BatchNorm in training mode).
    """
    if isinstance(norm, FrozenBatchNorm2d):
        return norm.scale_and_shift()
    if isinstance(norm, nn.BatchNorm2d) and not norm.training and norm.track_running_stats:
        scale = norm.weight * (norm.running_var + norm.eps).rsqrt() if norm.affine else (norm.running_var + norm.eps).rsqrt()
        shift = (norm.bias if norm.affine else 0.0) - norm.running_mean * scale
        return scale, shift
    raise ValueError(f"cannot fold {type(norm).__name__} (training={norm.training}) into a convolution")


def can_fold(norm: nn.Module) -> bool:
    try:
        norm_scale_shift(norm)
    except ValueError:
        return False
    return True


class FusedConv2d(nn.Module):
    """y = act(conv(x) [+ residual]) in one kernel: a Conv2d with a folded norm, optional residual add and ReLU.

    winograd: run as an NNPACK Winograd convolution (3x3, stride 1, no dilation or groups; NCHW output) where this
    torch build has it; otherwise as a oneDNN convolution (output in the input's memory format).
    """

    def __init__(self, conv: nn.Conv2d, norm: nn.Module | None = None, *, relu: bool, winograd: bool = False):
        super().__init__()
        self.winograd = (
            winograd
            and tuple(conv.kernel_size) == (3, 3)
            and tuple(conv.stride) == (1, 1)
            and tuple(conv.dilation) == (1, 1)
            and conv.groups == 1
            and winograd_available()
        )
        weight = conv.weight.detach()
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(conv.out_channels, dtype=weight.dtype)
        if norm is not None:
            scale, shift = norm_scale_shift(norm)
            weight = weight * scale.detach().reshape(-1, 1, 1, 1)
            bias = bias * scale.detach() + shift.detach()
        layout = torch.contiguous_format if self.winograd else torch.channels_last
        self.weight = nn.Parameter(weight.contiguous(memory_format=layout), requires_grad=False)
        self.bias = nn.Parameter(bias.clone().to(weight.device), requires_grad=False)
        self.stride, self.padding = tuple(conv.stride), tuple(conv.padding)
        self.dilation, self.groups = tuple(conv.dilation), conv.groups
        self.relu = relu
        if not isinstance(self.padding[0], int):
            raise ValueError(f"string padding {conv.padding!r} is not supported")

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        """x: (N, C_in, H, W); residual: (N, C_out, H', W') or None -> (N, C_out, H', W')."""
        fast = x.device.type == "cpu" and x.dtype == torch.float32 and not x.requires_grad and not plain_ops_only()
        if fast and self.winograd:
            y = torch._nnpack_spatial_convolution(x.contiguous(), self.weight, self.bias, self.padding, self.stride)
            if residual is not None:
                y += residual
            return y.relu_() if self.relu else y
        if fast and _HAS_FUSED_CONV:
            args = (self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups)
            if residual is None:
                return _POINTWISE(x, *args, "relu" if self.relu else "none", [], "")
            if residual.is_contiguous(memory_format=torch.channels_last) == x.is_contiguous(
                memory_format=torch.channels_last
            ):
                return _POINTWISE.binary(x, residual, *args, "add", 1.0, "relu" if self.relu else None, [], "")
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        if residual is not None:
            y = y + residual
        return F.relu(y) if self.relu else y

    def train(self, mode: bool = True) -> FusedConv2d:
        if mode:
            raise RuntimeError("FusedConv2d is inference-only; train the model built by maskrcnn.model.build")
        return super().train(False)

    def extra_repr(self) -> str:
        out_c, in_c, kh, kw = self.weight.shape
        return (
            f"{in_c * self.groups}, {out_c}, kernel_size=({kh}, {kw}), stride={self.stride}, relu={self.relu}, "
            f"winograd={self.winograd}"
        )


class FusedBottleneck(nn.Module):
    """A ResNet bottleneck block with its norms folded: three fused convolutions, the last adding the shortcut."""

    def __init__(self, block: Bottleneck):
        super().__init__()
        self.conv1 = FusedConv2d(block.conv1, block.bn1, relu=True)
        self.conv2 = FusedConv2d(block.conv2, block.bn2, relu=True)
        self.conv3 = FusedConv2d(block.conv3, block.bn3, relu=True)
        self.downsample = None if block.downsample is None else FusedConv2d(*block.downsample, relu=False)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.conv3(self.conv2(self.conv1(x)), residual=identity)


class FusedBasicBlock(nn.Module):
    """A ResNet basic block with its norms folded: two fused convolutions, the second adding the shortcut."""

    def __init__(self, block: BasicBlock):
        super().__init__()
        self.conv1 = FusedConv2d(block.conv1, block.bn1, relu=True)
        self.conv2 = FusedConv2d(block.conv2, block.bn2, relu=True)
        self.downsample = None if block.downsample is None else FusedConv2d(*block.downsample, relu=False)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.conv2(self.conv1(x), residual=identity)


class FusedResNet(nn.Module):
    """A ResNet (``model/backbone.py``) with every norm folded: images (N, 3, H, W) -> [C2, C3, C4, C5], channels-last."""

    def __init__(self, resnet: ResNet):
        super().__init__()
        self.conv1 = FusedConv2d(resnet.conv1, resnet.bn1, relu=True)
        self.maxpool = resnet.maxpool
        for i in range(1, 5):
            blocks = [
                FusedBottleneck(b) if isinstance(b, Bottleneck) else FusedBasicBlock(b)
                for b in getattr(resnet, f"layer{i}")
            ]
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
        self.out_channels = list(resnet.out_channels)

    @staticmethod
    def supports(resnet: ResNet) -> bool:
        """True when every norm of ``resnet`` can be folded (frozen BN, or BN in eval mode; not GroupNorm)."""
        return all(can_fold(m) for m in resnet.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, FrozenBatchNorm2d)))

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.conv1(x.contiguous(memory_format=torch.channels_last)))  # (N, w, H/4, W/4)
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c2, c3, c4, c5]

    def train(self, mode: bool = True) -> FusedResNet:
        if mode:
            raise RuntimeError("FusedResNet is inference-only; train the model built by maskrcnn.model.build")
        return super().train(False)
