"""Folding a normalisation layer into the convolution before it, for inference, in any model.

A frozen BatchNorm (or a BatchNorm in eval mode) computes y = x * s + t per channel, with s = gamma / sqrt(var + eps)
and t = beta - mean * s, so conv(x, W, b) followed by it is conv(x, W * s[:, None, None, None], b * s + t): one
convolution. Example: a 1x1 conv with weight 2 and bias 0, then a norm with s = 0.5, t = 1, becomes a 1x1 conv with
weight 1 and bias 1.

``fold_norms(model)`` finds every ``nn.Conv2d`` whose output is read by a foldable norm and by nothing else, in the
modules' own forwards (their ``torch.fx`` graphs), wherever the two sit: siblings (``conv1`` / ``bn1`` of a ResNet
block), consecutive layers of an ``nn.Sequential`` (a shortcut, torchvision's ``Conv2dNormActivation``), any
naming. It replaces the convolution by the folded one and the norm by ``FoldedNorm`` (an identity), so every parent
forward runs unchanged. A module whose forward cannot be traced symbolically (loops over a list argument, data-
dependent branches) is searched through its children instead. GroupNorm, and BatchNorm in training mode, depend on
their input's statistics and stay as they are.
"""

from __future__ import annotations

import torch
from torch import Tensor, fx, nn
from torch.nn.utils import skip_init
from torchvision.ops.misc import FrozenBatchNorm2d as TorchvisionFrozenBatchNorm2d

from maskrcnn.model.backbone import FrozenBatchNorm2d
from maskrcnn.model.inference_only import InferenceOnly

NORMS = (FrozenBatchNorm2d, TorchvisionFrozenBatchNorm2d, nn.BatchNorm2d, nn.GroupNorm)


def norm_scale_shift(norm: nn.Module) -> tuple[Tensor, Tensor]:
    """(scale, shift): Tensor[C] each, so that ``norm`` (frozen, or BatchNorm2d in eval mode) is x * scale + shift.

    Raises ValueError for a norm that depends on its input's statistics (GroupNorm, BatchNorm in training mode).
    """
    if isinstance(norm, FrozenBatchNorm2d):
        return norm.scale_and_shift()
    if isinstance(norm, TorchvisionFrozenBatchNorm2d) or (
        isinstance(norm, nn.BatchNorm2d) and not norm.training and norm.track_running_stats
    ):
        inv_std = (norm.running_var + norm.eps).rsqrt()
        scale = norm.weight * inv_std if norm.weight is not None else inv_std
        shift = (norm.bias if norm.bias is not None else 0.0) - norm.running_mean * scale
        return scale, shift
    raise ValueError(f"cannot fold {type(norm).__name__} (training={norm.training}) into a convolution")


def can_fold(norm: nn.Module) -> bool:
    try:
        norm_scale_shift(norm)
    except ValueError:
        return False
    return True


def folded_conv(conv: nn.Conv2d, norm: nn.Module) -> nn.Conv2d:
    """A new Conv2d (with bias, no gradients) computing norm(conv(x))."""
    scale, shift = (t.detach() for t in norm_scale_shift(norm))
    weight = conv.weight.detach()
    # skip_init: no random initialisation, which would advance the global RNG that a training run evaluating
    # through a Predictor relies on for exact resume; the weights are set below
    folded = skip_init(
        nn.Conv2d, conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
        dilation=conv.dilation, groups=conv.groups, bias=True, padding_mode=conv.padding_mode,
        device=weight.device, dtype=weight.dtype,
    )
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(scale)
    with torch.no_grad():
        folded.weight.copy_(weight * scale.reshape(-1, 1, 1, 1))
        folded.bias.copy_(bias * scale + shift)
    return folded.requires_grad_(False)


class FoldedNorm(InferenceOnly, nn.Identity):
    """Where a norm was folded into the convolution before it: the identity."""


class _ConvNormTracer(fx.Tracer):
    """Records convolutions and norms as calls; modules holding no convolution are not traced into."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, (nn.Conv2d, *NORMS)):
            return True
        if not any(isinstance(c, nn.Conv2d) for c in m.modules()):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def conv_norm_pairs(module: nn.Module, prefix: str = "") -> list[tuple[str, str]]:
    """(convolution, norm) module paths under ``module`` where the norm reads the convolution's output, alone, at
    every call, and only that convolution's output; the norm foldable."""
    if isinstance(module, nn.Conv2d) or not any(isinstance(m, nn.Conv2d) for m in module.modules()):
        return []
    try:
        graph = _ConvNormTracer().trace(module)
    except Exception:  # noqa: BLE001 - any forward fx cannot follow: look inside its children instead
        pairs = []
        for name, child in module.named_children():
            pairs += conv_norm_pairs(child, f"{prefix}{name}.")
        return pairs
    modules = dict(module.named_modules())
    calls: dict[str, list[fx.Node]] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls.setdefault(node.target, []).append(node)
    pairs = []
    for target, nodes in calls.items():
        if type(modules[target]) is not nn.Conv2d:  # subclasses may compute more than a convolution
            continue
        readers = {n for node in nodes for n in node.users}
        if any(len(node.users) != 1 for node in nodes) or len(readers) != len(nodes):
            continue
        norms = {n.target for n in readers if n.op == "call_module"}
        if len(norms) != 1 or any(n.op != "call_module" for n in readers):
            continue
        norm = norms.pop()
        if not isinstance(modules[norm], NORMS) or not can_fold(modules[norm]):
            continue
        if all(call in readers for call in calls[norm]):  # the norm reads nothing else
            pairs.append((prefix + target, prefix + norm))
    return pairs


def fold_norms(model: nn.Module) -> int:
    """Fold every foldable norm of ``model`` (in eval mode) into the convolution before it, in place.

    Returns the number of norms folded. The model is then inference-only: its folded norms refuse ``train()``.
    """
    pairs = conv_norm_pairs(model)
    for conv_path, norm_path in pairs:
        conv, norm = model.get_submodule(conv_path), model.get_submodule(norm_path)
        replace_module(model, conv_path, folded_conv(conv, norm))
        replace_module(model, norm_path, FoldedNorm())
    return len(pairs)


def replace_module(model: nn.Module, path: str, new: nn.Module) -> None:
    """Put ``new`` where the submodule at ``path`` ("layer1.0.conv1") is."""
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, new)
