"""Folding a normalisation layer into the convolution before it, for inference, in any model.

A frozen BatchNorm (or a BatchNorm in eval mode) computes y = x * s + t per channel, with s = gamma / sqrt(var + eps)
and t = beta - mean * s, so conv(x, W, b) followed by it is conv(x, W * s[:, None, None, None], b * s + t): one
convolution. Example: a 1x1 conv with weight 2 and bias 0, then a norm with s = 0.5, t = 1, becomes a 1x1 conv with
weight 1 and bias 1.

``fold_norms(model)`` finds every ``nn.Conv2d`` whose output is read by a foldable norm and by nothing else, in the
modules' own forwards (``sole_readers``: their ``torch.fx`` graphs), wherever the two sit: siblings (``conv1`` /
``bn1`` of a ResNet block), consecutive layers of an ``nn.Sequential`` (a shortcut, torchvision's
``Conv2dNormActivation``), any naming. It replaces the convolution by the folded one and the norm by ``FoldedNorm``
(an identity), so every parent forward runs unchanged. A module whose forward cannot be traced symbolically (loops
over a list argument, data-dependent branches) is searched through its children instead. GroupNorm, and BatchNorm in
training mode, depend on their input's statistics and stay as they are.
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


class _LeafTracer(fx.Tracer):
    """Records convolutions, norms and ReLUs as calls; modules holding no convolution are not traced into."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, (nn.Conv2d, nn.ReLU, *NORMS)):
            return True
        if not any(isinstance(c, nn.Conv2d) for c in m.modules()):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def sole_readers(module: nn.Module, prefix: str = "") -> dict[str, str]:
    """{path of a convolution, norm or ReLU: path of the one module that reads its output}, wherever, at every call of
    the first, that module alone reads its output, and reads nothing but it (so the two can be merged into one).

    Found in the ``torch.fx`` graphs of the modules' own forwards; a module whose forward fx cannot follow (a loop
    over a list argument, a data-dependent branch) is searched through its children instead. Modules calling the
    same leaf in several places (one ReLU after three layers) never qualify.
    """
    if isinstance(module, nn.Conv2d) or not any(isinstance(m, nn.Conv2d) for m in module.modules()):
        return {}
    try:
        graph = _LeafTracer().trace(module)
    except Exception:  # noqa: BLE001 - any forward fx cannot follow: look inside its children instead
        readers = {}
        for name, child in module.named_children():
            readers.update(sole_readers(child, f"{prefix}{name}."))
        return readers
    calls: dict[str, list[fx.Node]] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls.setdefault(node.target, []).append(node)
    readers = {}
    for target, nodes in calls.items():
        users = [user for node in nodes for user in node.users]
        if any(len(node.users) != 1 for node in nodes) or any(u.op != "call_module" for u in users):
            continue
        reader = {u.target for u in users}
        if len(reader) != 1:
            continue
        reader = reader.pop()
        # each call of the reader reads one call of ``target``, and nothing else
        if len(calls[reader]) == len(nodes) and all(len(r.all_input_nodes) == 1 and r in users for r in calls[reader]):
            readers[prefix + target] = prefix + reader
    return readers


def conv_norm_pairs(module: nn.Module, readers: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(convolution, norm) module paths under ``module`` where the norm, foldable, alone reads the convolution.
    readers: ``sole_readers(module)``, when already known."""
    pairs = []
    for source, reader in (sole_readers(module) if readers is None else readers).items():
        conv, norm = module.get_submodule(source), module.get_submodule(reader)
        # a Conv2d subclass may compute more than a convolution
        if type(conv) is nn.Conv2d and isinstance(norm, NORMS) and can_fold(norm):
            pairs.append((source, reader))
    return pairs


def fold_norms(model: nn.Module, readers: dict[str, str] | None = None) -> int:
    """Fold every foldable norm of ``model`` (in eval mode) into the convolution before it, in place.

    Returns the number of norms folded. The model is then inference-only: its folded norms refuse ``train()``.
    readers: ``sole_readers(model)``, when already known.
    """
    pairs = conv_norm_pairs(model, readers)
    for conv_path, norm_path in pairs:
        conv, norm = model.get_submodule(conv_path), model.get_submodule(norm_path)
        replace_module(model, conv_path, folded_conv(conv, norm))
        replace_module(model, norm_path, FoldedNorm())
    return len(pairs)


def replace_module(model: nn.Module, path: str, new: nn.Module) -> None:
    """Put ``new`` where the submodule at ``path`` ("layer1.0.conv1") is."""
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, new)
