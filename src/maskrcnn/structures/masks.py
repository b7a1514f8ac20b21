"""Instance masks in their three encodings: COCO polygons, COCO RLE, and bitmaps.

Shapes: H, W image size; G instances.

- polygons: list[list[float]], each ``[x1, y1, x2, y2, ...]`` in absolute pixels (COCO ``segmentation`` list);
  several polygons make one instance.
- RLE: ``{"size": [H, W], "counts": str}`` (compressed, as written in COCO results), or ``counts`` as a list of ints
  (uncompressed, as in COCO ``iscrowd`` annotations).
- bitmap: ndarray[H, W] bool (or uint8 0/1).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils
from torch import Tensor


def polygons_to_bitmap(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """COCO polygons of one instance -> ndarray[H, W] bool. Polygons with fewer than 3 points are ignored."""
    polygons = [list(map(float, p)) for p in polygons if len(p) >= 6 and len(p) % 2 == 0]
    if not polygons:
        return np.zeros((height, width), dtype=bool)
    rles = mask_utils.frPyObjects(polygons, height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def rle_to_bitmap(rle: dict[str, Any]) -> np.ndarray:
    """Compressed or uncompressed COCO RLE -> ndarray[H, W] bool."""
    height, width = rle["size"]
    if isinstance(rle["counts"], list):
        rle = mask_utils.frPyObjects(rle, height, width)
    elif isinstance(rle["counts"], str):
        rle = {"size": [height, width], "counts": rle["counts"].encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


def segmentation_to_bitmap(segmentation: list | dict, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` field (polygons or RLE) -> ndarray[H, W] bool."""
    if isinstance(segmentation, dict):
        bitmap = rle_to_bitmap(segmentation)
        if bitmap.shape != (height, width):
            raise ValueError(f"RLE size {list(bitmap.shape)} differs from the image size {[height, width]}")
        return bitmap
    return polygons_to_bitmap(segmentation, height, width)


def bitmap_to_rle(bitmap: np.ndarray) -> dict[str, Any]:
    """ndarray[H, W] bool -> compressed COCO RLE ``{"size": [H, W], "counts": str}`` (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(bitmap.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def bitmap_to_box(bitmap: np.ndarray) -> list[float] | None:
    """Tight COCO box ``[x, y, w, h]`` around the set pixels of a bitmap, or None when it is empty.

    A single set pixel at (x, y) gives ``[x, y, 1, 1]``: the box covers whole pixels.
    """
    ys = np.flatnonzero(bitmap.any(axis=1))
    xs = np.flatnonzero(bitmap.any(axis=0))
    if len(xs) == 0:
        return None
    return [float(xs[0]), float(ys[0]), float(xs[-1] - xs[0] + 1), float(ys[-1] - ys[0] + 1)]


def paste_masks(mask_probs: Tensor, boxes: Tensor, image_size: tuple[int, int], *, threshold: float = 0.5) -> Tensor:
    """Paste fixed-size mask probabilities into the full image, each inside its box, and binarise.

    mask_probs: Tensor[D, M, M] in [0, 1]; boxes: Tensor[D, 4] xyxy pixels of the output image;
    image_size: (H, W) -> Tensor[D, H, W] bool, True where the resampled probability exceeds ``threshold``.

    The M x M map is first padded by one zero pixel on each side and its box grown by (M + 2) / M to match, so that
    the mask can fade out at the box edge; the box is then snapped to whole pixels, the padded map bilinearly
    resized to the snapped box's size, and copied in (the part inside the image). This is the pasting rule of
    torchvision's Mask R-CNN, kept so that its weights give its masks. Only each box's region is computed (and, on
    CPU, only its rows of the output are ever written: the rest stays as untouched zero pages).
    """
    num, size = mask_probs.shape[0], mask_probs.shape[-1]
    height, width = image_size
    if mask_probs.device.type == "cpu":
        # numpy's zeros come from calloc: fresh zero pages that are only touched (written) inside the boxes
        out = torch.from_numpy(np.zeros((num, height, width), dtype=bool))
    else:
        out = torch.zeros((num, height, width), dtype=torch.bool, device=mask_probs.device)
    if num == 0:
        return out
    padded = F.pad(mask_probs, (1, 1, 1, 1))  # (D, M+2, M+2)
    scale = (size + 2) / size
    centre = (boxes[:, :2] + boxes[:, 2:]) * 0.5  # (D, 2)
    half = (boxes[:, 2:] - boxes[:, :2]) * 0.5 * scale
    grown = torch.cat([centre - half, centre + half], dim=1).to(torch.int64).tolist()  # truncation, as torchvision
    for i, (x1, y1, x2, y2) in enumerate(grown):
        w = max(x2 - x1 + 1, 1)
        h = max(y2 - y1 + 1, 1)
        x0, y0 = max(x1, 0), max(y1, 0)
        xe, ye = min(x2 + 1, width), min(y2 + 1, height)
        if xe <= x0 or ye <= y0:
            continue
        # (M+2, M+2) -> (1, 1, M+2, M+2) -> (1, 1, h, w) -> (h, w)
        resized = F.interpolate(padded[i][None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        out[i, y0:ye, x0:xe] = resized[y0 - y1 : ye - y1, x0 - x1 : xe - x1] > threshold
    return out
