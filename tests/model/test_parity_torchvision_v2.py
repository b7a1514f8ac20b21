"""torchvision's maskrcnn_resnet50_fpn_v2 is the oracle: its state dict (fixed random weights, BatchNorm statistics
and confident class logits as for v1), saved to a file, loads into our model through `maskrcnn.load` as the
r50_fpn_v2 architecture and gives the same detections and masks on the v1 parity test's real images, through the
Predictor's fast path (BatchNorms of the FPN and heads folded, Winograd RPN-head convolutions)."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection import maskrcnn_resnet50_fpn_v2

import maskrcnn
from maskrcnn.checkpoint import load_checkpoint
from maskrcnn.config import preset
from maskrcnn.model.cpu_layers import WinogradConv2d
from maskrcnn.model.fold import FoldedNorm
from torchvision_oracle import assert_parity, compare_with_torchvision, parity_image_paths, randomised_torchvision_model


@pytest.fixture(scope="module")
def torchvision_v2_file(tmp_path_factory):
    model = randomised_torchvision_model(maskrcnn_resnet50_fpn_v2, bn_eps=1e-5)
    path = tmp_path_factory.mktemp("tv2") / "maskrcnn_resnet50_fpn_v2.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_v2_file_loads_as_the_r50_fpn_v2_architecture(torchvision_v2_file):
    _, path = torchvision_v2_file
    loaded = load_checkpoint(path)
    assert loaded.source == "torchvision" and len(loaded.class_names) == 90 and loaded.class_names[0] == "person"
    model = loaded.config.model
    v2 = preset("r50_fpn_v2").model
    assert (model.rpn.head_convs, model.roi_heads.box_head_convs, model.roi_heads.num_fc) == (2, 4, 1)
    assert model.backbone.fpn_norm == model.roi_heads.head_norm == "bn"
    assert model.backbone.frozen_bn_eps == 1e-5 and model.roi_heads.aligned is False
    assert model.rpn.torchvision_anchor_strides and model.input.resize == "torchvision"
    assert model.roi_heads.fc_dim == v2.roi_heads.fc_dim == 1024 and model.num_classes == 90
    assert "rpn.head.extra_convs.0.weight" in loaded.state_dict
    assert "roi_heads.box_head.norms.3.running_var" in loaded.state_dict


def test_v2_checkpoint_gives_the_same_detections_and_masks(torchvision_v2_file, shared_data):
    reference, path = torchvision_v2_file
    ours = maskrcnn.load(path, device="cpu")
    # the fast path: every BatchNorm of the FPN and heads folded into its convolution, the RPN head's two
    # convolutions Winograd ones
    for norms in (ours.model.backbone.fpn.lateral_norms, ours.model.backbone.fpn.output_norms,
                  ours.model.roi_heads.box_head.norms, ours.model.roi_heads.mask_head.norms):
        assert all(isinstance(norm, FoldedNorm) for norm in norms) and len(norms) == 4
    head = ours.model.rpn.head
    assert [type(conv) for conv in (head.conv, *head.extra_convs)] == [WinogradConv2d] * 2
    assert_parity(compare_with_torchvision(reference, ours, parity_image_paths(shared_data)))
