"""Instance masks in their three encodings: COCO polygons, COCO RLE, and bitmaps; the one place that decodes,
encodes, measures and boxes them.

Shapes: H, W image size; G instances; P polygon points.

- polygons: a list of flat polygons, each ``[x1, y1, x2, y2, ...]`` (a list or ndarray[2P]) in absolute pixels (COCO
  ``segmentation`` list); several polygons make one instance. A polygon outlines an area when it has an even number
  of finite coordinates and at least 3 points (``is_valid_polygon``); others are passed over wherever polygons are
  read.
- RLE: ``{"size": [H, W], "counts": str | bytes}`` (compressed, as written in COCO results; pycocotools keeps the
  counts as bytes), or ``counts`` as a list of ints (uncompressed, as in COCO ``iscrowd`` annotations).
- bitmap: ndarray[H, W] bool (or uint8 0/1).
- boxes: COCO ``[x, y, w, h]`` where the json has them (``bbox``), else (x1, y1, x2, y2).

>>> rle = segmentation_to_rle([[0, 0, 4, 0, 4, 2, 0, 2]], 3, 5)
>>> rle_area(rle), rle_box(rle)
(8, [0.0, 0.0, 4.0, 2.0])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils
from torch import Tensor

MIN_POLYGON_POINTS = 3


def is_valid_polygon(polygon: np.ndarray) -> bool:
    """Whether a flat polygon ndarray[2P] outlines an area: an even number of finite coordinates, at least 3 points.

    (A polygon may still enclose no area, e.g. collinear points: see ``polygon_area``.)
    """
    return (
        polygon.ndim == 1
        and len(polygon) >= 2 * MIN_POLYGON_POINTS
        and len(polygon) % 2 == 0
        and bool(np.isfinite(polygon).all())
    )


def polygon_area(points: np.ndarray) -> float:
    """Area enclosed by a polygon, ndarray[P, 2] (x, y) or flat ndarray[2P] (shoelace formula, either orientation).

    >>> polygon_area(np.array([0, 0, 4, 0, 4, 2, 0, 2], dtype=float))
    8.0
    """
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)  # (P, 2)
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def polygons_to_rle(polygons: Sequence[Sequence[float] | np.ndarray], height: int, width: int) -> dict[str, Any]:
    """Polygons of one instance -> compressed RLE (counts bytes) of the H x W pixels they cover together.

    Polygons that are not valid (``is_valid_polygon``) are passed over; none left gives an empty mask.
    """
    valid = [p for p in (np.asarray(p, dtype=np.float64) for p in polygons) if is_valid_polygon(p)]
    if not valid:
        return mask_utils.encode(np.zeros((height, width), dtype=np.uint8, order="F"))
    return mask_utils.merge(mask_utils.frPyObjects(valid, height, width))


def rle_to_compressed(rle: dict[str, Any], height: int, width: int) -> dict[str, Any]:
    """Compressed or uncompressed RLE of an H x W mask -> compressed RLE (counts bytes).

    ValueError when it is not an RLE of that size (no ``size`` or ``counts``, another size, counts neither a string
    nor a list of ints).
    """
    if not isinstance(rle, dict) or "counts" not in rle or "size" not in rle:
        raise ValueError("an RLE needs 'size' and 'counts'")
    size = [int(v) for v in rle["size"]] if isinstance(rle["size"], Sequence) and len(rle["size"]) == 2 else None
    if size != [height, width]:
        raise ValueError(f"RLE size {rle['size']} differs from the image size [{height}, {width}]")
    counts = rle["counts"]
    try:
        if isinstance(counts, list):
            return mask_utils.frPyObjects({"size": size, "counts": counts}, height, width)
        if isinstance(counts, str):
            counts = counts.encode("ascii")
    except (TypeError, ValueError, UnicodeEncodeError) as e:
        raise ValueError(f"unreadable RLE: {e}") from None
    if not isinstance(counts, bytes):
        raise ValueError(f"RLE counts must be a string or a list of ints, got {type(counts).__name__}")
    return {"size": size, "counts": counts}


def segmentation_to_rle(segmentation: list | dict, height: int, width: int) -> dict[str, Any]:
    """A COCO ``segmentation`` (polygons, uncompressed or compressed RLE) of an H x W image -> compressed RLE
    ``{"size": [H, W], "counts": bytes}``. ValueError when it cannot be read as a mask of that size."""
    if isinstance(segmentation, dict):
        return rle_to_compressed(segmentation, height, width)
    if not isinstance(segmentation, list):
        raise ValueError(f"a segmentation is polygons (a list) or an RLE (a dict), not a {type(segmentation).__name__}")
    try:
        return polygons_to_rle(segmentation, height, width)
    except (TypeError, ValueError) as e:
        raise ValueError(f"unreadable polygons: {e}") from None


def rle_to_bitmap(rle: dict[str, Any]) -> np.ndarray:
    """Compressed or uncompressed COCO RLE -> ndarray[H, W] bool."""
    height, width = rle["size"]
    return mask_utils.decode(rle_to_compressed(rle, height, width)).astype(bool)


def polygons_to_bitmap(polygons: Sequence[Sequence[float] | np.ndarray], height: int, width: int) -> np.ndarray:
    """COCO polygons of one instance -> ndarray[H, W] bool. Polygons that are not valid are passed over."""
    return mask_utils.decode(polygons_to_rle(polygons, height, width)).astype(bool)


def segmentation_to_bitmap(segmentation: list | dict, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` field (polygons or RLE) -> ndarray[H, W] bool; ValueError for an RLE of another size."""
    return mask_utils.decode(segmentation_to_rle(segmentation, height, width)).astype(bool)


def bitmap_to_rle(bitmap: np.ndarray) -> dict[str, Any]:
    """ndarray[H, W] bool -> compressed COCO RLE ``{"size": [H, W], "counts": str}`` (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(bitmap.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def rle_area(rle: dict[str, Any]) -> int:
    """Set pixels of a compressed RLE (counts bytes, as ``segmentation_to_rle`` returns)."""
    return int(mask_utils.area(rle))


def rle_box(rle: dict[str, Any]) -> list[float]:
    """Tight COCO box ``[x, y, w, h]`` around the set pixels of a compressed RLE (all 0 when it is empty)."""
    return [float(v) for v in mask_utils.toBbox(rle)]


def rle_boxes(rles: list[dict[str, Any]]) -> np.ndarray:
    """``rle_box`` of each of D compressed RLEs -> ndarray[D, 4] float64 ``[x, y, w, h]``."""
    return np.asarray(mask_utils.toBbox(rles), dtype=np.float64).reshape(-1, 4) if rles else np.zeros((0, 4))


def ious(dt: list | np.ndarray, gt: list | np.ndarray, *, crowd: bool = False) -> np.ndarray:
    """IoU of D detections with G ground-truth regions -> ndarray[D, G] float64; with ``crowd``, the intersection
    over the detection's area instead (COCO's rule for crowd regions).

    Both are compressed RLEs (lists), or both COCO boxes ``[x, y, w, h]`` (ndarray[D, 4] and ndarray[G, 4]).
    """
    if len(dt) == 0 or len(gt) == 0:
        return np.zeros((len(dt), len(gt)))
    if not isinstance(dt, list):
        dt, gt = np.asarray(dt, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    return np.asarray(mask_utils.iou(dt, gt, [int(crowd)] * len(gt)), dtype=np.float64).reshape(len(dt), len(gt))


def segmentation_box(segmentation: list[np.ndarray] | dict[str, Any], height: int, width: int) -> np.ndarray:
    """Box (x1, y1, x2, y2) around an instance's valid polygons (their points' extent) or its compressed RLE (its
    pixels), clipped to the H x W image -> ndarray[4] float32."""
    if isinstance(segmentation, dict):
        x, y, w, h = rle_box(segmentation)
        box = np.array([x, y, x + w, y + h], dtype=np.float64)
    else:
        xy = np.concatenate([np.asarray(p, dtype=np.float64) for p in segmentation]).reshape(-1, 2)  # (P, 2)
        box = np.concatenate([xy.min(axis=0), xy.max(axis=0)])
    return np.clip(box, 0, [width, height, width, height]).astype(np.float32)


def bitmap_to_box(bitmap: np.ndarray) -> list[float] | None:
    """Tight COCO box ``[x, y, w, h]`` around the set pixels of a bitmap, or None when it is empty.

    A single set pixel at (x, y) gives ``[x, y, 1, 1]``: the box covers whole pixels.
    """
    ys = np.flatnonzero(bitmap.any(axis=1))
    xs = np.flatnonzero(bitmap.any(axis=0))
    if len(xs) == 0:
        return None
    return [float(xs[0]), float(ys[0]), float(xs[-1] - xs[0] + 1), float(ys[-1] - ys[0] + 1)]


def resize_bitmap(bitmap: np.ndarray, *, height: int, width: int) -> np.ndarray:
    """ndarray[h, w] bool -> ndarray[height, width] bool, nearest neighbour with pixel centres aligned: destination
    pixel i samples source pixel ``floor((i + 0.5) * h / height)``, in exact integer arithmetic.

    >>> resize_bitmap(np.array([[1, 0]], bool), height=1, width=4).astype(int).tolist()
    [[1, 1, 0, 0]]
    """
    h, w = bitmap.shape
    if (h, w) == (height, width):
        return bitmap
    rows = ((2 * np.arange(height) + 1) * h) // (2 * height)
    cols = ((2 * np.arange(width) + 1) * w) // (2 * width)
    return bitmap[np.ix_(rows, cols)]


PASTE_RULES = ("torchvision", "detectron2")


def paste_masks(
    mask_probs: Tensor, boxes: Tensor, image_size: tuple[int, int], *, threshold: float = 0.5,
    rule: str = "torchvision",
) -> Tensor:  # fmt: skip
    """Paste fixed-size mask probabilities into the full image, each inside its box, and binarise.

    mask_probs: Tensor[D, M, M] in [0, 1]; boxes: Tensor[D, 4] xyxy pixels of the output image;
    image_size: (H, W) -> Tensor[D, H, W] bool. Two rules, each that of the library whose weights need it:

    - "torchvision": the M x M map is first padded by one zero pixel on each side and its box grown by (M + 2) / M
      to match, so that the mask can fade out at the box edge; the box is then snapped to whole pixels, the padded
      map bilinearly resized to the snapped box's size, and copied in (the part inside the image). True where the
      resampled probability exceeds ``threshold``.
    - "detectron2": each pixel centre (x + 0.5, y + 0.5) within a pixel of the box reads the map bilinearly at its
      place relative to the box (the box's edges on the map's outer edges, zero outside the map); True where that
      is at least ``threshold``. Example: for a box [0, 0, 28, 28] and M = 28, pixel (i, j) reads cell (i, j).

    Only each box's region is computed (and, on CPU, only its rows of the output are ever written: the rest stays
    as untouched zero pages).
    """
    if rule not in PASTE_RULES:
        raise ValueError(f"unknown mask paste rule {rule!r}; expected one of {', '.join(PASTE_RULES)}")
    num = mask_probs.shape[0]
    height, width = image_size
    if mask_probs.device.type == "cpu":
        # numpy's zeros come from calloc: fresh zero pages that are only touched (written) inside the boxes
        out = torch.from_numpy(np.zeros((num, height, width), dtype=bool))
    else:
        out = torch.zeros((num, height, width), dtype=torch.bool, device=mask_probs.device)
    if num == 0:
        return out
    if rule == "detectron2":
        _paste_sampled(mask_probs, boxes, out, threshold)
    else:
        _paste_resized(mask_probs, boxes, out, threshold)
    return out


def paste_grid(boxes: Tensor, mask_size: int) -> Tensor:
    """Tensor[D, 4] xyxy -> Tensor[D, 4] int64: the whole-pixel box torchvision's rule pastes an M x M mask into, the
    box grown by (M + 2) / M about its centre (for the map's one-pixel zero border), then truncated. Truncation is a
    step: boxes 1e-5 px apart whose grown edge lies on an integer paste into grids one pixel apart."""
    centre = (boxes[:, :2] + boxes[:, 2:]) * 0.5  # (D, 2)
    half = (boxes[:, 2:] - boxes[:, :2]) * 0.5 * ((mask_size + 2) / mask_size)
    return torch.cat([centre - half, centre + half], dim=1).to(torch.int64)  # truncation, as torchvision


def _paste_resized(mask_probs: Tensor, boxes: Tensor, out: Tensor, threshold: float) -> None:
    """torchvision's rule (``paste_masks``) into ``out``: Tensor[D, H, W] bool, all False."""
    height, width = out.shape[-2:]
    padded = F.pad(mask_probs, (1, 1, 1, 1))  # (D, M+2, M+2)
    for i, (x1, y1, x2, y2) in enumerate(paste_grid(boxes, mask_probs.shape[-1]).tolist()):
        w = max(x2 - x1 + 1, 1)
        h = max(y2 - y1 + 1, 1)
        x0, y0 = max(x1, 0), max(y1, 0)
        xe, ye = min(x2 + 1, width), min(y2 + 1, height)
        if xe <= x0 or ye <= y0:
            continue
        # (M+2, M+2) -> (1, 1, M+2, M+2) -> (1, 1, h, w) -> (h, w)
        resized = F.interpolate(padded[i][None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        out[i, y0:ye, x0:xe] = resized[y0 - y1 : ye - y1, x0 - x1 : xe - x1] > threshold


def _paste_sampled(mask_probs: Tensor, boxes: Tensor, out: Tensor, threshold: float) -> None:
    """detectron2's rule (``paste_masks``) into ``out``: Tensor[D, H, W] bool, all False. The pixels computed are
    those from floor(x1) - 1 to ceil(x2) + 1 (and likewise in y), inside the image: the region detectron2 computes
    on the CPU, outside which its masks are empty."""
    height, width = out.shape[-2:]
    boxes = boxes.to(torch.float32)
    starts = (boxes[:, :2].floor() - 1).clamp(min=0).to(torch.int64).tolist()  # (D, 2): x, y
    ends = (boxes[:, 2:].ceil() + 1).to(torch.int64)
    ends = torch.stack([ends[:, 0].clamp(max=width), ends[:, 1].clamp(max=height)], dim=1).tolist()
    for i, ((x0, y0), (xe, ye)) in enumerate(zip(starts, ends)):
        if xe <= x0 or ye <= y0:
            continue
        bx1, by1, bx2, by2 = boxes[i]
        # pixel centres -> [-1, 1] across the box: grid_sample's coordinates, the box's edges on the map's edges
        xs = (torch.arange(x0, xe, dtype=torch.float32, device=out.device) + 0.5 - bx1) / (bx2 - bx1) * 2 - 1
        ys = (torch.arange(y0, ye, dtype=torch.float32, device=out.device) + 0.5 - by1) / (by2 - by1) * 2 - 1
        # (h,) and (w,) -> (1, h, w, 2) of (x, y)
        grid = torch.stack([xs[None, :].expand(len(ys), -1), ys[:, None].expand(-1, len(xs))], dim=2)[None]
        # (M, M) -> (1, 1, M, M) -> (1, 1, h, w) -> (h, w)
        sampled = F.grid_sample(mask_probs[i][None, None].to(torch.float32), grid, align_corners=False)[0, 0]
        out[i, y0:ye, x0:xe] = sampled >= threshold
