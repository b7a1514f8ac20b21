"""The inference-time conversion (model/inference.py: folded norms, fast CPU leaves) and the kernels it relies on:
same outputs as the model it came from, the model itself untouched, and no way to train the converted copy by
mistake."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou, roi_align

from maskrcnn.config import preset
from maskrcnn.model.build import build_model
from maskrcnn.model.cpu_layers import GatherRoIAlign, WinogradConv2d, winograd_available
from maskrcnn.model.fold import FoldedNorm, fold_norms, norm_scale_shift
from maskrcnn.model.inference import prepare_for_inference
from maskrcnn.model.roi_align import roi_align_channels_last
from maskrcnn.structures.masks import paste_masks


def small_model(norm: str, *, seed: int = 0, **roi_heads) -> torch.nn.Module:
    """The small preset with the given norm (and ``roi_heads`` config fields), random weights, non-trivial norm
    statistics, confident classes."""
    config = preset("small").model
    config = dataclasses.replace(
        config,
        backbone=dataclasses.replace(config.backbone, norm=norm),
        roi_heads=dataclasses.replace(config.roi_heads, **roi_heads),
    )
    torch.manual_seed(seed)
    model = build_model(config)
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "running_var"):
                n = m.running_var.numel()
                m.running_mean.copy_(torch.randn(n) * 0.1)
                m.running_var.copy_(torch.rand(n) * 2 + 0.5)
                m.weight.copy_(torch.rand(n) + 0.5)
                m.bias.copy_(torch.randn(n) * 0.1)
        model.roi_heads.box_predictor.cls_score.weight.mul_(30.0)
        model.roi_heads.mask_head.predictor.weight.mul_(300.0)
    return model.eval()


@pytest.mark.parametrize("norm", ["frozen_bn", "bn", "gn"])
def test_prepared_model_gives_the_same_detections_and_masks(norm):
    model = small_model(norm)
    prepared = prepare_for_inference(model)
    folded = [m for m in prepared.backbone.bottom_up.modules() if isinstance(m, FoldedNorm)]
    assert len(folded) == (0 if norm == "gn" else 20)  # ResNet-18: stem, 16 block convs, 3 shortcuts
    assert_same_outputs(model, prepared)


def test_poolers_with_adaptive_sampling_are_converted_too():
    """detectron2's RoIAlign (aligned, ceil(box side / S) points per bin) runs as the channels-last gather."""
    model = small_model("frozen_bn", sampling_ratio=0, aligned=True)
    prepared = prepare_for_inference(model)
    heads = prepared.roi_heads
    assert isinstance(heads.box_pooler.align, GatherRoIAlign) and isinstance(heads.mask_pooler.align, GatherRoIAlign)
    assert heads.box_pooler.sampling_ratio == 0
    assert_same_outputs(model, prepared)


def assert_same_outputs(model: torch.nn.Module, prepared: torch.nn.Module) -> None:
    """The converted model's detections and masks on two random images are the model's."""
    images = [(torch.rand(3, h, w, generator=torch.Generator().manual_seed(h)) * 255).to(torch.uint8)
              for h, w in ((120, 160), (97, 211))]
    with torch.inference_mode():
        expected, got = model(images), prepared(images)
    for e, g in zip(expected, got):
        assert len(e["scores"]) > 10
        assert len(g["scores"]) == len(e["scores"])
        assert torch.equal(g["labels"], e["labels"])
        assert (g["scores"] - e["scores"]).abs().max() < 1e-4
        assert box_iou(g["boxes"], e["boxes"]).diagonal().min() > 0.999
        inter = (g["masks"] & e["masks"]).flatten(1).sum(1)
        union = (g["masks"] | e["masks"]).flatten(1).sum(1)
        assert union.sum() > 0
        mask_iou = torch.where(union > 0, inter / union.clamp(min=1), 1.0)  # both empty: the same mask
        assert mask_iou.min() > 0.95


def test_the_original_model_is_untouched_and_still_trains():
    model = small_model("bn").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prepared = prepare_for_inference(model)
    assert model.training and not prepared.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.roi_heads.parameters())
    assert not any(p.requires_grad for p in prepared.parameters())
    with pytest.raises(RuntimeError, match="inference-only"):
        prepared.train()


def test_conversion_leaves_the_global_random_state_alone():
    """Training evaluates through a Predictor (a converted copy) between steps; exact resume needs the global RNG,
    which draws the RPN and RoI samples, to be where it would be without the evaluation."""
    model = small_model("bn")
    state = torch.get_rng_state()
    prepare_for_inference(model)
    assert torch.equal(torch.get_rng_state(), state)


class ConvNormBlock(torch.nn.Module):
    """relu(norm(conv(x)) + residual), the shape of a ResNet block's last convolution."""

    def __init__(self, norm: torch.nn.Module):
        super().__init__()
        self.conv = torch.nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.norm = norm

    def forward(self, x, residual):
        return F.relu(self.norm(self.conv(x)) + residual)


def test_folded_convolution_equals_conv_then_norm_then_relu():
    torch.manual_seed(0)
    norm = torch.nn.BatchNorm2d(16).eval()
    with torch.no_grad():
        norm.running_mean.normal_()
        norm.running_var.uniform_(0.5, 2.0)
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_()
    block = ConvNormBlock(norm)
    x = torch.randn(2, 8, 9, 13)
    residual = torch.randn(2, 16, 9, 13)
    with torch.no_grad():
        expected = block(x, residual)
        assert fold_norms(block) == 1 and isinstance(block.norm, FoldedNorm)
        got = block(x.contiguous(memory_format=torch.channels_last), residual.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="cannot fold"):
        norm_scale_shift(torch.nn.GroupNorm(4, 16))
    assert fold_norms(ConvNormBlock(torch.nn.GroupNorm(4, 16))) == 0


@pytest.mark.skipif(not winograd_available(), reason="this torch build has no NNPACK")
def test_winograd_convolution_is_close_to_the_direct_one():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1)
    x = torch.randn(3, 64, 21, 34)
    winograd = WinogradConv2d(conv)
    assert winograd.available
    with torch.no_grad():
        expected = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=1)
        got = winograd(x)
    # Winograd F(6x6, 3x3) in float32: errors around 1e-5 of the output scale
    assert (got.double() - expected).abs().max() < 1e-4 * expected.abs().max()


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("output_size", [7, 14])
@pytest.mark.parametrize("sampling_ratio", [2, 0])  # 0: adaptive, ceil(box size / S) points per bin, per box
def test_channels_last_roi_align_equals_torchvision(aligned, output_size, sampling_ratio):
    torch.manual_seed(0)
    features = torch.randn(2, 16, 25, 38)
    xy = torch.rand(60, 2) * torch.tensor([160.0, 110.0]) - 10  # some boxes partly outside the map
    wh = torch.rand(60, 2) * 80 + 0.1  # some smaller than one feature cell
    wh[:4] = torch.tensor([[0.0, 5.0], [5.0, 0.0], [0.0, 0.0], [150.0, 3.0]])  # empty, and one very wide box
    rois = torch.cat([torch.randint(0, 2, (60, 1)).float(), xy, xy + wh], dim=1)
    expected = roi_align(features, rois, (output_size, output_size), 0.25, sampling_ratio, aligned)
    got = roi_align_channels_last(
        features.contiguous(memory_format=torch.channels_last), rois, output_size=output_size, spatial_scale=0.25,
        sampling_ratio=sampling_ratio, aligned=aligned,
    )
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    if sampling_ratio == 0:  # the boxes really use several point grids, the wide one more points across than down
        grids = {(int((h * 0.25 / output_size).ceil()), int((w * 0.25 / output_size).ceil())) for w, h in wh}
        assert len(grids) >= 4 and any(gx > gy + 1 for gy, gx in grids)
    assert roi_align_channels_last(features, rois[:0], output_size=7, spatial_scale=0.25,
                                   sampling_ratio=sampling_ratio, aligned=aligned).shape == (0, 16, 7, 7)


def test_score_threshold_only_drops_detections():
    model = small_model("bn")
    image = [(torch.rand(3, 128, 150, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)]
    with torch.inference_mode():
        everything = model(image)[0]
        confident = model(image, score_threshold=0.8)[0]
    keep = everything["scores"] >= 0.8
    assert 0 < keep.sum() < len(keep)
    for key in ("boxes", "scores", "labels", "masks"):
        assert torch.equal(confident[key], everything[key][keep]), key


def test_pasting_writes_only_inside_boxes_and_matches_a_per_mask_reference():
    torch.manual_seed(0)
    probs = torch.rand(5, 28, 28)
    boxes = torch.tensor([[10.0, 5.0, 60.0, 40.0], [-20.0, -10.0, 30.5, 22.2], [90.0, 70.0, 130.0, 99.0],
                          [0.0, 0.0, 0.4, 0.3], [50.0, 50.0, 50.0, 50.0]])
    masks = paste_masks(probs, boxes, (100, 120))
    assert masks.shape == (5, 100, 120) and masks.dtype == torch.bool
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        # outside the box grown by (M + 2) / M and one pixel, nothing is set
        cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2 * 30 / 28 + 1, (y2 - y1) / 2 * 30 / 28 + 1
        ys, xs = np.nonzero(masks[i].numpy())
        if len(xs):
            assert xs.min() >= cx - hw - 1 and xs.max() <= cx + hw and ys.min() >= cy - hh - 1 and ys.max() <= cy + hh
    # the first box, computed the straightforward way
    x1, y1, x2, y2 = 10 + 25 - 25 * 30 / 28, 5 + 17.5 - 17.5 * 30 / 28, 35 + 25 * 30 / 28, 22.5 + 17.5 * 30 / 28
    x1, y1, x2, y2 = int(x1), int(y1), int(x2), int(y2)
    resized = F.interpolate(F.pad(probs[0], (1, 1, 1, 1))[None, None], size=(y2 - y1 + 1, x2 - x1 + 1),
                            mode="bilinear", align_corners=False)[0, 0]
    reference = torch.zeros(100, 120, dtype=torch.bool)
    reference[y1 : y2 + 1, x1 : x2 + 1] = resized > 0.5
    assert torch.equal(masks[0], reference)
