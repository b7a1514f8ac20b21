"""Norm folding finds every convolution + norm pair in a model's own forwards, whatever the model, and changes
nothing the model computes: torchvision's v2 Mask R-CNN building blocks (BatchNorm after the convolutions of its
ResNet, FPN, box head and mask head) as modules written elsewhere, at a tiny width."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet18
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads
from torchvision.ops import FeaturePyramidNetwork

from maskrcnn.model.fold import FoldedNorm, conv_norm_pairs, fold_norms


def randomise_norms(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)


def v2_blocks() -> nn.ModuleDict:
    """torchvision's maskrcnn_resnet50_fpn_v2 parts (as it builds them, BatchNorm everywhere), 16 channels wide."""
    norm = nn.BatchNorm2d
    return nn.ModuleDict({
        "body": resnet18(weights=None, norm_layer=norm),
        "fpn": FeaturePyramidNetwork([64, 128], 16, norm_layer=norm),
        "box_head": FastRCNNConvFCHead((16, 7, 7), [16, 16, 16, 16], [32], norm_layer=norm),
        "mask_head": MaskRCNNHeads(16, [16, 16, 16, 16], 1, norm_layer=norm),
    }).eval()


def test_every_norm_of_torchvisions_v2_blocks_folds_and_they_compute_the_same():
    torch.manual_seed(0)
    model = v2_blocks()
    randomise_norms(model)
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    pairs = dict(conv_norm_pairs(model))
    assert len(pairs) == norms == 20 + 4 + 4 + 4
    assert pairs["mask_head.0.0"] == "mask_head.0.1"  # Conv2dNormActivation: conv, BN, ReLU in a Sequential
    assert pairs["fpn.inner_blocks.1.0"] == "fpn.inner_blocks.1.1"  # the FPN's forward loops over a dict: its parts
    assert pairs["body.layer1.0.conv2"] == "body.layer1.0.bn2"  # siblings in a ResNet block

    g = torch.Generator().manual_seed(0)
    c4 = torch.rand(2, 64, 12, 16, generator=g)
    c5 = torch.rand(2, 128, 6, 8, generator=g)
    inputs = {
        "body": (torch.rand(1, 3, 64, 96, generator=g),),
        "fpn": ({"c4": c4, "c5": c5},),
        "box_head": (torch.randn(6, 16, 7, 7, generator=g),),
        "mask_head": (torch.randn(6, 16, 14, 14, generator=g),),
    }
    with torch.no_grad():
        expected = {name: model[name](*args) for name, args in inputs.items()}
        assert fold_norms(model) == norms
        got = {name: model[name](*args) for name, args in inputs.items()}
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    for name in inputs:
        e, o = expected[name], got[name]
        e, o = (list(e.values()), list(o.values())) if isinstance(e, dict) else ([e], [o])
        for a, b in zip(e, o):
            assert (a - b).abs().max() <= 1e-5 * a.abs().max()


class SharedNorm(nn.Module):
    """One norm applied to two convolutions' outputs, and a convolution whose output is also read unnormalised:
    neither may fold (folding would change what the other reader sees)."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1)
        self.norm = nn.BatchNorm2d(4).eval()
        self.norm_c = nn.BatchNorm2d(4).eval()

    def forward(self, x):
        c = self.c(x)
        return self.norm(self.a(x)) + self.norm(self.b(x)) + self.norm_c(c) + c


def test_a_norm_is_folded_only_where_it_alone_reads_the_convolution_and_reads_nothing_else():
    model = SharedNorm()
    assert conv_norm_pairs(model) == []
    assert fold_norms(model) == 0 and not any(isinstance(m, FoldedNorm) for m in model.modules())
    assert fold_norms(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4).train())) == 0  # batch statistics
    assert fold_norms(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4).eval())) == 1
