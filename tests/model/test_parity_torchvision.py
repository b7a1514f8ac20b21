"""torchvision's maskrcnn_resnet50_fpn is the oracle: its state dict, saved to a file, loads into our model through
`maskrcnn.load` and gives the same detections and masks on real images."""

from __future__ import annotations

import re

import pytest
import torch

import maskrcnn
from maskrcnn.checkpoint import load_checkpoint
from torchvision_oracle import assert_parity, compare_with_torchvision, parity_image_paths, randomised_torchvision_model


@pytest.fixture(scope="module")
def torchvision_file(tmp_path_factory):
    model = randomised_torchvision_model()
    path = tmp_path_factory.mktemp("tv") / "maskrcnn_resnet50_fpn.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_torchvision_checkpoint_gives_the_same_detections_and_masks(torchvision_file, shared_data):
    reference, path = torchvision_file
    ours = maskrcnn.load(path, device="cpu")
    assert ours.class_names[0] == "person" and len(ours.class_names) == 90
    assert_parity(compare_with_torchvision(reference, ours, parity_image_paths(shared_data)))


def test_legacy_key_layout_of_the_published_coco_file_loads_identically(torchvision_file, tmp_path):
    """The 2019 COCO file names FPN, RPN-conv and mask-head weights the old way (inner_blocks.0.weight,
    rpn.head.conv.weight, mask_head.mask_fcn1.weight) and has no num_batches_tracked."""
    reference, path = torchvision_file
    legacy = {}
    for key, value in reference.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        key = re.sub(r"fpn\.(inner|layer)_blocks\.(\d)\.0\.", r"fpn.\1_blocks.\2.", key)
        key = key.replace("rpn.head.conv.0.0.", "rpn.head.conv.")
        key = re.sub(r"mask_head\.(\d)\.0\.", lambda m: f"mask_head.mask_fcn{int(m.group(1)) + 1}.", key)
        legacy[key] = value
    assert "roi_heads.mask_head.mask_fcn4.weight" in legacy
    legacy_path = tmp_path / "maskrcnn_resnet50_fpn_coco-legacy.pth"
    torch.save(legacy, legacy_path)
    current, old = load_checkpoint(path), load_checkpoint(legacy_path)
    assert current.source == old.source == "torchvision"
    assert current.state_dict.keys() == old.state_dict.keys()
    assert all(torch.equal(current.state_dict[k], old.state_dict[k]) for k in current.state_dict)
    config = old.config.model
    assert config.backbone.frozen_bn_eps == 0.0 and config.roi_heads.aligned is False
