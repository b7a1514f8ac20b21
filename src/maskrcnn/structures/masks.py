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
from pycocotools import mask as mask_utils


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
