"""The effect of each CPU inference lever, one at a time, each measured side by side (interleaved, median of runs).

    python benchmarks/levers.py                     # all levers, 5 runs each
    python benchmarks/levers.py --runs 3 --skip-compile

Inputs have the shapes of one 800 x 1216 image (a 2048 x 1365 photo at the default size) in torchvision's R50-FPN
with the parity test's randomised weights: the ResNet-50 on (1, 3, 800, 1216); 3x3 convolutions on P2
(1, 256, 200, 304) and on 100 mask RoIs (100, 256, 14, 14); RoIAlign of 1000 proposals over P2-P5; pasting 100 masks
into a 2048 x 1365 image; and, end to end, the model as built against ``prepare_for_inference``'s conversion.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def compare(title: str, variants: dict[str, Callable[[], object]], runs: int) -> None:
    """Time each variant ``runs`` times, interleaved, after one warm-up call each; print medians and ratios."""
    for fn in variants.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(runs):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    medians = {name: common.median(t) * 1000 for name, t in times.items()}
    first = next(iter(medians.values()))
    print(f"\n{title}")
    for name, ms in medians.items():
        print(f"  {name:<58} {ms:9.1f} ms   {first / ms:5.2f}x")


def folded_resnet(resnet, *, channels_last: bool):
    """The ResNet with each frozen BN folded into a plain Conv2d with bias (unfused ReLUs), optionally channels-last."""
    import torch
    from torch import nn

    from maskrcnn.model.fused import norm_scale_shift

    resnet = copy.deepcopy(resnet)
    pairs = [(resnet, "conv1", "bn1")]
    for module in resnet.modules():
        for i in (1, 2, 3):
            if hasattr(module, f"conv{i}") and hasattr(module, f"bn{i}") and module is not resnet:
                pairs.append((module, f"conv{i}", f"bn{i}"))
        if getattr(module, "downsample", None) is not None:
            pairs.append((module.downsample, "0", "1"))
    for parent, conv_name, norm_name in pairs:
        conv, norm = getattr(parent, conv_name), getattr(parent, norm_name)
        scale, shift = norm_scale_shift(norm)
        folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=True)
        with torch.no_grad():
            folded.weight.copy_(conv.weight * scale[:, None, None, None])
            folded.bias.copy_(shift)
        setattr(parent, conv_name, folded)
        setattr(parent, norm_name, nn.Identity())
    return resnet.to(memory_format=torch.channels_last) if channels_last else resnet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-compile", action="store_true", help="skip torch.compile (about a minute to compile)")
    args = parser.parse_args()

    import tempfile

    import torch
    import torch.nn.functional as F

    import maskrcnn
    from maskrcnn.checkpoint import load_checkpoint, load_state_into
    from maskrcnn.data.images import read_image
    from maskrcnn.model.build import build_model
    from maskrcnn.model.fused import FusedConv2d
    from maskrcnn.model.inference import prepare_for_inference
    from maskrcnn.structures.masks import paste_masks

    print(f"command: {common.command_line()}")
    print(f"machine: {common.machine()}")
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "tv.pth"
        torch.save(common.randomised_torchvision_state_dict(), weights)
        checkpoint = load_checkpoint(weights)
        predictor = maskrcnn.load(weights)
    model = build_model(checkpoint.config.model)
    load_state_into(model, checkpoint.state_dict, path=weights)
    model.eval()
    prepared = prepare_for_inference(model)
    torch.set_grad_enabled(False)

    # ---- the ResNet-50: norms folded, channels-last, ReLU and residual in the convolution kernel
    x = torch.randn(1, 3, 800, 1216)
    resnet = model.backbone.bottom_up
    folded, folded_cl = folded_resnet(resnet, channels_last=False), folded_resnet(resnet, channels_last=True)
    compare(
        "ResNet-50 bottom-up, (1, 3, 800, 1216)",
        {
            "as built (FrozenBatchNorm2d after each conv, NCHW)": lambda: resnet(x),
            "+ norms folded into the convolutions": lambda: folded(x),
            "+ channels-last": lambda: folded_cl(x.contiguous(memory_format=torch.channels_last)),
            "+ ReLU / residual add inside the oneDNN kernel (FusedResNet)": lambda: prepared.backbone.bottom_up(x),
        },
        args.runs,
    )

    # ---- 3x3 convolutions: oneDNN direct (channels-last) against NNPACK Winograd (NCHW)
    rois = torch.randn(100, 256, 14, 14)
    for title, conv, x in (
        ("RPN 3x3 conv + ReLU on P2 (1, 256, 200, 304)", model.rpn.head.conv, torch.randn(1, 256, 200, 304)),
        ("mask head 3x3 conv + ReLU on 100 RoIs (100, 256, 14, 14)", model.roi_heads.mask_head.convs[0], rois),
    ):
        direct, winograd = FusedConv2d(conv, relu=True), FusedConv2d(conv, relu=True, winograd=True)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        compare(
            title,
            {
                "eager conv2d + relu (NCHW)": lambda conv=conv, x=x: F.relu(conv(x)),
                "oneDNN, channels-last, fused ReLU": lambda direct=direct, x_cl=x_cl: direct(x_cl),
                "NNPACK Winograd F(6x6, 3x3), NCHW": lambda winograd=winograd, x=x: winograd(x),
            },
            args.runs,
        )

    # ---- FPN lateral 1x1 + top-down add, producing the NCHW map the Winograd output conv reads
    c2 = torch.randn(1, 256, 200, 304).contiguous(memory_format=torch.channels_last)
    top = torch.randn(1, 256, 100, 152)
    fpn = prepared.backbone.fpn
    compare(
        "FPN P2 lateral 1x1 conv + upsampled P3, as an NCHW map",
        {
            "oneDNN fused add (channels-last), then converted to NCHW": lambda: fpn.lateral_convs[0](
                c2, residual=F.interpolate(top, size=(200, 304)).contiguous(memory_format=torch.channels_last)
            ).contiguous(),
            "one GEMM writing NCHW, the add as GEMM's beta * C": lambda: fpn._lateral(0, c2, top),
        },
        args.runs,
    )

    # ---- RoIAlign of 1000 proposals over P2-P5
    image = read_image(common.DATA / common.DEFAULT_IMAGES[2])
    batch = model.preprocess([torch.from_numpy(image).permute(2, 0, 1)])
    features = model.backbone(batch.tensor)[:4]
    proposals, _ = model.rpn(model.backbone(batch.tensor), batch.image_sizes, tuple(batch.tensor.shape[-2:]))
    pooler = model.roi_heads.box_pooler
    features_cl = [f.contiguous(memory_format=torch.channels_last) for f in features]
    compare(
        f"box RoIAlign, {len(proposals[0])} proposals over P2-P5 (7 x 7, sampling ratio 2)",
        {
            "torchvision roi_align on NCHW maps": lambda: pooler(features, proposals),
            "channels-last gather (embedding_bag), maps already channels-last": lambda: pooler(features_cl, proposals),
            "  the same, including the channels-last copy of the maps": lambda: pooler(
                [f.contiguous(memory_format=torch.channels_last) for f in features], proposals
            ),
        },
        args.runs,
    )

    # ---- the mask predictor: all K+1 maps then a gather, against the detected class's map only
    head, fused_head = model.roi_heads.mask_head, prepared.roi_heads.mask_head
    labels = torch.randint(1, 91, (100,))
    compare(
        "mask head on 100 detections (deconv + 91-class predictor)",
        {
            "as built: deconv, 91 maps, gather": lambda: head(rois)[torch.arange(100), labels],
            "the detected class's map only": lambda: head.class_logits(rois, labels),
            "fused: Winograd convs, deconv as 1x1 conv, class map only": lambda: fused_head.class_logits(rois, labels),
        },
        args.runs,
    )

    # ---- pasting 100 masks into a 2048 x 1365 image
    probs = torch.rand(100, 28, 28)
    xy = torch.rand(100, 2) * torch.tensor([1700.0, 1100.0])
    boxes = torch.cat([xy, xy + torch.rand(100, 2) * 300 + 10], dim=1)

    compare(
        "paste 100 masks into 2048 x 1365",
        {
            "torch.zeros((100, 1365, 2048), bool) alone (the previous output)": lambda: torch.zeros(
                (100, 1365, 2048), dtype=torch.bool
            ),
            "paste_masks, all of it (calloc'd output: only box rows touched)": lambda: paste_masks(
                probs, boxes, (1365, 2048)
            ),
        },
        args.runs,
    )

    # ---- torch.compile of the backbone + FPN (inductor, frozen weights)
    if not args.skip_compile:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        compiled = torch.compile(model.backbone)
        start = time.perf_counter()
        compiled(batch.tensor)
        first = time.perf_counter() - start
        other = torch.randn(1, 3, 800, 1088)
        start = time.perf_counter()
        compiled(other)
        second = time.perf_counter() - start
        print(f"\ntorch.compile(backbone + FPN): first call {first:.1f} s, first call at another size {second:.1f} s")
        compare(
            "backbone + FPN, (1, 3, 800, 1216)",
            {
                "eager, as built": lambda: model.backbone(batch.tensor),
                "torch.compile (inductor, freezing)": lambda: compiled(batch.tensor),
                "prepare_for_inference": lambda: prepared.backbone(batch.tensor),
            },
            args.runs,
        )

    # ---- end to end, one 2048 x 1365 photo: the model as built against the Predictor's converted copy
    tensor = torch.from_numpy(image).permute(2, 0, 1)
    compare(
        "end to end, 2048 x 1365 photo (800 x 1200), every detection with its full-size mask",
        {
            "the model as built, torch.inference_mode": lambda: _infer(model, tensor),
            "prepare_for_inference (the Predictor's model)": lambda: _infer(prepared, tensor),
            "Predictor.predict_arrays (numpy out)": lambda: predictor.predict_arrays([image], score_threshold=0.0),
        },
        args.runs,
    )
    print(f"\nmachine after: {common.machine()}")


def _infer(model, tensor):
    import torch

    with torch.inference_mode():
        return model([tensor])


if __name__ == "__main__":
    main()
