"""Inference-only leaves for fast CPU inference: each computes what the leaf it replaces computes, faster on a CPU.

Shapes: N images (or RoIs), C_in / C_out channels, H x W maps, R RoIs, S pooled size.

``prepare_for_inference`` (``model/inference.py``) puts them into a model in place of the leaves the model was built
with; the parents' forwards stay as they are. Each was kept because ``benchmarks/levers.py`` measures a gain for it
(figures: docs/benchmarks.md, the levers table). Traced or exported (ONNX), they run as the plain ops of the leaves
they replace, which every runtime has.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from maskrcnn.model.inference_only import InferenceOnly
from maskrcnn.model.poolers import RoIAlign
from maskrcnn.model.roi_align import roi_align_channels_last


def plain_ops_only() -> bool:
    """Tracing, exporting or compiling: the custom kernels are not part of the graph vocabulary."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


# oneDNN convolution with fused post-ops (the kernel torch.compile's CPU backend emits for conv + ReLU); absent from
# builds without oneDNN, where the plain ops are used.
_ONEDNN_POINTWISE = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)
_HAS_ONEDNN_POINTWISE = _ONEDNN_POINTWISE is not None and torch.backends.mkldnn.is_available()


def winograd_available() -> bool:
    """True when this torch build has NNPACK and it initialises on this CPU (the call also initialises it)."""
    return hasattr(torch, "_nnpack_spatial_convolution") and bool(torch._nnpack_available())


def _on_cpu_float(x: Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype == torch.float32 and not x.requires_grad and not plain_ops_only()


class ConvReLU(InferenceOnly):
    """relu(conv(x)) in one oneDNN kernel (the ReLU as the convolution's post-op), channels-last, for a Conv2d whose
    output only a ReLU reads (after folding, the ResNet's stem and the conv1 and conv2 of each block).

    Private op ``torch.ops.mkldnn._convolution_pointwise``: 1.05x plain channels-last convolutions with in-place ReLUs
    on ResNet-50 at (1, 3, 800, 1216) with one thread, 1.01x with two on an idle machine, more when other jobs load
    it (fewer passes over memory); the residual additions in the kernel too would add 0.02x (levers.py,
    docs/benchmarks.md): not worth a block-level swap.
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"expected a zero-padded convolution with numeric padding, got {conv}")
        weight = conv.weight.detach().contiguous(memory_format=torch.channels_last)
        self.weight = nn.Parameter(weight, requires_grad=False)
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(weight[:, 0, 0, 0])
        self.bias = nn.Parameter(bias.clone(), requires_grad=False)
        self.stride, self.padding = tuple(conv.stride), tuple(conv.padding)
        self.dilation, self.groups = tuple(conv.dilation), conv.groups

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) -> (N, C_out, H', W'), channels-last."""
        if _HAS_ONEDNN_POINTWISE and _on_cpu_float(x):
            return _ONEDNN_POINTWISE(
                x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups, "relu", [], ""
            )
        return F.relu(F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups))


class ReLUInConv(InferenceOnly, nn.Identity):
    """Where a ReLU now runs inside the convolution before it (``ConvReLU``): the identity."""


class WinogradConv2d(InferenceOnly):
    """A 3x3 stride-1 Conv2d run as a Winograd convolution (Lavin & Gray 2016; NNPACK's F(6x6, 3x3): 64 products for
    36 outputs instead of 324), on and to NCHW maps; relative errors around 1e-5.

    Private op ``torch._nnpack_spatial_convolution``: on the RPN's 3x3 conv on P2 (1, 256, 200, 304), 1.41x eager
    conv2d and 1.24x a channels-last oneDNN convolution (levers.py, two threads; 1.47x / 1.34x with one). Used for
    the large maps (FPN outputs, RPN head); on 100 mask RoIs (100, 256, 14, 14) it gains nothing over oneDNN (1.02x
    eager against oneDNN's 1.11x), so the mask head stays channels-last oneDNN. Where NNPACK is missing, for other
    dtypes or devices, and traced, it is the plain convolution.
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if (
            tuple(conv.kernel_size) != (3, 3)
            or tuple(conv.stride) != (1, 1)
            or tuple(conv.dilation) != (1, 1)
            or conv.groups != 1
            or conv.padding_mode != "zeros"
            or isinstance(conv.padding, str)
        ):
            raise ValueError(f"a Winograd convolution needs a 3x3 stride-1 ungrouped convolution, got {conv}")
        self.weight = nn.Parameter(conv.weight.detach().contiguous(), requires_grad=False)
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(self.weight[:, 0, 0, 0])
        self.bias = nn.Parameter(bias.clone(), requires_grad=False)
        self.padding = tuple(conv.padding)
        self.available = winograd_available()

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W) -> (N, C_out, H, W), NCHW."""
        if self.available and _on_cpu_float(x) and x.shape[0] > 0:
            return torch._nnpack_spatial_convolution(x.contiguous(), self.weight, self.bias, self.padding, (1, 1))
        return F.conv2d(x, self.weight, self.bias, padding=self.padding)

    def extra_repr(self) -> str:
        out_c, in_c = self.weight.shape[:2]
        return f"{in_c}, {out_c}, kernel_size=(3, 3), padding={self.padding}, winograd={self.available}"


class PointwiseConvToNCHW(InferenceOnly):
    """A 1x1 stride-1 Conv2d as one matrix product that reads a channels-last map as (H*W, C_in) rows and writes an
    NCHW map: the FPN's lateral convolutions, between the channels-last ResNet and the NCHW Winograd convolutions,
    so that no map is converted between layouts. 2.26x a oneDNN convolution followed by the conversion to NCHW,
    on C2 (1, 256, 200, 304) (levers.py, docs/benchmarks.md)."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if tuple(conv.kernel_size) != (1, 1) or tuple(conv.stride) != (1, 1) or conv.groups != 1:
            raise ValueError(f"expected a 1x1 stride-1 ungrouped convolution, got {conv}")
        self.weight = nn.Parameter(conv.weight.detach().clone(), requires_grad=False)  # (C_out, C_in, 1, 1)
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(self.weight[:, 0, 0, 0])
        self.bias = nn.Parameter(bias.clone(), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C_in, H, W), channels-last is fastest -> (N, C_out, H, W), NCHW."""
        if not _on_cpu_float(x):
            return F.conv2d(x, self.weight, self.bias)
        n, c, h, w = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(n, h * w, c)  # (N, H*W, C_in): a view of a channels-last map
        # (C_out, C_in) @ (N, C_in, H*W) + bias -> (N, C_out, H*W)
        out = torch.matmul(self.weight.view(-1, c), rows.transpose(1, 2)).add_(self.bias[:, None])
        return out.view(n, -1, h, w)


class GatherRoIAlign(InferenceOnly):
    """RoIAlign of one level as a weighted gather over a channels-last map (``model/roi_align.py``), the same
    function as torchvision's kernel: 3.1x that kernel for 1000 box RoIs over P2-P5 counting the copy of the maps
    to channels-last, then 6.1x for the mask head's 100 RoIs from the same copy (levers.py, docs/benchmarks.md).
    With detectron2's adaptive sampling (sampling_ratio 0) it pools the boxes in groups of the same point grid: 2.95x
    torchvision's kernel for the 1000 box RoIs, the copy to channels-last included (levers.py)."""

    def __init__(self, align: RoIAlign):
        super().__init__()
        self.plain = align  # traced, the graph pools with torchvision's op (ONNX RoiAlign)

    def layout(self, features: list[Tensor]) -> list[Tensor]:
        """Channels-last copies of the maps: each pixel's C channels contiguous, one row of the gather's table."""
        if plain_ops_only():
            return features
        return [f.contiguous(memory_format=torch.channels_last) for f in features]

    def forward(self, feature: Tensor, rois: Tensor, spatial_scale: float) -> Tensor:
        """feature: (N, C, H, W); rois: (R, 5) (batch index, x1, y1, x2, y2) in image pixels -> (R, C, S, S)."""
        if plain_ops_only():
            return self.plain(feature, rois, spatial_scale)
        return roi_align_channels_last(
            feature.contiguous(memory_format=torch.channels_last),
            rois,
            output_size=self.plain.output_size[0],
            spatial_scale=spatial_scale,
            sampling_ratio=self.plain.sampling_ratio,
            aligned=self.plain.aligned,
        )
