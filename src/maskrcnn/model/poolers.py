"""RoIAlign (He et al. 2017) over FPN levels: each box is pooled from the level that suits its size.

Shapes: N images, R boxes over the batch, C channels, S output size.

Level of a box of area a (FPN paper, eq. 1): k = floor(4 + log2(sqrt(a) / 224)), clamped to the pooled levels (P2-P5),
so a 224 x 224 box reads P4, a 112 x 112 box P3. An epsilon keeps boxes of exactly those sizes there despite rounding,
where each library puts it (``level_assignment``): torchvision adds 1e-6 to the level, detectron2 1e-8 to the ratio
inside the log (floor(4 + log2(sqrt(a) / 224 + 1e-8))); the two differ for boxes within ~1e-6 of a level boundary.
Sampling is bilinear at ``sampling_ratio`` x ``sampling_ratio`` points per bin, with no quantisation of box
coordinates; ``aligned=True`` shifts boxes by half a pixel so that pixel centres sit at integer + 0.5 (detectron2's ROIAlignV2), ``aligned=False`` is the original (and torchvision's) form.

Each level is pooled by the ``align`` leaf: torchvision's kernel (``RoIAlign``) as built; for fast CPU inference
``prepare_for_inference`` puts the same function computed as a weighted gather over channels-last maps in its place
(``model/cpu_layers.py``), and ``layout`` gives the maps the memory layout the leaf reads fastest.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align

from maskrcnn.structures.boxes import box_area


def boxes_to_rois(boxes: list[Tensor]) -> Tensor:
    """N x Tensor[R_i, 4] -> Tensor[R, 5] (batch index, x1, y1, x2, y2), the layout roi_align takes."""
    rois = torch.cat(boxes)
    batch_idx = torch.cat([torch.full_like(b[:, :1], i) for i, b in enumerate(boxes)])  # (R, 1)
    return torch.cat([batch_idx, rois], dim=1)


LEVEL_ASSIGNMENTS = ("torchvision", "detectron2")


def assign_levels(
    boxes: Tensor,
    *,
    min_level: int,
    max_level: int,
    canonical_size: float = 224.0,
    canonical_level: int = 4,
    rule: str = "torchvision",
) -> Tensor:
    """boxes: Tensor[R, 4] -> Tensor[R] int64 level index relative to ``min_level`` (0 for P2 when min_level is 2);
    rule: where the epsilon goes, "torchvision" or "detectron2" (the module docstring)."""
    sizes = torch.sqrt(box_area(boxes))
    if rule == "detectron2":
        levels = torch.floor(canonical_level + torch.log2(sizes / canonical_size + 1e-8))
    elif rule == "torchvision":
        levels = torch.floor(canonical_level + torch.log2(sizes / canonical_size) + 1e-6)
    else:
        raise ValueError(f"unknown level assignment {rule!r}; expected one of {', '.join(LEVEL_ASSIGNMENTS)}")
    return (levels.clamp(min=min_level, max=max_level) - min_level).to(torch.int64)


class RoIAlign(nn.Module):
    """One feature level: torchvision's RoIAlign kernel (any device, any memory layout)."""

    def __init__(self, *, output_size: int, sampling_ratio: int, aligned: bool):
        super().__init__()
        self.output_size = (output_size, output_size)
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def layout(self, features: list[Tensor]) -> list[Tensor]:
        """The maps as this kernel reads them best: as they are."""
        return features

    def forward(self, feature: Tensor, rois: Tensor, spatial_scale: float) -> Tensor:
        """feature: (N, C, H, W); rois: (R, 5) (batch index, x1, y1, x2, y2) in image pixels -> (R, C, S, S)."""
        return roi_align(
            feature,
            rois.to(feature.dtype),
            self.output_size,
            spatial_scale=spatial_scale,
            sampling_ratio=self.sampling_ratio,
            aligned=self.aligned,
        )


class MultiLevelRoIAlign(nn.Module):
    def __init__(
        self,
        *,
        output_size: int,
        strides: tuple[int, ...],
        sampling_ratio: int,
        aligned: bool,
        level_assignment: str = "torchvision",
    ):
        """strides: one per pooled feature map, e.g. (4, 8, 16, 32) for P2-P5; sampling_ratio: points per bin and
        axis, 0 for ceil(box side / output size) per box (adaptive, detectron2's default); level_assignment: the
        rule of ``assign_levels``."""
        super().__init__()
        if level_assignment not in LEVEL_ASSIGNMENTS:
            raise ValueError(f"unknown level assignment {level_assignment!r}")
        self.align = RoIAlign(output_size=output_size, sampling_ratio=sampling_ratio, aligned=aligned)
        self.output_size = (output_size, output_size)
        self.scales = [1.0 / s for s in strides]
        self.min_level = int(math.log2(strides[0]))
        self.max_level = int(math.log2(strides[-1]))
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.level_assignment = level_assignment

    def layout(self, features: list[Tensor]) -> list[Tensor]:
        """The maps in the memory layout the ``align`` leaf reads fastest: made once when two poolers share them."""
        return self.align.layout(features)

    def forward(self, features: list[Tensor], boxes: list[Tensor]) -> Tensor:
        """features: L x (N, C, H_l, W_l); boxes: N x Tensor[R_i, 4] -> Tensor[R, C, S, S] in the order of ``boxes``."""
        rois = boxes_to_rois(boxes)
        if len(features) == 1:
            return self.align(features[0], rois, self.scales[0])
        levels = assign_levels(
            rois[:, 1:], min_level=self.min_level, max_level=self.max_level, rule=self.level_assignment
        )
        first = features[0]
        # in the maps' memory layout (channels-last after a channels-last ``layout``), for the convolutions after
        channels_last = first.is_contiguous(memory_format=torch.channels_last) and not first.is_contiguous()
        out = torch.empty(  # every RoI has a level: each row is written below
            (rois.shape[0], first.shape[1], *self.output_size),
            dtype=first.dtype,
            device=first.device,
            memory_format=torch.channels_last if channels_last else torch.contiguous_format,
        )
        for level, (feature, scale) in enumerate(zip(features, self.scales)):
            idx = torch.nonzero(levels == level).squeeze(1)  # may be empty: every kernel takes 0 RoIs
            out[idx] = self.align(feature, rois[idx], scale).to(out.dtype)
        return out
