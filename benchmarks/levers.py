"""The effect of each CPU inference lever, one at a time, each measured side by side (interleaved, median of runs).

    python benchmarks/levers.py                     # all levers, 5 runs each
    python benchmarks/levers.py --runs 3 --skip-compile --threads 1   # steadier on a busy machine

Inputs have the shapes of one 800 x 1216 image (a 2048 x 1365 photo at the default size) in torchvision's R50-FPN
with the parity test's randomised weights: the ResNet-50 on (1, 3, 800, 1216); 3x3 convolutions on P2 (1, 256, 200,
304) and on 100 mask RoIs (100, 256, 14, 14); the RPN's predictors on P2-P6; RoIAlign of 1000 proposals (sampling
ratio 2, and detectron2's adaptive one) and of 100 detections over P2-P5; the mask head's transposed convolution and
predictor on 100 RoIs; pasting 100 masks into a 2048 x 1365 image; the two resize rules on the photo; and, end to
end, the model as built against ``prepare_for_inference``'s conversion. Each leaf ``prepare_for_inference`` swaps in
(model/cpu_layers.py) is timed against the leaf it replaces; the alternatives it does not use are timed too, to show
why.
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
        print(f"  {name:<66} {ms:9.1f} ms   {first / ms:5.2f}x")


def onednn_fused_resnet(resnet):
    """A forward over a folded, channels-last ResNet-50 that runs each ReLU and also each residual addition inside
    its convolution's oneDNN kernel (the private ``torch.ops.mkldnn._convolution_pointwise``): the block-level fusion
    that a leaf swap cannot express (the addition is the block's), timed to show what it would add."""
    import torch

    pointwise = torch.ops.mkldnn._convolution_pointwise

    def conv(c, x, relu):
        return pointwise(x, c.weight, c.bias, c.padding, c.stride, c.dilation, c.groups,
                         "relu" if relu else "none", [], "")

    def forward(x):
        x = resnet.maxpool(conv(resnet.conv1, x, True))
        for layer in (resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4):
            for b in layer:
                identity = x if b.downsample is None else conv(b.downsample[0], x, False)
                out = conv(b.conv2, conv(b.conv1, x, True), True)
                c = b.conv3
                x = pointwise.binary(out, identity, c.weight, c.bias, c.padding, c.stride, c.dilation, c.groups,
                                     "add", 1.0, "relu", [], "")
        return x

    return forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-compile", action="store_true", help="skip torch.compile (about a minute to compile)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    args = parser.parse_args()

    import tempfile

    import torch
    import torch.nn.functional as F

    import maskrcnn
    from maskrcnn.checkpoint import load_checkpoint, load_state_into
    from maskrcnn.data.images import read_image
    from maskrcnn.model.build import build_model
    from maskrcnn.model.cpu_layers import GatherRoIAlign, PointwiseConvToNCHW, WinogradConv2d
    from maskrcnn.model.fold import fold_norms
    from maskrcnn.model.inference import prepare_for_inference
    from maskrcnn.model.mask_head import predict_class_maps
    from maskrcnn.model.poolers import RoIAlign
    from maskrcnn.structures.masks import paste_masks
    from maskrcnn.structures.resize import resize_image, resized_shape

    if args.threads:
        torch.set_num_threads(args.threads)
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

    # ---- the ResNet-50: norms folded, channels-last, (not used) ReLU and residual in the convolution kernel
    x = torch.randn(1, 3, 800, 1216)
    resnet = model.backbone.bottom_up
    folded = copy.deepcopy(resnet)
    fold_norms(folded)
    folded_cl = copy.deepcopy(folded).to(memory_format=torch.channels_last)
    fused = onednn_fused_resnet(folded_cl)
    compare(
        "ResNet-50 bottom-up, (1, 3, 800, 1216)",
        {
            "as built (FrozenBatchNorm2d after each conv, NCHW)": lambda: resnet(x),
            "+ norms folded into the convolutions (fold_norms)": lambda: folded(x),
            "+ channels-last": lambda: folded_cl(x),
            "+ ReLUs inside oneDNN's kernel (ConvReLU: prepare_for_inference)": lambda: prepared.backbone.bottom_up(x),
            "+ residual additions in the kernel too (not used)": lambda: fused(x),
        },
        args.runs,
    )

    # ---- 3x3 convolutions: eager NCHW, oneDNN channels-last, NNPACK Winograd (NCHW)
    rois = torch.randn(100, 256, 14, 14)
    for title, conv, x in (
        ("RPN 3x3 conv + ReLU on P2 (1, 256, 200, 304)", model.rpn.head.conv, torch.randn(1, 256, 200, 304)),
        ("mask head 3x3 conv + ReLU on 100 RoIs (100, 256, 14, 14)", model.roi_heads.mask_head.convs[0], rois),
    ):
        conv_cl = copy.deepcopy(conv).to(memory_format=torch.channels_last)
        winograd = WinogradConv2d(conv)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        compare(
            title,
            {
                "eager conv2d + relu (NCHW), as built": lambda conv=conv, x=x: F.relu(conv(x)),
                "oneDNN, channels-last": lambda conv_cl=conv_cl, x_cl=x_cl: F.relu(conv_cl(x_cl)),
                "NNPACK Winograd F(6x6, 3x3), NCHW (WinogradConv2d)": lambda winograd=winograd, x=x: F.relu(winograd(x)),
            },
            args.runs,
        )

    # ---- the RPN's two 1x1 predictors, separately or as one convolution, on P2-P6
    head = model.rpn.head
    levels = [torch.randn(1, 256, 200 // 2**i, 304 // 2**i) for i in range(5)]
    merged_weight = torch.cat([head.objectness_logits.weight, head.anchor_deltas.weight])
    merged_bias = torch.cat([head.objectness_logits.bias, head.anchor_deltas.bias])
    compare(
        "RPN objectness + deltas 1x1 convolutions on P2-P6",
        {
            "two convolutions": lambda: [(head.objectness_logits(x), head.anchor_deltas(x)) for x in levels],
            "one convolution to 5A channels, split (RPNHead)": lambda: [
                F.conv2d(x, merged_weight, merged_bias).split([3, 12], dim=1) for x in levels
            ],
        },
        args.runs,
    )

    # ---- FPN lateral 1x1 convolution, from a channels-last C2 to the NCHW map the Winograd output conv reads
    c2 = torch.randn(1, 256, 200, 304).contiguous(memory_format=torch.channels_last)
    lateral = model.backbone.fpn.lateral_convs[0]
    lateral_cl = copy.deepcopy(lateral).to(memory_format=torch.channels_last)
    pointwise = PointwiseConvToNCHW(lateral)
    compare(
        "FPN P2 lateral 1x1 conv, channels-last C2 -> NCHW map",
        {
            "oneDNN conv (channels-last out), then converted to NCHW": lambda: lateral_cl(c2).contiguous(),
            "one matrix product writing NCHW (PointwiseConvToNCHW)": lambda: pointwise(c2),
        },
        args.runs,
    )

    # ---- RoIAlign of 1000 proposals and of 100 detections over P2-P5
    image = read_image(common.DATA / common.DEFAULT_IMAGES[2])
    batch = model.preprocess([torch.from_numpy(image).permute(2, 0, 1)])
    features = model.backbone(batch.tensor)
    proposals, _ = model.rpn(features, batch.image_sizes, tuple(batch.tensor.shape[-2:]))
    features = features[:4]
    heads, fast_heads = model.roi_heads, prepared.roi_heads
    features_cl = fast_heads.box_pooler.layout(features)
    detections = [proposals[0][:100]]
    compare(
        f"box RoIAlign, {len(proposals[0])} proposals over P2-P5 (7 x 7, sampling ratio 2)",
        {
            "torchvision roi_align on NCHW maps, as built": lambda: heads.box_pooler(features, proposals),
            "gather (GatherRoIAlign), maps already channels-last": lambda: fast_heads.box_pooler(features_cl, proposals),
            "  the same, including the channels-last copy of the maps": lambda: fast_heads.box_pooler(
                fast_heads.box_pooler.layout(features), proposals
            ),
        },
        args.runs,
    )
    compare(
        "mask RoIAlign, 100 detections over P2-P5 (14 x 14), the maps laid out once for both poolers",
        {
            "torchvision roi_align on NCHW maps, as built": lambda: heads.mask_pooler(features, detections),
            "gather (GatherRoIAlign), sharing the box pooler's channels-last maps": lambda: fast_heads.mask_pooler(
                features_cl, detections
            ),
        },
        args.runs,
    )
    assert isinstance(fast_heads.box_pooler.align, GatherRoIAlign)
    # detectron2's RoIAlign: aligned, ceil(box side / 7) points per bin and axis, box by box
    adaptive = copy.deepcopy(heads.box_pooler)
    adaptive.align = RoIAlign(output_size=7, sampling_ratio=0, aligned=True)
    adaptive_fast = copy.deepcopy(adaptive)
    adaptive_fast.align = GatherRoIAlign(adaptive.align)
    compare(
        f"box RoIAlign, {len(proposals[0])} proposals over P2-P5, adaptive sampling (sampling ratio 0, aligned)",
        {
            "torchvision roi_align on NCHW maps": lambda: adaptive(features, proposals),
            "gather in groups of one point grid, including the channels-last copy of the maps": lambda: adaptive_fast(
                adaptive_fast.layout(features), proposals
            ),
        },
        args.runs,
    )

    # ---- the mask head after its convolutions: transposed conv and the class-only predictor
    mask_head = model.roi_heads.mask_head
    deconv_cl = copy.deepcopy(mask_head.deconv).to(memory_format=torch.channels_last)
    as_1x1 = torch.nn.Conv2d(256, 1024, 1).to(memory_format=torch.channels_last)
    with torch.no_grad():
        as_1x1.weight.copy_(mask_head.deconv.weight.permute(2, 3, 1, 0).reshape(1024, 256, 1, 1))
    maps = rois  # (100, 256, 14, 14), NCHW as the Winograd convolutions write them
    compare(
        "mask head 2x2 stride-2 transposed conv on 100 RoIs (100, 256, 14, 14)",
        {
            "eager, NCHW, as built": lambda: mask_head.deconv(maps),
            "channels-last (prepare_for_inference)": lambda: deconv_cl(maps),
            "as a 1x1 conv to 4D channels, before rearranging (not used)": lambda: as_1x1(maps),
        },
        args.runs,
    )
    labels = torch.randint(1, 91, (100,))
    upsampled, upsampled_cl = mask_head.deconv(maps), deconv_cl(maps)
    compare(
        "mask predictor on 100 RoIs (100, 256, 28, 28), 91 classes",
        {
            "all 91 maps, then each RoI's own": lambda: mask_head.predictor(upsampled)[torch.arange(100), labels],
            "each RoI's own class map only (MaskHead.class_logits)": lambda: predict_class_maps(
                upsampled, mask_head.predictor, labels
            ),
            "  the same on the channels-last maps": lambda: predict_class_maps(upsampled_cl, mask_head.predictor, labels),
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

    # ---- the two resize rules on the photo (normalised float image, as the model resizes it)
    photo = (torch.from_numpy(image).permute(2, 0, 1).float() / 255.0 - model.pixel_mean) / model.pixel_std
    sizes = {rule: resized_shape(*photo.shape[-2:], short_size=800, max_size=1333, rule=rule)
             for rule in ("torchvision", "antialias")}
    compare(
        f"resize the {image.shape[1]} x {image.shape[0]} photo to 800 px (float)",
        {
            "torchvision rule: plain bilinear": lambda: resize_image(photo, sizes["torchvision"], rule="torchvision"),
            "antialias rule: antialiased bilinear": lambda: resize_image(photo, sizes["antialias"], rule="antialias"),
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
