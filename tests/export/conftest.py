"""Small Mask R-CNNs whose detections are confident and whose masks are decisive, saved as checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from maskrcnn.checkpoint import save_checkpoint
from maskrcnn.config import Config, from_dict, parse_overrides, preset
from maskrcnn.data.images import read_image
from maskrcnn.model.build import build_model

# The torchvision conventions (unaligned RoIAlign, anchor strides from the padded size, frozen BN), which the
# published COCO weights use, on the small preset.
TORCHVISION_STYLE = [
    "model.roi_heads.aligned=false",
    "model.rpn.torchvision_anchor_strides=true",
    "model.backbone.norm=frozen_bn",
]


def make_checkpoint(path: Path, overrides: list[str]) -> Path:
    """A randomly initialised small model whose class logits and mask logits are scaled up: about 50 detections
    per image with scores 0.6-0.99, and masks whose probabilities are mostly far from the 0.5 threshold."""
    config: Config = from_dict(parse_overrides(overrides), preset("small")) if overrides else preset("small")
    torch.manual_seed(0)
    model = build_model(config.model).eval()
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.weight.mul_(30.0)
        model.roi_heads.mask_head.predictor.weight.mul_(300.0)
    save_checkpoint(path, model=model, config=config, class_names=["square", "circle", "triangle"],
                    category_ids=[1, 2, 5])
    return path


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("export") / "small.pt", [])


@pytest.fixture(scope="session")
def torchvision_style_checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("export") / "small_tv.pt", TORCHVISION_STYLE)


@pytest.fixture(scope="session")
def real_images(shared_data) -> list[np.ndarray]:
    """Three real images of different sizes and aspect ratios."""
    return [
        read_image(shared_data / "car-parts/train/JPEGImages/train1.jpg"),  # 512 x 512
        read_image(shared_data / "coco128-seg/images/train2017/000000000009.jpg"),  # 640 x 480
        read_image(sorted((shared_data / "balloon/val").glob("*.jpg"))[3]),  # 1024 x 681
    ]
