"""Configuration: frozen dataclasses, one per stage, the presets, and YAML / ``key=value`` overrides.

Only ``model/build.py`` (and the training engine, for ``SolverConfig``) read a config; every module takes explicit
keyword-only arguments.

A config file is YAML holding any subset of the fields, optionally starting from a preset::

    preset: small
    model:
      num_classes: 3
      roi_heads: {batch_size_per_image: 64}
    solver: {max_iter: 2000, base_lr: 0.02}

and a command line may override any field with a dotted ``key=value`` (``solver.base_lr=0.01``, values parsed as YAML).

Every field says what it allows in its annotation (``batch_size: Annotated[int, AT_LEAST_1]``); a config is checked
whenever one is built, so a bad value fails at once with one line naming the key, the value and the rule
(``solver.batch_size=0: must be >= 1``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

import yaml

from maskrcnn.errors import UserError


# ---- what each field allows ----------------------------------------------------------------------------------------
# A field's rule rides on its annotation (``Annotated[int, AtLeast(1)]``) and is checked whenever a config is built,
# from a preset, a YAML file, overrides or a checkpoint, so that a bad value is one line naming the key, the value and
# what is allowed, before anything runs.


@dataclass(frozen=True)
class Range:
    """A number in ``[low, high]``; ``open_low`` / ``open_high`` exclude that end. For a tuple, every item."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def allows(self, value: Any) -> bool:
        return all(
            (self.low is None or (v > self.low if self.open_low else v >= self.low))
            and (self.high is None or (v < self.high if self.open_high else v <= self.high))
            for v in (value if isinstance(value, tuple) else (value,))
        )

    def __str__(self) -> str:
        low = None if self.low is None else f"{'>' if self.open_low else '>='} {_text(self.low)}"
        high = None if self.high is None else f"{'<' if self.open_high else '<='} {_text(self.high)}"
        return "must be " + " and ".join(part for part in (low, high) if part)


@dataclass(frozen=True)
class OneOf:
    """One of ``choices``."""

    choices: tuple[Any, ...]

    def allows(self, value: Any) -> bool:
        return value in self.choices

    def __str__(self) -> str:
        return "must be one of " + ", ".join(_text(c) for c in self.choices)


@dataclass(frozen=True)
class Count:
    """A tuple of ``low`` to ``high`` items (exactly ``low`` when ``high`` is None)."""

    low: int
    high: int | float | None = None

    def allows(self, value: Any) -> bool:
        return self.low <= len(value) <= (self.low if self.high is None else self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"must hold {self.low} values"
        return f"must hold at least {self.low} value{'s' if self.low > 1 else ''}"


POSITIVE = Range(low=0, open_low=True)
NON_NEGATIVE = Range(low=0)
AT_LEAST_1 = Range(low=1)
FRACTION = Range(low=0, high=1)
SOME = Count(1, math.inf)  # a non-empty tuple


def _text(value: Any) -> str:
    """A value as it is written in YAML / a ``key=value`` override."""
    if isinstance(value, tuple):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Checked:
    """Checks the rules in a config dataclass's annotations after construction; ``KEY`` is where the class sits in a
    Config (``solver``, ``model.backbone``, ...), for messages."""

    KEY: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for name, rules in _rules(type(self)).items():
            value = getattr(self, name)
            for rule in rules:
                if not rule.allows(value):
                    key = f"{self.KEY}.{name}" if self.KEY else name
                    raise UserError(f"{key}={_text(value)}: {rule}")


@functools.cache
def _rules(cls: type) -> dict[str, tuple[Any, ...]]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return {
        name: hint.__metadata__
        for name, hint in hints.items()
        if typing.get_origin(hint) is Annotated and name in {f.name for f in dataclasses.fields(cls)}
    }


def _iou_order(config: Any) -> None:
    """The background IoU threshold of a matcher may not exceed its foreground one."""
    if config.bg_iou_thresh > config.fg_iou_thresh:
        raise UserError(
            f"{config.KEY}.bg_iou_thresh={_text(config.bg_iou_thresh)}: must be <= "
            f"{config.KEY}.fg_iou_thresh={_text(config.fg_iou_thresh)}"
        )


# ---- the configs ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackboneConfig(_Checked):
    KEY: ClassVar[str] = "model.backbone"
    depth: Annotated[int, OneOf((18, 34, 50, 101))] = 50  # ResNet depth
    norm: Annotated[str, OneOf(("frozen_bn", "bn", "gn"))] = "frozen_bn"  # frozen_bn for fine-tuning; bn or gn
    frozen_bn_eps: Annotated[float, NON_NEGATIVE] = 1e-5  # torchvision's COCO weights need 0.0
    # stages without gradients when fine-tuning: 0 none, 1 the stem, 2 stem + res2 (torchvision's default), ...
    freeze_at: Annotated[int, Range(low=0, high=5)] = 2
    stem_width: Annotated[int, AT_LEAST_1] = 64  # channels after the stem; res2..res5 widths scale with it
    # ResNeXt (bottleneck ResNets only): the 3x3 convolution of each bottleneck in ``groups`` groups of
    # ``width_per_group`` channels at res2 (doubling per stage), 32 x 8 for X101-32x8d; 1 x 64 is a plain ResNet
    groups: Annotated[int, AT_LEAST_1] = 1
    width_per_group: Annotated[int, AT_LEAST_1] = 64
    # where the stride of each stage's first bottleneck sits: in its 3x3 convolution (torchvision, ResNeXt), or in
    # its first 1x1 (the MSRA ResNets that detectron2's R50/R101 models start from)
    stride_in_1x1: bool = False
    fpn_channels: Annotated[int, AT_LEAST_1] = 256
    fpn_norm: Annotated[str, OneOf(("none", "bn", "gn"))] = "none"  # after each FPN convolution (torchvision v2: bn)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.depth < 50:
            for name, plain in (("groups", 1), ("width_per_group", 64), ("stride_in_1x1", False)):
                if getattr(self, name) != plain:
                    raise UserError(f"{self.KEY}.{name}={_text(getattr(self, name))}: needs a bottleneck ResNet "
                                    f"({self.KEY}.depth 50 or 101), not depth {self.depth}")


@dataclass(frozen=True)
class RPNConfig(_Checked):
    KEY: ClassVar[str] = "model.rpn"
    anchor_sizes: Annotated[tuple[int, ...], Count(5), AT_LEAST_1] = (32, 64, 128, 256, 512)  # one per level P2-P6
    aspect_ratios: Annotated[tuple[float, ...], SOME, POSITIVE] = (0.5, 1.0, 2.0)
    round_anchors: bool = True  # base anchors rounded to whole pixels (torchvision); detectron2 keeps them exact
    head_convs: Annotated[int, AT_LEAST_1] = 1  # 3x3 conv + ReLU layers before the predictors (torchvision v2: 2)
    # torchvision derives each level's anchor stride as padded_image_size // feature_size, which is not the true
    # stride for P6 when the padded size is not a multiple of 64; its weights were trained that way.
    torchvision_anchor_strides: bool = False
    pre_nms_topk_train: Annotated[int, AT_LEAST_1] = 2000  # per level
    pre_nms_topk_test: Annotated[int, AT_LEAST_1] = 1000
    post_nms_topk_train: Annotated[int, AT_LEAST_1] = 2000  # per image
    post_nms_topk_test: Annotated[int, AT_LEAST_1] = 1000
    nms_thresh: Annotated[float, FRACTION] = 0.7
    min_box_size: Annotated[float, NON_NEGATIVE] = 1e-3
    fg_iou_thresh: Annotated[float, FRACTION] = 0.7
    bg_iou_thresh: Annotated[float, FRACTION] = 0.3
    batch_size_per_image: Annotated[int, AT_LEAST_1] = 256
    positive_fraction: Annotated[float, FRACTION] = 0.5
    box_loss_beta: Annotated[float, NON_NEGATIVE] = 1.0 / 9.0  # smooth L1; 0 makes it L1

    def __post_init__(self) -> None:
        super().__post_init__()
        _iou_order(self)


@dataclass(frozen=True)
class ROIHeadsConfig(_Checked):
    KEY: ClassVar[str] = "model.roi_heads"
    box_pool_size: Annotated[int, AT_LEAST_1] = 7
    mask_pool_size: Annotated[int, AT_LEAST_1] = 14
    sampling_ratio: Annotated[int, NON_NEGATIVE] = 2
    aligned: bool = True  # RoIAlign half-pixel correction; torchvision's weights use False
    # how a box chooses its FPN level, floor(4 + log2(sqrt(area) / 224)) up to an epsilon: "torchvision" adds 1e-6
    # to the level, "detectron2" 1e-8 to the ratio inside the log
    level_assignment: Annotated[str, OneOf(("torchvision", "detectron2"))] = "torchvision"
    box_head_convs: Annotated[int, NON_NEGATIVE] = 0  # 3x3 convs of the box head before its fcs (torchvision v2: 4)
    box_conv_dim: Annotated[int, AT_LEAST_1] = 256
    fc_dim: Annotated[int, AT_LEAST_1] = 1024
    num_fc: Annotated[int, AT_LEAST_1] = 2
    mask_conv_dim: Annotated[int, AT_LEAST_1] = 256
    num_mask_convs: Annotated[int, NON_NEGATIVE] = 4
    head_norm: Annotated[str, OneOf(("none", "bn", "gn"))] = "none"  # after each box- and mask-head conv (v2: bn)
    batch_size_per_image: Annotated[int, AT_LEAST_1] = 512
    positive_fraction: Annotated[float, FRACTION] = 0.25
    fg_iou_thresh: Annotated[float, FRACTION] = 0.5
    bg_iou_thresh: Annotated[float, FRACTION] = 0.5
    crowd_ioa_thresh: Annotated[float, FRACTION] = 0.7  # a background proposal this much inside a crowd region is ignored
    box_reg_weights: Annotated[tuple[float, float, float, float], POSITIVE] = (10.0, 10.0, 5.0, 5.0)
    box_loss_beta: Annotated[float, NON_NEGATIVE] = 1.0 / 9.0
    score_thresh: Annotated[float, FRACTION] = 0.05
    nms_thresh: Annotated[float, FRACTION] = 0.5
    detections_per_image: Annotated[int, AT_LEAST_1] = 100
    # detections narrower or lower than this (in the resized image) are dropped; empty boxes always are
    min_box_size: Annotated[float, NON_NEGATIVE] = 1e-2
    mask_threshold: Annotated[float, FRACTION] = 0.5
    # how a mask is put into the image (structures/masks.py): "torchvision" resizes the padded M x M map onto the
    # box snapped to whole pixels, mask where > threshold; "detectron2" samples it at the pixel centres, >= threshold
    mask_paste: Annotated[str, OneOf(("torchvision", "detectron2"))] = "torchvision"

    def __post_init__(self) -> None:
        super().__post_init__()
        _iou_order(self)


@dataclass(frozen=True)
class InputConfig(_Checked):
    KEY: ClassVar[str] = "model.input"
    min_size_train: Annotated[tuple[int, ...], SOME, AT_LEAST_1] = (800,)  # short side, drawn at random per image
    max_size_train: Annotated[int, AT_LEAST_1] = 1333
    min_size_test: Annotated[int, AT_LEAST_1] = 800
    max_size_test: Annotated[int, AT_LEAST_1] = 1333
    pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # RGB, images scaled to [0, 1]
    pixel_std: Annotated[tuple[float, float, float], POSITIVE] = (0.229, 0.224, 0.225)
    size_divisible: Annotated[int, AT_LEAST_1] = 32
    flip_prob: Annotated[float, FRACTION] = 0.5  # training
    # how images are resized, in training and inference alike (structures/resize.py): "antialias" (rounded sizes,
    # antialiased bilinear), "torchvision" (floored sizes, plain bilinear: its weights) or "detectron2" (its sizes,
    # PIL's bilinear on the uint8 image before normalising: its weights)
    resize: Annotated[str, OneOf(("antialias", "torchvision", "detectron2"))] = "antialias"


@dataclass(frozen=True)
class ModelConfig(_Checked):
    KEY: ClassVar[str] = "model"
    num_classes: Annotated[int, AT_LEAST_1] = 80  # K object classes; label 0 is background
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    rpn: RPNConfig = field(default_factory=RPNConfig)
    roi_heads: ROIHeadsConfig = field(default_factory=ROIHeadsConfig)
    input: InputConfig = field(default_factory=InputConfig)


@dataclass(frozen=True)
class SolverConfig(_Checked):
    KEY: ClassVar[str] = "solver"
    batch_size: Annotated[int, AT_LEAST_1] = 2  # images per iteration (per process)
    max_iter: Annotated[int, AT_LEAST_1] = 90000
    # for the total batch; scaled linearly with batch_size * world_size / 16 if lr_scaling
    base_lr: Annotated[float, NON_NEGATIVE] = 0.02
    lr_scaling: bool = False
    momentum: Annotated[float, Range(low=0, high=1, open_high=True)] = 0.9
    weight_decay: Annotated[float, NON_NEGATIVE] = 1e-4
    schedule: Annotated[str, OneOf(("step", "cosine"))] = "step"
    # step schedule: where lr *= gamma, as fractions of max_iter (<= 1) or iterations (> 1)
    steps: Annotated[tuple[float, ...], NON_NEGATIVE] = (0.667, 0.889)
    gamma: Annotated[float, POSITIVE] = 0.1
    warmup_iters: Annotated[int, NON_NEGATIVE] = 1000
    warmup_factor: Annotated[float, Range(low=0, high=1, open_low=True)] = 0.001
    clip_grad_norm: Annotated[float, NON_NEGATIVE] = 0.0  # 0 disables
    amp: Annotated[str, OneOf(("none", "bf16", "fp16"))] = "none"  # mixed precision, CUDA only
    num_workers: Annotated[int, NON_NEGATIVE] = 2
    seed: Annotated[int, NON_NEGATIVE] = 0
    log_period: Annotated[int, AT_LEAST_1] = 20
    eval_period: Annotated[int, NON_NEGATIVE] = 0  # 0: evaluate at the end only (when --val is given)
    checkpoint_period: Annotated[int, AT_LEAST_1] = 1000


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)


def _r50_fpn() -> Config:
    return Config()


def _r101_fpn() -> Config:
    return Config(model=ModelConfig(backbone=BackboneConfig(depth=101)))


def _r50_fpn_v2() -> Config:
    """torchvision's maskrcnn_resnet50_fpn_v2 architecture (Li et al. 2021, "Benchmarking Detection Transfer
    Learning with Vision Transformers"): BatchNorm after every FPN convolution, two 3x3 convolutions in the RPN head,
    a box head of four 3x3 conv + BN + ReLU layers and one 1024-wide fc, BN after each mask-head convolution. The
    backbone's norms are frozen here, as for fine-tuning (torchvision's BatchNorm2d in eval mode computes the same)."""
    return Config(
        model=ModelConfig(
            backbone=BackboneConfig(fpn_norm="bn"),
            rpn=RPNConfig(head_convs=2),
            roi_heads=ROIHeadsConfig(box_head_convs=4, box_conv_dim=256, num_fc=1, fc_dim=1024, head_norm="bn"),
        )
    )


def _small() -> Config:
    """Mask R-CNN sized for a 2-core CPU and small images (the demo on 128 px synthetic shapes)."""
    return Config(
        model=ModelConfig(
            num_classes=3,
            backbone=BackboneConfig(depth=18, norm="bn", freeze_at=0, stem_width=32, fpn_channels=64),
            rpn=RPNConfig(
                anchor_sizes=(16, 32, 64, 128, 256),
                pre_nms_topk_train=600,
                pre_nms_topk_test=300,
                post_nms_topk_train=300,
                post_nms_topk_test=100,
                batch_size_per_image=128,
            ),
            roi_heads=ROIHeadsConfig(
                fc_dim=256,
                mask_conv_dim=64,
                num_mask_convs=2,
                batch_size_per_image=64,
                detections_per_image=50,
            ),
            # Short sides of at most 128 keep every batch padded to 128 px (a 144 px image would pad all to 160).
            input=InputConfig(min_size_train=(96, 112, 128), max_size_train=256, min_size_test=128, max_size_test=256),
        ),
        solver=SolverConfig(
            batch_size=8,
            max_iter=1200,
            base_lr=0.04,
            schedule="cosine",
            warmup_iters=100,
            num_workers=1,
            log_period=20,
            checkpoint_period=250,
        ),
    )


# detectron2 feeds BGR pixels in 0-255 minus this mean (its ImageNet mean, BGR), with std 1; here in RGB order and
# on pixels scaled to [0, 1] (its weights' stem takes RGB: zoo/detectron2.py reverses their input channels)
DETECTRON2_PIXEL_MEAN = (123.675 / 255, 116.28 / 255, 103.53 / 255)
DETECTRON2_PIXEL_STD = (1 / 255, 1 / 255, 1 / 255)
# its ResNeXts (FAIR's C2 ImageNet models, mask_rcnn_X_101_32x8d_FPN_3x.yaml) were trained with the ImageNet std,
# PIXEL_STD [57.375, 57.120, 58.395] in BGR order
DETECTRON2_RESNEXT_PIXEL_STD = (58.395 / 255, 57.12 / 255, 57.375 / 255)


def detectron2_config(*, depth: int = 50, groups: int = 1, width_per_group: int = 64, num_classes: int = 80) -> Config:
    """detectron2's Mask R-CNN FPN (its configs/Base-RCNN-FPN.yaml and COCO-InstanceSegmentation 3x files): what
    its model-zoo weights need to give its detections. ResNets (groups 1) are MSRA's, with the stride in the first
    1x1 convolution, fed pixels minus the mean with std 1; its ResNeXts have it in the 3x3 and divide by the
    ImageNet std. Anchors exact and at offset 0 (torchvision's P6 strides
    not used), RPN top-k 2000/1000 per level and 1000/1000 per image (training/test) without a minimum proposal
    size; RoIAlign aligned with an adaptive sampling ratio and its level assignment; its resize and mask pasting."""
    return Config(
        model=ModelConfig(
            num_classes=num_classes,
            backbone=BackboneConfig(
                depth=depth,
                norm="frozen_bn",
                frozen_bn_eps=1e-5,
                freeze_at=2,
                groups=groups,
                width_per_group=width_per_group,
                stride_in_1x1=groups == 1,
            ),
            rpn=RPNConfig(
                round_anchors=False,
                torchvision_anchor_strides=False,
                pre_nms_topk_train=2000,
                pre_nms_topk_test=1000,
                post_nms_topk_train=1000,
                post_nms_topk_test=1000,
                min_box_size=0.0,
            ),
            roi_heads=ROIHeadsConfig(
                sampling_ratio=0,
                aligned=True,
                level_assignment="detectron2",
                box_reg_weights=(10.0, 10.0, 5.0, 5.0),
                min_box_size=0.0,
                mask_paste="detectron2",
            ),
            input=InputConfig(
                min_size_train=(640, 672, 704, 736, 768, 800),
                max_size_train=1333,
                min_size_test=800,
                max_size_test=1333,
                pixel_mean=DETECTRON2_PIXEL_MEAN,
                pixel_std=DETECTRON2_RESNEXT_PIXEL_STD if groups > 1 else DETECTRON2_PIXEL_STD,
                resize="detectron2",
            ),
        )
    )


PRESETS = {
    "r50_fpn": _r50_fpn,
    "r101_fpn": _r101_fpn,
    "r50_fpn_v2": _r50_fpn_v2,
    "small": _small,
    "d2_r50_fpn": lambda: detectron2_config(depth=50),
    "d2_r101_fpn": lambda: detectron2_config(depth=101),
    "d2_x101_32x8d_fpn": lambda: detectron2_config(depth=101, groups=32, width_per_group=8),
}


def preset(name: str) -> Config:
    if name not in PRESETS:
        raise UserError(f"unknown config preset {name!r}; choose one of {', '.join(sorted(PRESETS))} or a .yaml file")
    return PRESETS[name]()


# ---- dict <-> dataclass ---------------------------------------------------------------------------------------------


def to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass -> plain nested dict (tuples become lists), for YAML and checkpoints."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple):
            return [convert(v) for v in value]
        return value

    return convert(config)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check and convert one value to a field's annotated type (int, float, bool, str, tuple[...])."""
    origin = typing.get_origin(annotation)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            value = [value]
        args = typing.get_args(annotation)
        item_type = args[0]
        if len(args) > 1 and args[1] is not Ellipsis:
            if len(value) != len(args):
                raise UserError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, item_type, where) for v in value)
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported annotation {annotation}")
    if annotation is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise UserError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise UserError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise UserError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {annotation}")


def _merge(instance: Any, updates: dict[str, Any], where: str) -> Any:
    """Return ``instance`` (a dataclass) with fields replaced from a nested dict; unknown keys are errors."""
    if not isinstance(updates, dict):
        raise UserError(f"{where or 'config'}: expected a mapping, got {updates!r}")
    hints = typing.get_type_hints(type(instance))
    names = {f.name for f in dataclasses.fields(instance)}
    changes = {}
    for key, value in updates.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise UserError(f"unknown config key {path!r}; known keys here: {', '.join(sorted(names))}")
        current = getattr(instance, key)
        if dataclasses.is_dataclass(current):
            changes[key] = _merge(current, value, path)
        else:
            changes[key] = _coerce(value, hints[key], path)
    return dataclasses.replace(instance, **changes)


def from_dict(data: dict[str, Any], base: Config | None = None) -> Config:
    """Nested dict (as written by ``to_dict``) -> Config, starting from ``base`` (default: r50_fpn)."""
    return _merge(base or Config(), data, "")


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["solver.base_lr=0.01", "model.num_classes=3"]`` -> nested dict (values parsed as YAML scalars/lists)."""
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"bad override {item!r}: expected key=value, e.g. solver.base_lr=0.01")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise UserError(f"bad override {item!r}: {e}") from None
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


def replace_model(config: Config, **changes: Any) -> Config:
    """``config`` with fields of its ModelConfig replaced."""
    return dataclasses.replace(config, model=dataclasses.replace(config.model, **changes))


def replace_backbone(config: Config, **changes: Any) -> Config:
    """``config`` with fields of its BackboneConfig replaced."""
    return replace_model(config, backbone=dataclasses.replace(config.model.backbone, **changes))


def load_config(source: str | Path, overrides: list[str] | None = None) -> Config:
    """A preset name or a YAML file path, then ``key=value`` overrides -> Config."""
    source = str(source)
    if source in PRESETS:
        config = preset(source)
    else:
        data = _read_config_file(source)
        base = preset(data.pop("preset")) if "preset" in data else Config()
        config = from_dict(data, base)
    if overrides:
        config = from_dict(parse_overrides(overrides), config)
    return config


def given_keys(source: str | Path, overrides: list[str] | None = None) -> frozenset[str]:
    """The dotted keys that the YAML file ``source`` (not a preset) and ``overrides`` set themselves, e.g.
    ``{"solver.max_iter", "model.num_classes"}``: values a user chose, which the trainer must not silently change."""
    nested = [] if str(source) in PRESETS else [_read_config_file(str(source))]
    nested.append(parse_overrides(overrides or []))

    def walk(node: Any, prefix: str) -> Iterator[str]:
        for key, value in node.items():
            if key == "preset" and not prefix:
                continue
            if isinstance(value, dict):
                yield from walk(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}"

    return frozenset(key for data in nested for key in walk(data, ""))


def _read_config_file(source: str) -> dict[str, Any]:
    path = Path(source)
    if not path.is_file():
        raise UserError(f"config {source!r} is neither a preset ({', '.join(sorted(PRESETS))}) nor an existing file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"cannot parse config file {path}: {e}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping at the top level")
    return data


def dump_yaml(config: Config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
