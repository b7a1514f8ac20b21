"""A tiny Mask R-CNN and a two-image toy dataset for fast model tests."""

from __future__ import annotations

import dataclasses

import torch

from maskrcnn.config import preset
from maskrcnn.model.build import build_model
from maskrcnn.model.mask_rcnn import MaskRCNN


def tiny_model(num_classes: int = 3) -> MaskRCNN:
    config = preset("small").model
    config = dataclasses.replace(config, num_classes=num_classes)
    return build_model(config)


def toy_image(height: int, width: int, boxes: list[list[int]], labels: list[int]) -> tuple[torch.Tensor, dict]:
    """A flat background with one coloured rectangle per instance (colour depends on the label)."""
    image = torch.full((3, height, width), 40, dtype=torch.uint8)
    masks = torch.zeros(len(boxes), height, width, dtype=torch.uint8)
    for i, ((x1, y1, x2, y2), label) in enumerate(zip(boxes, labels)):
        masks[i, y1:y2, x1:x2] = 1
        image[:, y1:y2, x1:x2] = torch.tensor([200, 50 + 60 * label, 30], dtype=torch.uint8)[:, None, None]
    target = {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "masks": masks,
    }
    return image, target


def two_toy_images() -> list[tuple[torch.Tensor, dict]]:
    return [
        toy_image(128, 128, [[10, 10, 50, 60], [70, 64, 120, 110]], [1, 2]),
        toy_image(128, 160, [[30, 20, 90, 100]], [3]),
    ]
