"""Checkpoint files: our format, and import of torchvision Mask R-CNN and ImageNet ResNet weights.

Our format is one ``torch.save`` file holding plain data only (loads with ``weights_only=True``)::

    {"format": "maskrcnn", "version": 1, "model": state_dict, "config": nested dict of Config,
     "class_names": [K names], "category_ids": [K dataset category ids], ...training state when resuming...}

A torchvision file is the state dict of ``maskrcnn_resnet50_fpn`` (as in ``maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth``,
or ``model.state_dict()`` of a current torchvision) or of ``maskrcnn_resnet50_fpn_v2`` (told apart by the convolutions
of its box head), optionally wrapped in {"model": ...}. It loads with ``aligned=False``, torchvision's anchor strides
and its resize rule, v1 with frozen-BN eps 0, v2 as the ``r50_fpn_v2`` architecture; its labels are torchvision's
COCO label indices, named with the COCO class names.

A detectron2 model-zoo file (``.pkl``, read by ``maskrcnn.zoo.detectron2`` without running code) loads with
``config.detectron2_config`` (its depth and ResNeXt groups read from the file); its 80 contiguous classes are the
COCO categories in their standard order, with their COCO ids.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from maskrcnn.config import Config, ModelConfig, detectron2_config, from_dict, preset, to_dict
from maskrcnn.data.coco_classes import COCO_CATEGORIES, torchvision_label_names
from maskrcnn.errors import UserError
from maskrcnn.io import atomic_torch_save
from maskrcnn.model.mask_rcnn import MaskRCNN
from maskrcnn.zoo.detectron2 import backbone_shape, detectron2_to_ours, read_detectron2_file

FORMAT = "maskrcnn"
VERSION = 1


@dataclass
class LoadedCheckpoint:
    """What a weights file holds, converted to our layout."""

    state_dict: dict[str, Tensor]
    config: Config
    class_names: list[str]
    category_ids: list[int]
    source: str  # "maskrcnn", "torchvision" or "detectron2"
    extra: dict[str, Any]  # training state of our checkpoints (optimizer, iteration, ...), else empty


def save_checkpoint(
    path: str | Path,
    *,
    model: torch.nn.Module,
    config: Config,
    class_names: list[str],
    category_ids: list[int],
    extra: dict[str, Any] | None = None,
) -> None:
    """Write our checkpoint atomically. ``extra`` must hold plain data and tensors only."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": to_dict(config),
        "class_names": list(class_names),
        "category_ids": [int(c) for c in category_ids],
    }
    if extra:
        payload.update(extra)
    atomic_torch_save(path, payload)


def read_file(path: str | Path) -> Any:
    """torch.load with weights_only=True, turning every failure into one UserError naming the file and saying what
    is wrong with it. A file that would need more than tensors and plain data to load is refused, and the message
    never suggests loading it some other way: unpickling arbitrary objects can run arbitrary code."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file not found: {path}")
    if path.suffix.lower() == ".pkl":  # detectron2's model zoo: read by maskrcnn.zoo.detectron2, not by torch.load
        raise UserError(f"{path} is a detectron2 model-zoo pickle, not a PyTorch checkpoint")
    if path.suffix.lower() == ".onnx":
        raise UserError(f"cannot read weights file {path}: it is an ONNX model, not a PyTorch checkpoint; run it with "
                        "ONNX Runtime")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise UserError(f"cannot read weights file {path}: {e.strerror or e}") from None
    if not head.startswith(_TORCH_MAGIC):
        kind = "an empty file" if not head else f"a file that starts with {head!r}"
        raise UserError(f"cannot read weights file {path}: not a PyTorch checkpoint (torch.save writes a zip archive), "
                        f"but {kind}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        refused = _REFUSED_GLOBAL.search(str(e))
        if refused or "Weights only load failed" in str(e):
            what = f" (such as {refused.group(1)})" if refused else ""
            raise UserError(
                f"cannot read weights file {path}: it holds Python objects other than tensors and plain data{what}, "
                "which maskrcnn does not load because loading them can run code; save the weights as a state dict "
                "(torch.save(model.state_dict(), path)) or use a maskrcnn checkpoint"
            ) from None
        raise UserError(f"cannot read weights file {path}: damaged or not a checkpoint ({_reason(e)})") from None
    except Exception as e:  # noqa: BLE001 - any other failure to load means a damaged file
        raise UserError(f"cannot read weights file {path}: damaged or not a checkpoint ({_reason(e)})") from None


_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save's zip archive; its older format, a bare pickle
_REFUSED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")


def _reason(error: Exception) -> str:
    """The first line of an error, without terminal colour codes, and never PyTorch's advice on ``weights_only``."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    first = text.splitlines()[0].strip() if text else ""
    return first if first and "weights_only" not in first else type(error).__name__


def load_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """Read our checkpoint or a torchvision Mask R-CNN state dict; UserError naming the file for anything else."""
    path = Path(path)
    if _is_detectron2(path):
        return _from_detectron2(path)
    obj = read_file(path)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return _from_ours(obj, path)
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if isinstance(state, dict) and _looks_like_torchvision(state):
        return _from_torchvision(state, path)
    raise UserError(
        f"{path} is neither a maskrcnn checkpoint nor a torchvision maskrcnn_resnet50_fpn(_v2) state dict "
        f"(top-level keys: {_preview(obj)})"
    )


def _preview(obj: Any, limit: int = 6) -> str:
    if not isinstance(obj, dict):
        return f"a {type(obj).__name__}, not a dict"
    keys = list(obj)
    text = ", ".join(map(str, keys[:limit]))
    return text + (f", ... ({len(keys)} keys)" if len(keys) > limit else "")


def _from_ours(obj: dict[str, Any], path: Path) -> LoadedCheckpoint:
    missing = [k for k in ("model", "config", "class_names", "category_ids") if k not in obj]
    if missing:
        raise UserError(f"checkpoint {path} is missing {', '.join(missing)}")
    if obj.get("version", 0) > VERSION:
        raise UserError(f"checkpoint {path} has format version {obj['version']}; this maskrcnn reads up to {VERSION}")
    try:
        config = from_dict(obj["config"])
    except UserError as e:
        raise UserError(f"checkpoint {path} holds an invalid config: {e}") from None
    extra = {k: v for k, v in obj.items() if k not in ("format", "version", "model", "config", "class_names", "category_ids")}
    return LoadedCheckpoint(obj["model"], config, list(obj["class_names"]), list(obj["category_ids"]), FORMAT, extra)


# ---- torchvision ---------------------------------------------------------------------------------------------------

# Old (torchvision < 0.13, as in the published COCO file) and current key forms, to ours; v1 and v2 alike. A
# replacement is a string or a function of the match. torchvision's Conv2dNormActivation blocks hold the convolution
# at ``.0`` and its norm (v2) at ``.1``; its RPN head's convolutions are ``conv.<i>.0``, ours ``conv`` then
# ``extra_convs.<i - 1>``.
_TORCHVISION_RULES: list[tuple[str, Any]] = [
    (r"^backbone\.body\.", "backbone.bottom_up."),
    (r"^backbone\.fpn\.inner_blocks\.(\d+)\.1\.", r"backbone.fpn.lateral_norms.\1."),
    (r"^backbone\.fpn\.layer_blocks\.(\d+)\.1\.", r"backbone.fpn.output_norms.\1."),
    (r"^backbone\.fpn\.inner_blocks\.(\d+)\.(?:0\.)?", r"backbone.fpn.lateral_convs.\1."),
    (r"^backbone\.fpn\.layer_blocks\.(\d+)\.(?:0\.)?", r"backbone.fpn.output_convs.\1."),
    (r"^rpn\.head\.conv\.(?:(\d+)\.0\.)?",
     lambda m: "rpn.head.conv." if int(m.group(1) or 0) == 0 else f"rpn.head.extra_convs.{int(m.group(1)) - 1}."),
    (r"^rpn\.head\.cls_logits\.", "rpn.head.objectness_logits."),
    (r"^rpn\.head\.bbox_pred\.", "rpn.head.anchor_deltas."),
    (r"^roi_heads\.box_head\.fc6\.", "roi_heads.box_head.fc1."),
    (r"^roi_heads\.box_head\.fc7\.", "roi_heads.box_head.fc2."),
    (r"^roi_heads\.box_head\.(\d+)\.0\.", r"roi_heads.box_head.convs.\1."),
    (r"^roi_heads\.box_head\.(\d+)\.1\.", r"roi_heads.box_head.norms.\1."),
    (r"^roi_heads\.box_predictor\.", "roi_heads.box_predictor."),
    (r"^roi_heads\.mask_head\.mask_fcn(\d+)\.", lambda m: f"roi_heads.mask_head.convs.{int(m.group(1)) - 1}."),
    (r"^roi_heads\.mask_head\.(\d+)\.0\.", r"roi_heads.mask_head.convs.\1."),
    (r"^roi_heads\.mask_head\.(\d+)\.1\.", r"roi_heads.mask_head.norms.\1."),
    (r"^roi_heads\.mask_predictor\.conv5_mask\.", "roi_heads.mask_head.deconv."),
    (r"^roi_heads\.mask_predictor\.mask_fcn_logits\.", "roi_heads.mask_head.predictor."),
]


def _looks_like_torchvision(state: dict[str, Any]) -> bool:
    return any(isinstance(k, str) and k.startswith("backbone.body.") for k in state) and any(
        isinstance(k, str) and k.startswith("roi_heads.") for k in state
    )


def _box_head_convs(state: dict[str, Any]) -> int:
    """How many conv blocks torchvision's box head has (``box_head.<i>.0.weight``): 4 in v2, none in v1."""
    return len({k for k in state if isinstance(k, str) and re.match(r"^roi_heads\.box_head\.\d+\.0\.weight$", k)})


def torchvision_to_ours(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a torchvision Mask R-CNN state dict (v1 or v2) to our module names. The backbone's
    num_batches_tracked are dropped (its norms are frozen here); those of v2's FPN and head BatchNorms are kept."""
    # v2's box head is one nn.Sequential: C conv blocks, a Flatten, then Linear and ReLU pairs (fc j at C + 2j - 1)
    convs = _box_head_convs(state)
    rules = [*_TORCHVISION_RULES, (r"^roi_heads\.box_head\.(\d+)\.(?=weight$|bias$)",
                                   lambda m: f"roi_heads.box_head.fc{(int(m.group(1)) - convs + 1) // 2}.")]
    out = {}
    for key, value in state.items():
        if key.startswith("backbone.body.") and key.endswith("num_batches_tracked"):
            continue
        new = key
        for pattern, replacement in rules:
            new, n = re.subn(pattern, replacement, key)
            if n:
                break
        out[new] = value
    return out


def is_torchvision_v2(state: dict[str, Any]) -> bool:
    """A maskrcnn_resnet50_fpn_v2 state dict (its box head has convolutions), rather than v1's."""
    return _box_head_convs(state) > 0


def torchvision_config(num_labels: int, *, v2: bool = False) -> Config:
    """The config of torchvision's maskrcnn_resnet50_fpn (or ``v2``: maskrcnn_resnet50_fpn_v2) with ``num_labels``
    label indices (background included): the r50_fpn (r50_fpn_v2) architecture with torchvision's conventions,
    RoIAlign not aligned, its anchor strides and its resize. v1's published file was trained with frozen BN of eps
    0; v2's backbone has BatchNorm2d (eps 1e-5)."""
    base = preset("r50_fpn_v2" if v2 else "r50_fpn").model
    return Config(
        model=dataclasses.replace(
            base,
            num_classes=num_labels - 1,
            backbone=dataclasses.replace(base.backbone, norm="frozen_bn", frozen_bn_eps=1e-5 if v2 else 0.0),
            rpn=dataclasses.replace(base.rpn, torchvision_anchor_strides=True),
            roi_heads=dataclasses.replace(base.roi_heads, aligned=False),
            input=dataclasses.replace(base.input, resize="torchvision"),
        )
    )


def _from_torchvision(state: dict[str, Tensor], path: Path) -> LoadedCheckpoint:
    cls = state.get("roi_heads.box_predictor.cls_score.weight")
    if not isinstance(cls, Tensor) or cls.dim() != 2:
        raise UserError(f"{path} looks like a torchvision Mask R-CNN but has no roi_heads.box_predictor.cls_score")
    num_labels = int(cls.shape[0])
    names = torchvision_label_names() if num_labels == 91 else [f"class_{i}" for i in range(num_labels)]
    return LoadedCheckpoint(
        state_dict=torchvision_to_ours(state),
        config=torchvision_config(num_labels, v2=is_torchvision_v2(state)),
        class_names=names[1:],
        category_ids=list(range(1, num_labels)),
        source="torchvision",
        extra={},
    )


# ---- detectron2 -------------------------------------------------------------------------------------------------------


def _is_detectron2(path: Path) -> bool:
    return path.suffix.lower() == ".pkl" and path.is_file()


def _from_detectron2(path: Path) -> LoadedCheckpoint:
    model = read_detectron2_file(path)
    try:
        depth, groups, width_per_group = backbone_shape(model)
    except UserError as e:  # about the backbone's arrays: say which file holds them
        raise UserError(f"{path}: {e}") from None
    state = detectron2_to_ours(model, path=path)
    num_classes = int(state["roi_heads.box_predictor.cls_score.weight"].shape[0]) - 1
    if num_classes == len(COCO_CATEGORIES):
        names, ids = [n for _, n in COCO_CATEGORIES], [c for c, _ in COCO_CATEGORIES]
    else:
        names, ids = [f"class_{i}" for i in range(num_classes)], list(range(1, num_classes + 1))
    config = detectron2_config(depth=depth, groups=groups, width_per_group=width_per_group, num_classes=num_classes)
    return LoadedCheckpoint(state, config, names, ids, "detectron2", {})


def load_state_into(model: MaskRCNN, state: dict[str, Tensor], *, path: str | Path) -> None:
    """Load a state dict in our layout; one UserError listing what is missing, unexpected or mis-shaped."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in state and isinstance(state[k], Tensor) and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)):
            if items:
                more = f" and {len(items) - 8} more" if len(items) > 8 else ""
                parts.append(f"{label}: {', '.join(items[:8])}{more}")
        raise UserError(f"weights in {path} do not fit the model: " + "; ".join(parts))
    model.load_state_dict(state)


# ---- ImageNet backbones ----------------------------------------------------------------------------------------------


def load_imagenet_backbone(model: MaskRCNN, path: str | Path) -> None:
    """Load a torchvision ImageNet ResNet file (conv1.weight, layer1.0..., fc.*) into the bottom-up backbone."""
    obj = read_file(path)
    state = obj.get("model", obj.get("state_dict", obj)) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or "conv1.weight" not in state:
        raise UserError(f"{path} is not an ImageNet ResNet state dict (no conv1.weight; keys: {_preview(obj)})")
    state = {k: v for k, v in state.items() if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    target = model.backbone.bottom_up
    expected = {k: v for k, v in target.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        raise UserError(
            f"ImageNet weights in {path} do not fit a ResNet-{_depth(target)} backbone: "
            f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), "
            f"{len(mismatched)} wrong shape (e.g. {mismatched[:3]})"
        )
    target.load_state_dict(state, strict=False)


def _depth(resnet: torch.nn.Module) -> str:
    counts = [len(getattr(resnet, f"layer{i}")) for i in range(1, 5)]
    return {(2, 2, 2, 2): "18", (3, 4, 6, 3): "34/50", (3, 4, 23, 3): "101"}.get(tuple(counts), "?")


# Layers whose shape depends on the number of classes: re-initialised when starting from other classes.
CLASS_SPECIFIC = ("roi_heads.box_predictor.", "roi_heads.mask_head.predictor.")


def resize_class_heads(state: dict[str, Tensor], num_classes: int) -> dict[str, Tensor]:
    """Drop the class-specific layers (classifier, box deltas, mask predictor) when the class count changes, so
    that a checkpoint trained on other classes initialises everything else."""
    cls = state.get("roi_heads.box_predictor.cls_score.weight")
    if cls is not None and cls.shape[0] == num_classes + 1:
        return state
    return {k: v for k, v in state.items() if not k.startswith(CLASS_SPECIFIC)}


@dataclass
class StartingWeights:
    """What ``read_starting_weights`` read: kind "maskrcnn", "torchvision" or "detectron2" (``state`` in our
    layout) or "imagenet" (a torchvision ResNet classifier's layout); ``model_config``: the architecture and input
    conventions the weights need, where the file fixes them (detectron2's, torchvision's v2), else None."""

    kind: str
    state: dict[str, Tensor]
    model_config: ModelConfig | None = None


def read_starting_weights(path: Path) -> StartingWeights:
    """Read a file to start training from (``StartingWeights``); UserError naming it for anything else."""
    if _is_detectron2(path):
        loaded = _from_detectron2(path)
        return StartingWeights("detectron2", loaded.state_dict, loaded.config.model)
    obj = read_file(path)
    if isinstance(obj, dict) and obj.get("format") == "maskrcnn":
        return StartingWeights("maskrcnn", load_checkpoint(path).state_dict)
    state = obj.get("model", obj.get("state_dict", obj)) if isinstance(obj, dict) else None
    if isinstance(state, dict) and _looks_like_torchvision(state):
        loaded = _from_torchvision(state, path)
        # v2 needs its own heads and BN eps (r50_fpn_v2); v1 fits r50_fpn's
        needed = loaded.config.model if is_torchvision_v2(state) else None
        return StartingWeights("torchvision", loaded.state_dict, needed)
    if isinstance(state, dict) and "conv1.weight" in state:
        return StartingWeights("imagenet", state)
    raise UserError(f"{path} is not a maskrcnn checkpoint, a torchvision or detectron2 Mask R-CNN or an ImageNet "
                    "ResNet state dict")


def apply_starting_weights(
    model: MaskRCNN, kind: str, state: dict[str, Tensor], *, num_classes: int, path: Path
) -> None:
    """Load what ``read_starting_weights`` returned; everything must fit except the class-specific layers."""
    if kind == "imagenet":
        load_imagenet_backbone(model, path)
        return
    state = resize_class_heads(state, num_classes)
    fresh = {k: v for k, v in model.state_dict().items() if k.startswith(CLASS_SPECIFIC) and k not in state}
    load_state_into(model, {**state, **fresh}, path=path)
