"""detectron2 model-zoo files: their layout, and their parameters under our module names.

A model-zoo file (``model_final_f10217.pkl``) is a pickle of::

    {"model": {name: np.ndarray}, "__author__": "...", "matching_heuristics": True}   # the last two optional

with detectron2's module names, for R50-FPN and R101-FPN (K = 80 COCO classes, D = 1024, C = 256); ours in brackets
(``bottom_up.`` is ``backbone.bottom_up.``)::

    backbone.bottom_up.stem.conv1.weight, .norm.{weight,bias,running_mean,running_var}   [bottom_up.conv1, .bn1]
    backbone.bottom_up.res{2..5}.{b}.conv{1..3}[.norm].*            [bottom_up.layer{1..4}.{b}.conv{1..3} / .bn{1..3}]
    backbone.bottom_up.res{2..5}.0.shortcut[.norm].*                [bottom_up.layer{1..4}.0.downsample.0 / .1]
    backbone.fpn_lateral{2..5}.*, backbone.fpn_output{2..5}.*       [backbone.fpn.lateral_convs / output_convs.{0..3}]
    proposal_generator.rpn_head.{conv,objectness_logits,anchor_deltas}.*                 [rpn.head.*]
    roi_heads.box_head.fc{1,2}.*                                                         [the same]
    roi_heads.box_predictor.cls_score (K+1, D), background LAST       [(K+1, D), background first]
    roi_heads.box_predictor.bbox_pred (4K, D), no background rows     [(4(K+1), D), zero rows first]
    roi_heads.mask_head.mask_fcn{1..4}.*, .deconv.*                   [roi_heads.mask_head.convs.{0..3}, .deconv]
    roi_heads.mask_head.predictor (K, C, 1, 1), no background         [(K+1, C, 1, 1), zero row first]

The class layers are reordered and padded so that our class 0 stays background: the softmax over reordered logits
is the same, and the zero rows belong to background, which is never decoded into a box or a mask. The stem's
convolution reads BGR in detectron2; its input channels are reversed here so that the model reads RGB as every
other (conv1 over RGB with reversed filters is conv1 over BGR). Every other parameter keeps its values; what
detectron2 computes differently (its pixel mean and std, the stride in the 1x1 convolution of each first
bottleneck, its resize, ...) is for the model to reproduce, from the config of ``config.detectron2_config``.

ResNeXt files (X101-32x8d) have the same names; their grouped 3x3 convolutions have 1 / groups of the input
channels (``backbone_shape`` reads groups and width per group from them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from maskrcnn.errors import UserError
from maskrcnn.zoo.safe_pickle import load_numpy_pickle

# Buffers older detectron2 versions saved and current ones rebuild: not weights.
_IGNORED = re.compile(r"^(pixel_mean|pixel_std|proposal_generator\.anchor_generator\.cell_anchors\.\d+)$")

_Rule = tuple[re.Pattern, Callable[[re.Match], str]]


def _rule(pattern: str, replacement: Callable[[re.Match], str] | str) -> _Rule:
    return re.compile(pattern), replacement if callable(replacement) else (lambda m: replacement)


_PARAMS = {"weight", "bias"}
_NORM = {"weight", "bias", "running_mean", "running_var"}  # detectron2's FrozenBatchNorm2d
_RULES: list[_Rule] = [
    _rule(r"^backbone\.bottom_up\.stem\.conv1\.norm\.", "backbone.bottom_up.bn1."),
    _rule(r"^backbone\.bottom_up\.stem\.conv1\.", "backbone.bottom_up.conv1."),
    _rule(
        r"^backbone\.bottom_up\.res([2-5])\.(\d+)\.shortcut\.(norm\.)?",
        lambda m: f"backbone.bottom_up.layer{int(m[1]) - 1}.{m[2]}.downsample.{1 if m[3] else 0}.",
    ),
    _rule(
        r"^backbone\.bottom_up\.res([2-5])\.(\d+)\.conv([1-3])\.(norm\.)?",
        lambda m: f"backbone.bottom_up.layer{int(m[1]) - 1}.{m[2]}.{'bn' if m[4] else 'conv'}{m[3]}.",
    ),
    _rule(r"^backbone\.fpn_lateral([2-5])\.", lambda m: f"backbone.fpn.lateral_convs.{int(m[1]) - 2}."),
    _rule(r"^backbone\.fpn_output([2-5])\.", lambda m: f"backbone.fpn.output_convs.{int(m[1]) - 2}."),
    _rule(r"^proposal_generator\.rpn_head\.(conv|objectness_logits|anchor_deltas)\.", lambda m: f"rpn.head.{m[1]}."),
    _rule(r"^roi_heads\.box_head\.fc([12])\.", lambda m: f"roi_heads.box_head.fc{m[1]}."),
    _rule(r"^roi_heads\.box_predictor\.(cls_score|bbox_pred)\.", lambda m: f"roi_heads.box_predictor.{m[1]}."),
    _rule(r"^roi_heads\.mask_head\.mask_fcn([1-4])\.", lambda m: f"roi_heads.mask_head.convs.{int(m[1]) - 1}."),
    _rule(r"^roi_heads\.mask_head\.(deconv|predictor)\.", lambda m: f"roi_heads.mask_head.{m[1]}."),
]


def read_detectron2_file(path: Path) -> dict[str, np.ndarray]:
    """The ``model`` dict of a detectron2 model-zoo pickle, read without running code (see safe_pickle).

    UserError naming the file when it is not in that layout (a Detectron v1 ``blobs`` file, a torch file, ...).
    """
    obj = load_numpy_pickle(path)
    if isinstance(obj, dict) and "blobs" in obj and "model" not in obj:
        raise UserError(f"{path} holds Detectron (v1, Caffe2) blobs, not a detectron2 model")
    model = obj.get("model") if isinstance(obj, dict) else None
    if not isinstance(model, dict):
        keys = ", ".join(map(str, list(obj)[:6])) if isinstance(obj, dict) else f"a {type(obj).__name__}"
        raise UserError(f"{path} is not a detectron2 model-zoo file: no 'model' dict of arrays (found: {keys})")
    bad = [str(k) for k, v in model.items() if not isinstance(k, str) or not _numeric_array(v)]
    if bad:
        raise UserError(f"{path}: 'model' holds entries that are not numeric arrays: {', '.join(bad[:5])}")
    return model


def _numeric_array(value: object) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind in "biuf"


def detectron2_to_ours(model: dict[str, np.ndarray], *, path: Path | str = "weights") -> dict[str, Tensor]:
    """detectron2 R50/R101-FPN Mask R-CNN parameters -> our state dict (float32 tensors), class layers reordered
    and padded as the module docstring says. UserError listing the names no rule knows."""
    out: dict[str, Tensor] = {}
    unknown = []
    for name, value in model.items():
        if _IGNORED.match(name):
            continue
        new = _rename(name)
        if new is None:
            unknown.append(name)
            continue
        out[new] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    if unknown:
        more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
        raise UserError(
            f"{path} has parameters that are not those of a detectron2 R50/R101-FPN Mask R-CNN: "
            f"{', '.join(unknown[:8])}{more}"
        )
    _convert_class_layers(out, path)
    stem = out.get("backbone.bottom_up.conv1.weight")
    if stem is not None:
        out["backbone.bottom_up.conv1.weight"] = stem.flip(1).contiguous()  # (C, 3, 7, 7): BGR -> RGB filters
    return out


def _rename(name: str) -> str | None:
    for pattern, replacement in _RULES:
        match = pattern.match(name)
        if match:
            rest = name[match.end() :]
            allowed = _NORM if match.group(0).endswith("norm.") else _PARAMS
            return replacement(match) + rest if rest in allowed else None
    return None


def _convert_class_layers(state: dict[str, Tensor], path: Path | str) -> None:
    """Background last -> first in the classifier; a zero background entry before the class-specific rows of the
    box deltas and mask predictor (in place)."""
    cls_w = state.get("roi_heads.box_predictor.cls_score.weight")
    if cls_w is None:
        raise UserError(f"{path} has no roi_heads.box_predictor.cls_score: not a Mask R-CNN")
    num_classes = cls_w.shape[0] - 1
    for suffix in ("weight", "bias"):
        key = f"roi_heads.box_predictor.cls_score.{suffix}"
        state[key] = torch.cat([state[key][-1:], state[key][:-1]])  # (K+1, ...): background last -> first
        for layer, per_class in (("roi_heads.box_predictor.bbox_pred", 4), ("roi_heads.mask_head.predictor", 1)):
            key = f"{layer}.{suffix}"
            value = state.get(key)
            if value is None:
                continue
            if value.shape[0] != num_classes * per_class:
                raise UserError(
                    f"{path}: {key} has {value.shape[0]} rows; {num_classes} classes need {num_classes * per_class} "
                    f"(class-agnostic box or mask heads are not supported)"
                )
            # (K*p, ...) -> ((K+1)*p, ...), p = 4 deltas or 1 mask per class
            state[key] = torch.cat([value.new_zeros((per_class, *value.shape[1:])), value])


def backbone_shape(model: dict[str, np.ndarray]) -> tuple[int, int, int]:
    """(depth, groups, width_per_group) of a detectron2 backbone: (50, 1, 64) for R50, (101, 32, 8) for
    X101-32x8d, from the number of res4 blocks and the first bottleneck's 3x3 convolution (C_inner, C_inner / groups,
    3, 3)."""
    depth = resnet_depth(model)
    conv2 = model.get("backbone.bottom_up.res2.0.conv2.weight")
    if conv2 is None or conv2.ndim != 4:
        raise UserError("a detectron2 backbone without backbone.bottom_up.res2.0.conv2.weight")
    inner, per_group = int(conv2.shape[0]), int(conv2.shape[1])
    if per_group < 1 or inner % per_group:
        raise UserError(f"backbone.bottom_up.res2.0.conv2.weight has shape {conv2.shape}: not a (grouped) convolution")
    return depth, inner // per_group, per_group


def resnet_depth(model: dict[str, np.ndarray]) -> int:
    """50 or 101, from the number of res4 blocks (6 or 23) in detectron2 names; UserError otherwise."""
    blocks = {int(m[1]) for k in model if (m := re.match(r"^backbone\.bottom_up\.res4\.(\d+)\.", k))}
    depth = {6: 50, 23: 101}.get(len(blocks))
    if depth is None:
        raise UserError(f"a detectron2 backbone with {len(blocks)} res4 blocks is neither ResNet-50 (6) nor -101 (23)")
    return depth
