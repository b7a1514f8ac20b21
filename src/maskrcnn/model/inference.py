"""The inference-time conversion of a Mask R-CNN: the same model, with some leaves replaced by inference-only ones.

``prepare_for_inference(model)`` returns a converted copy (the model itself is left as it was, still trainable).
Every parent forward (``MaskRCNN``, the backbone, FPN, RPN, RoI heads) runs as built; only leaves change:

- every norm that can be folded (frozen BN, BN in eval mode) is folded into the convolution before it and becomes
  an identity, wherever the pair sits (``model/fold.py``); GroupNorm stays;

and on the CPU (``model/cpu_layers.py``):

- the ResNet's convolutions and maps are channels-last (N, H, W, C in memory), the layout oneDNN convolves without
  reordering, and every convolution whose output only a ReLU reads runs with that ReLU in its oneDNN kernel;
- the FPN's lateral 1x1 convolutions read those channels-last maps and write NCHW maps, for the Winograd 3x3
  convolutions of the FPN outputs and the RPN head, all of its convolutions (large maps, where Winograd beats
  oneDNN); norms after FPN convolutions (torchvision's v2 model) are folded first;
- the box head's convolutions (v2), folded, run with their ReLUs in one oneDNN kernel;
- both poolers pool with a weighted gather over channels-last maps, made once for both (``MultiLevelRoIAlign.layout``),
  into channels-last RoI features;
- the mask head's convolutions and transposed convolution are channels-last (oneDNN), on those RoI features.

The RPN head's merged predictor and the mask head's class-only predictor are the model's own forward, not swaps.
Outputs equal the model's up to float rounding (folding, Winograd and channels-last change the order of additions).
The copy is inference-only: its swapped leaves refuse ``train()`` and its state dict has other keys, so save the
original. On other devices only the norms are folded.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from maskrcnn.model.cpu_layers import ConvReLU, GatherRoIAlign, PointwiseConvToNCHW, ReLUInConv, WinogradConv2d
from maskrcnn.model.fold import FoldedNorm, fold_norms, replace_module, sole_readers
from maskrcnn.model.mask_rcnn import MaskRCNN


def prepare_for_inference(model: MaskRCNN, *, inplace: bool = False) -> MaskRCNN:
    """A converted copy of ``model`` for fast inference (see the module docstring), in eval mode, without gradients.

    Call it after loading weights; ``model`` itself is not modified, unless ``inplace``: then it is converted and
    returned (no copy of the weights is made; the model is inference-only afterwards).
    """
    prepared = (model if inplace else copy.deepcopy(model)).eval().requires_grad_(False)
    readers = sole_readers(prepared)  # which leaf alone reads which, in the modules' forwards
    fold_norms(prepared, readers)
    if prepared.pixel_mean.device.type == "cpu":
        _use_cpu_layers(prepared, readers)
    return prepared.eval()


def _use_cpu_layers(model: MaskRCNN, readers: dict[str, str]) -> None:
    backbone, heads = model.backbone, model.roi_heads
    backbone.bottom_up.to(memory_format=torch.channels_last)
    for conv_path, reader in readers.items():  # conv [-> folded norm] -> ReLU: one oneDNN kernel
        if isinstance(model.get_submodule(reader), FoldedNorm):
            reader = readers.get(reader)
        conv = model.get_submodule(conv_path)
        if reader is not None and type(conv) is nn.Conv2d and isinstance(model.get_submodule(reader), nn.ReLU):
            replace_module(model, conv_path, ConvReLU(conv))
            replace_module(model, reader, ReLUInConv())
    fpn = backbone.fpn
    fpn.lateral_convs = nn.ModuleList(PointwiseConvToNCHW(conv) for conv in fpn.lateral_convs)
    fpn.output_convs = nn.ModuleList(WinogradConv2d(conv) for conv in fpn.output_convs)
    # after folding, every FPN convolution is a plain one with a bias, its norm (v2) an identity
    model.rpn.head.conv = WinogradConv2d(model.rpn.head.conv)
    model.rpn.head.extra_convs = nn.ModuleList(WinogradConv2d(conv) for conv in model.rpn.head.extra_convs)
    heads.mask_head.to(memory_format=torch.channels_last)
    for pooler in (heads.box_pooler, heads.mask_pooler):
        pooler.align = GatherRoIAlign(pooler.align)
