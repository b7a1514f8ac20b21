"""The reference that the parity tests, the export tests and the benchmarks compare against: torchvision's
maskrcnn_resnet50_fpn (v1 and v2) with fixed random weights that behave like a trained file's, and the parity rule
that matches two sets of detections (the detectron2 parity test uses it too)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torchvision.ops import box_iou

from maskrcnn.structures.masks import paste_grid


def randomised_torchvision_model(builder: Callable[..., torch.nn.Module] | None = None, *, bn_eps: float = 0.0
                                 ) -> torch.nn.Module:
    """torchvision's R50-FPN Mask R-CNN (``builder``: ``maskrcnn_resnet50_fpn``, the default, or
    ``maskrcnn_resnet50_fpn_v2``) with fixed random weights: non-trivial BatchNorm statistics used with ``bn_eps``
    (0 as in v1's published COCO file, whose frozen BN has eps 0; v2's BatchNorm2d keep 1e-5), and class logits
    scaled up so that detections are confident (scores ~0.9)."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    torch.manual_seed(0)
    model = (builder or maskrcnn_resnet50_fpn)(weights=None, weights_backbone=None).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.eps = bn_eps
                m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) * 4 + 1)
        model.roi_heads.box_predictor.cls_score.weight.mul_(120.0)
    return model


@dataclass
class Detections:
    """boxes (D, 4) xyxy, labels (D,), scores (D,), masks (D, H, W) bool: numpy arrays, like maskrcnn's Prediction."""

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    masks: np.ndarray

    @classmethod
    def from_torchvision(cls, output: dict[str, torch.Tensor]) -> Detections:
        """One image's output of torchvision's Mask R-CNN (masks (D, 1, H, W) probabilities, thresholded at 0.5)."""
        return cls(
            boxes=output["boxes"].numpy(),
            labels=output["labels"].numpy(),
            scores=output["scores"].numpy(),
            masks=(output["masks"][:, 0] > 0.5).numpy(),
        )


class Match(NamedTuple):
    """matched of total expected detections; mask_ious: the mask IoU of each matched pair whose boxes snap to the
    same pixel grid for pasting; snapped_apart: how many matched pairs do not (their masks are not compared)."""

    matched: int
    total: int
    mask_ious: list[float]
    snapped_apart: int


def match_detections(expected, got, *, mask_size: int | None = 28) -> Match:
    """The parity rule: an expected detection is matched by one of ``got`` with the same label, box IoU > 0.99 or
    every coordinate within 0.5 px (small boxes), and score within 1e-3 (the best-overlapping if several).
    ``expected``, ``got``: Detections or Predictions. Masks of a matched pair are compared when both boxes snap to
    the same paste grid (``maskrcnn.structures.masks.paste_grid``, ``mask_size`` M); mask_size None: always (a pasting rule without a grid,
    such as detectron2's).
    """
    boxes_e, boxes_g = torch.from_numpy(expected.boxes), torch.from_numpy(got.boxes)
    iou = box_iou(boxes_e, boxes_g)  # (E, G)
    close_box = (iou > 0.99) | ((boxes_e[:, None, :] - boxes_g[None, :, :]).abs() <= 0.5).all(dim=2)
    same_label = torch.from_numpy(expected.labels)[:, None] == torch.from_numpy(got.labels)[None, :]
    close_score = (torch.from_numpy(expected.scores)[:, None] - torch.from_numpy(got.scores)[None, :]).abs() < 1e-3
    candidates = close_box & same_label & close_score
    gridded = mask_size is not None
    grid_e, grid_g = (paste_grid(boxes_e, mask_size), paste_grid(boxes_g, mask_size)) if gridded else (None, None)
    matched, snapped_apart, mask_ious = 0, 0, []
    for e in range(len(expected.scores)):
        js = torch.nonzero(candidates[e]).squeeze(1)
        if len(js) == 0:
            continue
        matched += 1
        j = int(js[iou[e, js].argmax()])
        if gridded and not torch.equal(grid_e[e], grid_g[j]):
            snapped_apart += 1
            continue
        a, b = expected.masks[e], got.masks[j]
        union = (a | b).sum()
        mask_ious.append(float((a & b).sum() / union) if union else 1.0)
    return Match(matched, len(expected.scores), mask_ious, snapped_apart)


def parity_image_paths(data: Path) -> list[Path]:
    """The 3 real images the torchvision parity tests run on (``data``: the shared development data)."""
    return [
        data / "car-parts/train/JPEGImages/train1.jpg",  # 512 x 512
        data / "coco128-seg/images/train2017/000000000009.jpg",  # 640 x 480: P6 stride quirk applies
        sorted((data / "balloon/val").glob("*.jpg"))[0],  # large photo, downscaled
    ]


def compare_with_torchvision(reference: torch.nn.Module, predictor, image_paths: list[Path]) -> Match:
    """Run torchvision's ``reference`` (eval mode) and our ``predictor`` (a ``maskrcnn.Predictor``, its fast path)
    on each image; the parity rule's counts summed over the images. Each image must give the oracle more than 20
    detections, for the comparison to mean anything."""
    from maskrcnn.data.images import read_image

    total = Match(0, 0, [], 0)
    for image_path in image_paths:
        image = read_image(image_path)
        with torch.no_grad():
            expected = reference([torch.from_numpy(image).permute(2, 0, 1).float() / 255.0])[0]
        got = predictor.predict(image, score_threshold=0.0)[0]
        assert len(expected["scores"]) > 20, f"the oracle gives {len(expected['scores'])} detections on {image_path}"
        assert got.masks.shape[1:] == image.shape[:2]
        # matching is one way (each expected detection finds one of ours): ours must not add detections either
        assert len(got) <= len(expected["scores"]) * 1.03, f"{len(got)} detections against {len(expected['scores'])}"
        match = match_detections(Detections.from_torchvision(expected), got)
        total = Match(*(a + b for a, b in zip(total, match)))
    return total


def assert_parity(match: Match) -> None:
    """The torchvision parity thresholds: >= 97% matched, at most 1% of pairs snapped to another paste grid,
    worst compared mask IoU > 0.98."""
    print(f"\nPARITY matched {match.matched}/{match.total}, worst mask IoU {min(match.mask_ious):.4f} "
          f"({match.snapped_apart} pairs pasted one pixel apart, not compared)")
    assert match.matched / match.total >= 0.97, f"{match.matched}/{match.total} detections matched"
    assert match.snapped_apart <= 0.01 * match.matched, (
        f"{match.snapped_apart} of {match.matched} matched boxes snap to another paste grid")
    assert min(match.mask_ious) > 0.98, f"worst mask IoU {min(match.mask_ious):.3f}"
