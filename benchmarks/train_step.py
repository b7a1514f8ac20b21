"""Seconds per training iteration, ours against torchvision's maskrcnn_resnet50_fpn: same config, weights, images and
batch, interleaved in one run.

    python benchmarks/train_step.py                 # batch 2, car-parts images at 800 x 800, warm-up + 5 rounds
    python benchmarks/train_step.py --runs 7 --batch-size 1

Config (fine-tuning, the common case): ResNet-50-FPN with frozen BatchNorm (eps 1e-5) and the stem and res2 frozen —
torchvision's ``resnet50(norm_layer=FrozenBatchNorm2d)`` with ``trainable_layers=3``, ours
``preset("r50_fpn")`` with ``model.backbone.freeze_at=2``, ``model.roi_heads.aligned=false`` and
``model.rpn.torchvision_anchor_strides=true`` (torchvision's RoIAlign and anchor rule). Both start from the same
weights: torchvision's randomly initialised model, loaded into ours through the torchvision key conversion.
Sampling, losses and heads are the defaults of both (RPN 256 anchors / image, 2000 proposals; 512 RoIs / image).

Images: the first car-parts training images, resized by our data pipeline to 800 x 800 (short side 800), so that
torchvision's in-model resize is a no-op scale of 1 and ours (which takes pipeline-resized images) sees the same
pixels. An iteration is forward, backward and an SGD step (lr 0.001, momentum 0.9, weight decay 1e-4); each round
runs one iteration of each model on the same batch, the order alternating from round to round.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def load_batch(num_images: int):
    """The first ``num_images`` car-parts images at 800 x 800 with their targets (boxes, labels 1..K, masks)."""
    from maskrcnn.data.coco import CocoDataset
    from maskrcnn.data.transforms import ResizeShortestEdge

    dataset = CocoDataset(common.DATA / "car-parts/train/annotations.json", transform=ResizeShortestEdge((800,), 1333))
    samples = [dataset[i] for i in range(num_images)]
    images = [image for image, _ in samples]
    targets = [{k: t[k] for k in ("boxes", "labels", "masks")} for _, t in samples]
    return images, targets, len(dataset.class_names)


def build_models(num_classes: int):
    """(ours, torchvision) with identical initial weights, in training mode."""
    import torch
    from torchvision.models import resnet50
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.models.detection.mask_rcnn import MaskRCNN as TorchvisionMaskRCNN
    from torchvision.ops.misc import FrozenBatchNorm2d

    from maskrcnn.checkpoint import load_state_into, torchvision_to_ours
    from maskrcnn.config import from_dict, parse_overrides, preset
    from maskrcnn.model.build import build_model

    torch.manual_seed(0)
    backbone = _resnet_fpn_extractor(resnet50(weights=None, norm_layer=FrozenBatchNorm2d), trainable_layers=3)
    reference = TorchvisionMaskRCNN(backbone, num_classes=num_classes + 1).train()
    config = from_dict(
        parse_overrides(
            [
                f"model.num_classes={num_classes}",
                "model.backbone.freeze_at=2",
                "model.roi_heads.aligned=false",
                "model.rpn.torchvision_anchor_strides=true",
            ]
        ),
        preset("r50_fpn"),
    )
    ours = build_model(config.model)
    load_state_into(ours, torchvision_to_ours(reference.state_dict()), path="torchvision's initial weights")
    return ours.train(), reference


def train_step(model, optimizer, images, targets) -> float:
    losses = model(images, targets)
    loss = sum(losses.values())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=2, help="images per iteration (default 2)")
    parser.add_argument("--runs", type=int, default=5, help="timed rounds after one warm-up round (default 5)")
    args = parser.parse_args()

    import torch

    print(f"command: {common.command_line()}")
    print(f"machine: {common.machine()}")
    images, targets, num_classes = load_batch(args.batch_size)
    print(f"batch: {len(images)} car-parts images at {images[0].shape[2]}x{images[0].shape[1]}, "
          f"{sum(len(t['labels']) for t in targets)} instances, {num_classes} classes")
    ours, reference = build_models(num_classes)
    inputs = {
        "ours": images,  # uint8, normalised inside
        "torchvision": [im.float() / 255.0 for im in images],  # floats in [0, 1], normalised inside
    }
    models = {"ours": ours, "torchvision": reference}
    trainable = {name: sum(p.numel() for p in m.parameters() if p.requires_grad) for name, m in models.items()}
    print("trainable parameters: " + ", ".join(f"{n} {c:,}" for n, c in trainable.items()))
    optimizers = {
        name: torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.001, momentum=0.9, weight_decay=1e-4)
        for name, m in models.items()
    }

    times: dict[str, list[float]] = {name: [] for name in models}
    order = list(models)
    for round_index in range(args.runs + 1):
        line = []
        for name in order:
            start = time.perf_counter()
            loss = train_step(models[name], optimizers[name], inputs[name], targets)
            elapsed = time.perf_counter() - start
            line.append(f"{name} {elapsed:.2f} s (loss {loss:.3f})")
            if round_index > 0:
                times[name].append(elapsed)
        order.reverse()
        print(("warm-up: " if round_index == 0 else f"round {round_index}: ") + "  ".join(line)
              + f"  (load {common.load()})", flush=True)

    print(f"machine after: {common.machine()}")
    print()
    print("| model | s / iteration | images / s |")
    print("|---|---:|---:|")
    medians = {name: common.median(t) for name, t in times.items()}
    for name, seconds in medians.items():
        print(f"| {name} | {seconds:.2f} | {len(images) / seconds:.3f} |")
    print()
    print(f"torchvision / ours time per iteration: {medians['torchvision'] / medians['ours']:.2f} "
          f"(> 1: ours is faster; median of {args.runs} rounds)")


if __name__ == "__main__":
    main()
