"""Training and evaluation transforms, applied jointly to an image and its instances.

Shapes: H, W image size (H0, W0 before any transform); G instances; C crowd regions.

A transform is a callable ``(image, target, rng) -> (image, target)``:

- ``image``: ndarray[H, W, 3] uint8 RGB.
- ``rng``: ``np.random.Generator``; every random choice is drawn from it, so the output is a pure function of the
  input and the generator's seed.
- ``target``: a dict; a transform changes the keys below when they are present and passes every other key through:

  - ``"masks"``: ``LazyMasks``, the G instance masks kept symbolic (see below).
  - ``"boxes"``, ``"crowd_boxes"``: ndarray[N, 4] float32 (x1, y1, x2, y2), absolute pixels of the current image.

How masks travel: ``LazyMasks`` keeps each instance's COCO geometry as read from the json (polygons in source
pixels, or an RLE at the source size) together with the size it must be drawn at and whether it is mirrored.
Resizes and flips only update that size and flag, which costs nothing; ``finish_target`` draws every mask once, at
the final size: polygon coordinates are scaled by (W / W0, H / H0) and rasterised at (H, W), an RLE is decoded at
(H0, W0) and sampled at the output pixel centres; a mirrored mask is then reversed along x, the very operation the
flip applied to the image, so image and mask stay aligned to the pixel whatever order resizes and flips come in.
``finish_target`` then derives each box from its mask (the tightest box around the set pixels, so box and mask
agree by construction) and drops instances whose mask came out empty.

Coordinates are continuous: pixel (i, j) covers [j, j + 1) x [i, i + 1), so a resize by s maps x to s * x and a
flip of an image W wide maps x to W - x (boxes: x1' = W - x2, x2' = W - x1).

>>> resize = ResizeShortestEdge((800,), 1333)
>>> image, target = resize(np.zeros((480, 640, 3), np.uint8), {}, np.random.default_rng(0))
>>> image.shape
(800, 1067, 3)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils

from maskrcnn.structures.resize import RULES as RESIZE_RULES
from maskrcnn.structures.resize import resize_image, resized_shape

# Per-instance arrays (ndarray[G, ...]) that ``finish_target`` keeps in step with the masks.
INSTANCE_KEYS = ("labels", "has_mask")

Transform = Callable[[np.ndarray, dict, np.random.Generator], tuple[np.ndarray, dict]]


class LazyMasks:
    """G instance masks as COCO geometry plus a pending output size and horizontal flip.

    ``segmentations[g]`` is either a list of polygons, each ndarray[2P] float64 ``[x1, y1, x2, y2, ...]`` in pixels
    of the source image (H0, W0), P >= 3; or a compressed RLE ``{"size": [H0, W0], "counts": bytes}``; or None for
    an instance without a mask (a box-only instance), drawn as an empty mask.
    """

    def __init__(
        self,
        segmentations: list[list[np.ndarray] | dict[str, Any]],
        *,
        source_size: tuple[int, int],
        size: tuple[int, int] | None = None,
        flipped: bool = False,
    ) -> None:
        self.segmentations = segmentations
        self.source_size = source_size  # (H0, W0)
        self.size = source_size if size is None else size  # (H, W) the masks will be drawn at
        self.flipped = flipped

    def __len__(self) -> int:
        return len(self.segmentations)

    def resized(self, height: int, width: int) -> LazyMasks:
        return LazyMasks(self.segmentations, source_size=self.source_size, size=(height, width), flipped=self.flipped)

    def hflipped(self) -> LazyMasks:
        return LazyMasks(self.segmentations, source_size=self.source_size, size=self.size, flipped=not self.flipped)

    def select(self, keep: np.ndarray) -> LazyMasks:
        """The instances where ``keep`` (ndarray[G] bool) is set."""
        chosen = [s for s, k in zip(self.segmentations, keep, strict=True) if k]
        return LazyMasks(chosen, source_size=self.source_size, size=self.size, flipped=self.flipped)

    def rasterize(self) -> np.ndarray:
        """Draw the masks at ``size`` -> ndarray[G, H, W] bool."""
        height, width = self.size
        if not self.segmentations:
            return np.zeros((0, height, width), dtype=bool)
        h0, w0 = self.source_size
        masks = np.empty((len(self.segmentations), height, width), dtype=bool)
        polygon_rles, polygon_slots = [], []
        xy_scale = np.array([width / w0, height / h0])
        for g, segmentation in enumerate(self.segmentations):
            if segmentation is None:
                masks[g] = False
            elif isinstance(segmentation, dict):
                masks[g] = _sample_rle(segmentation, height, width)
            else:
                scaled = [(p.reshape(-1, 2) * xy_scale).ravel() for p in segmentation]  # (P, 2) scaled back to (2P,)
                polygon_rles.append(mask_utils.merge(mask_utils.frPyObjects(scaled, height, width)))
                polygon_slots.append(g)
        if polygon_rles:
            decoded = mask_utils.decode(polygon_rles)  # (H, W, G') Fortran order
            masks[polygon_slots] = decoded.transpose(2, 0, 1).astype(bool)
        if self.flipped:
            masks = masks[:, :, ::-1]
        return np.ascontiguousarray(masks)


def _sample_rle(rle: dict[str, Any], height: int, width: int) -> np.ndarray:
    """Decode an RLE and sample it at the centres of a (height, width) grid -> ndarray[H, W] bool."""
    full = mask_utils.decode(rle).astype(bool)
    h0, w0 = full.shape
    if (h0, w0) == (height, width):
        return full
    rows = np.minimum(((np.arange(height) + 0.5) * (h0 / height)).astype(np.int64), h0 - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * (w0 / width)).astype(np.int64), w0 - 1)
    return full[rows[:, None], cols[None, :]]


def _scale_boxes(boxes: np.ndarray, sx: float, sy: float) -> np.ndarray:
    return (boxes * np.array([sx, sy, sx, sy], dtype=np.float32)).astype(np.float32)


def _flip_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    flipped = boxes.copy()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return flipped


class ResizeShortestEdge:
    """Resize so the short side is one of ``min_sizes`` (drawn with ``rng`` when there are several) and the long
    side is at most ``max_size``, by the resize ``rule`` the model also uses at inference (``structures/resize.py``):
    the image resampled in uint8, masks symbolically, boxes scaled exactly.

    Training: ``ResizeShortestEdge((640, 672, 704, 736, 768, 800), 1333)`` (short-side jitter);
    evaluation: ``ResizeShortestEdge((800,), 1333)``.
    """

    def __init__(self, min_sizes: Sequence[int], max_size: int, *, rule: str = "antialias") -> None:
        if not min_sizes or min(min_sizes) < 1 or max_size < 1:
            raise ValueError(f"sizes must be positive, got min_sizes={min_sizes}, max_size={max_size}")
        if rule not in RESIZE_RULES:
            raise ValueError(f"unknown resize rule {rule!r}; expected one of {', '.join(RESIZE_RULES)}")
        self.min_sizes = tuple(int(s) for s in min_sizes)
        self.max_size = int(max_size)
        self.rule = rule

    def __call__(self, image: np.ndarray, target: dict, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        height, width = image.shape[:2]
        if len(self.min_sizes) == 1:
            short = self.min_sizes[0]
        else:
            short = self.min_sizes[int(rng.integers(len(self.min_sizes)))]
        new_h, new_w = resized_shape(height, width, short_size=short, max_size=self.max_size, rule=self.rule)
        if (new_h, new_w) == (height, width):
            return image, target
        # (H, W, 3) -> (3, H, W) -> (3, h, w) -> (h, w, 3), uint8 throughout
        resized = resize_image(torch.from_numpy(image).permute(2, 0, 1), (new_h, new_w), rule=self.rule)
        image = np.ascontiguousarray(resized.permute(1, 2, 0).numpy())
        target = dict(target)
        sx, sy = new_w / width, new_h / height
        for key in ("boxes", "crowd_boxes"):
            if key in target:
                target[key] = _scale_boxes(target[key], sx, sy)
        if "masks" in target:
            target["masks"] = target["masks"].resized(new_h, new_w)
        return image, target

    def __repr__(self) -> str:
        return f"ResizeShortestEdge(min_sizes={self.min_sizes}, max_size={self.max_size}, rule={self.rule!r})"


class RandomHorizontalFlip:
    """Mirror the image and its instances left-right with probability ``prob`` (one ``rng.random()`` per call)."""

    def __init__(self, prob: float = 0.5) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        self.prob = prob

    def __call__(self, image: np.ndarray, target: dict, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        if not rng.random() < self.prob:
            return image, target
        width = image.shape[1]
        image = np.ascontiguousarray(image[:, ::-1])
        target = dict(target)
        for key in ("boxes", "crowd_boxes"):
            if key in target:
                target[key] = _flip_boxes(target[key], width)
        if "masks" in target:
            target["masks"] = target["masks"].hflipped()
        return image, target

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(prob={self.prob})"


class Compose:
    """Apply transforms in order, all drawing from the same ``rng``."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: np.ndarray, target: dict, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        for transform in self.transforms:
            image, target = transform(image, target, rng)
        return image, target

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """ndarray[G, H, W] bool -> ndarray[G, 4] float32 (x1, y1, x2, y2) covering whole pixels; empty masks give 0s.

    A single set pixel at (x=3, y=5) gives (3, 5, 4, 6).
    """
    if len(masks) == 0:
        return np.zeros((0, 4), dtype=np.float32)
    rows = masks.any(axis=2)  # (G, H)
    cols = masks.any(axis=1)  # (G, W)
    height, width = masks.shape[1:]
    y1 = rows.argmax(axis=1)
    y2 = height - rows[:, ::-1].argmax(axis=1)
    x1 = cols.argmax(axis=1)
    x2 = width - cols[:, ::-1].argmax(axis=1)
    boxes = np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)
    boxes[~rows.any(axis=1)] = 0.0
    return boxes


def finish_target(image: np.ndarray, target: dict) -> dict:
    """Draw the lazy masks of ``target`` at the image's size and derive boxes from them.

    Returns a new dict with ``"masks"``: ndarray[G, H, W] uint8 (0/1), ``"boxes"``: ndarray[G, 4] float32 xyxy, and
    the per-instance arrays named in ``INSTANCE_KEYS`` (``"labels"``, ``"has_mask"``) kept in step; instances whose
    mask is empty after the transforms (e.g. resized below one pixel) are dropped. Crowd boxes are clipped to the
    image and dropped when they have no area left.

    Box-only instances: where ``target["has_mask"]`` (ndarray[G] bool) is False, the instance's box is its entry of
    ``target["boxes"]`` (transformed along with the image) clipped to the image, its mask is all zeros, and it is
    dropped only when its box has no area left.
    """
    height, width = image.shape[:2]
    lazy: LazyMasks = target["masks"]
    if lazy.size != (height, width):
        raise ValueError(f"masks are to be drawn at {lazy.size} but the image is {(height, width)}")
    masks = lazy.rasterize()
    boxes = masks_to_boxes(masks)
    if "has_mask" in target:
        box_only = ~target["has_mask"]
        boxes[box_only] = _clip_boxes(target["boxes"][box_only], height=height, width=width)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    out = dict(target)
    for key in INSTANCE_KEYS:
        if key in target:
            out[key] = target[key][keep]
    out["masks"] = masks[keep].view(np.uint8)
    out["boxes"] = boxes[keep]
    if "crowd_boxes" in target:
        crowd = _clip_boxes(target["crowd_boxes"], height=height, width=width)
        out["crowd_boxes"] = crowd[(crowd[:, 2] > crowd[:, 0]) & (crowd[:, 3] > crowd[:, 1])]
    return out


def _clip_boxes(boxes: np.ndarray, *, height: int, width: int) -> np.ndarray:
    """ndarray[N, 4] xyxy -> a float32 copy clipped to a height x width image."""
    clipped = boxes.astype(np.float32, copy=True)
    clipped[:, 0::2] = clipped[:, 0::2].clip(0, width)
    clipped[:, 1::2] = clipped[:, 1::2].clip(0, height)
    return clipped
