"""Drawing instances on an image: translucent masks with outlines, boxes, and "name 0.93" captions.

Shapes: H, W image size; D instances.

Every class name gets the same colour in every picture (a hash of the name, not of the run), so overlays of
different images and of predictions and ground truth can be compared at a glance. Where masks overlap, the
instance drawn last is on top: instances are drawn in increasing score order, so the most confident one is
the one seen.

>>> image = np.zeros((60, 80, 3), dtype=np.uint8)
>>> masks = np.zeros((1, 60, 80), dtype=bool); masks[0, 10:30, 20:50] = True
>>> out = draw_instances(image, boxes=np.array([[20, 10, 50, 30]]), masks=masks, labels=["cat"],
...                      scores=np.array([0.93]))
>>> out.shape, out.dtype
((60, 80, 3), dtype('uint8'))
"""

from __future__ import annotations

import colorsys
import functools
import hashlib

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def class_colour(name: str) -> tuple[int, int, int]:
    """A bright RGB colour fixed by ``name`` alone: the same in every run and every process."""
    digest = hashlib.md5(name.encode("utf-8")).digest()
    hue = int.from_bytes(digest[:2], "big") / 65536.0
    saturation = 0.65 + 0.3 * digest[2] / 255.0
    value = 0.85 + 0.15 * digest[3] / 255.0
    r, g, b = colorsys.hsv_to_rgb(hue, saturation, value)
    return round(r * 255), round(g * 255), round(b * 255)


def _instance_colours(labels: list[str] | None, count: int) -> np.ndarray:
    """ndarray[D, 3] uint8: per class name when labels are given, else a fixed cycle by instance index."""
    if labels is not None:
        return np.array([class_colour(str(name)) for name in labels], dtype=np.uint8).reshape(count, 3)
    return np.array([class_colour(f"instance {i}") for i in range(count)], dtype=np.uint8).reshape(count, 3)


@functools.lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _paint_masks(
    image: np.ndarray, masks: np.ndarray, colours: np.ndarray, order: np.ndarray, *, alpha: float, outline: int
) -> None:
    """Blend masks into ``image`` in place: fill at ``alpha`` and an opaque outline ``outline`` pixels wide.

    A label map (H, W) holds the top-most instance of every pixel; each mask is written only over its own
    bounding rectangle, so the cost follows the instances' areas rather than D * H * W.
    """
    height, width = image.shape[:2]
    rows_any = masks.any(axis=2)  # (D, H)
    cols_any = masks.any(axis=1)  # (D, W)
    label = np.full((height, width), -1, dtype=np.int32)
    for i in order:
        ys = np.flatnonzero(rows_any[i])
        xs = np.flatnonzero(cols_any[i])
        if len(ys) == 0:
            continue
        y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
        label[y0:y1, x0:x1][masks[i, y0:y1, x0:x1]] = i
    covered = label >= 0
    if not covered.any():
        return
    # Only the covered pixels change: fill, then outline where the label differs from a neighbour's.
    fill = colours[label[covered]].astype(np.float32)
    image[covered] = (image[covered].astype(np.float32) * (1.0 - alpha) + fill * alpha + 0.5).astype(np.uint8)
    edge = np.zeros((height, width), dtype=bool)
    for k in range(1, outline + 1):
        edge[k:, :] |= label[k:, :] != label[:-k, :]
        edge[:-k, :] |= label[:-k, :] != label[k:, :]
        edge[:, k:] |= label[:, k:] != label[:, :-k]
        edge[:, :-k] |= label[:, :-k] != label[:, k:]
    edge &= covered
    image[edge] = colours[label[edge]]


def _caption_text(label: str | None, score: float | None) -> str:
    parts = [label] if label is not None else []
    if score is not None:
        parts.append(f"{score:.2f}")
    return " ".join(parts)


def _draw_caption(
    draw: ImageDraw.ImageDraw,
    text: str,
    *,
    x: float,
    y: float,
    colour: tuple[int, int, int],
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    image_size: tuple[int, int],
) -> None:
    """Caption on a filled box whose bottom-left sits at (x, y), moved inside the image when it would spill."""
    width, height = image_size
    left, top, right, bottom = font.getbbox(text)
    pad = max(1, (bottom - top) // 6)
    box_w, box_h = right - left + 2 * pad, bottom - top + 2 * pad
    bx = int(min(max(x, 0), max(width - box_w, 0)))
    by = int(y) - box_h
    if by < 0:  # no room above the box: put the caption just inside its top edge
        by = int(max(y, 0))
    by = min(by, max(height - box_h, 0))
    draw.rectangle((bx, by, bx + box_w - 1, by + box_h - 1), fill=colour)
    luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    ink = (0, 0, 0) if luminance > 150 else (255, 255, 255)
    draw.text((bx + pad - left, by + pad - top), text, font=font, fill=ink)


def draw_instances(
    image: np.ndarray,
    *,
    boxes: np.ndarray | None,
    masks: np.ndarray | None,
    labels: list[str] | None,
    scores: np.ndarray | None = None,
    alpha: float = 0.45,
) -> np.ndarray:
    """Draw D instances on a copy of ``image``.

    image: ndarray[H, W, 3] uint8 RGB.
    boxes: ndarray[D, 4] (x1, y1, x2, y2), absolute pixels, or None.
    masks: ndarray[D, H, W] bool (other dtypes: nonzero is set), or None.
    labels: D class names, or None (colours then follow the instance index and captions show scores only).
    scores: ndarray[D] in [0, 1], or None (captions show names only).
    alpha: opacity of the mask fill; outlines and boxes are opaque.
    Returns ndarray[H, W, 3] uint8; ``image`` itself is not modified. Captions sit above each box (or above the
    mask's extent when there are no boxes) and are kept inside the image.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be ndarray[H, W, 3] uint8, got {image.dtype} {list(image.shape)}")
    height, width = image.shape[:2]
    counts = {}
    if boxes is not None:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        counts["boxes"] = len(boxes)
    if masks is not None:
        masks = np.asarray(masks)
        if masks.ndim != 3 or masks.shape[1:] != (height, width):
            raise ValueError(f"masks must be ndarray[D, {height}, {width}], got {list(masks.shape)}")
        masks = masks if masks.dtype == bool else masks != 0
        counts["masks"] = len(masks)
    if labels is not None:
        counts["labels"] = len(labels)
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        counts["scores"] = len(scores)
    if len(set(counts.values())) > 1:
        raise ValueError(f"instance counts differ: {counts}")
    count = next(iter(counts.values()), 0)
    out = image.copy()
    if count == 0:
        return out

    colours = _instance_colours(labels, count)
    # Lowest score first, so the most confident instance ends up on top.
    order = np.argsort(scores, kind="stable") if scores is not None else np.arange(count)
    line = max(1, round(min(height, width) / 400))
    if masks is not None:
        _paint_masks(out, masks, colours, order, alpha=alpha, outline=line)

    anchors = None  # where each caption goes: the box's top-left corner, else the mask's
    if boxes is not None:
        anchors = boxes[:, :2]
    elif masks is not None:
        rows_any, cols_any = masks.any(axis=2), masks.any(axis=1)
        anchors = np.full((count, 2), np.nan)
        for i in range(count):
            if rows_any[i].any():
                anchors[i] = (np.argmax(cols_any[i]), np.argmax(rows_any[i]))
    pil = Image.fromarray(out)
    draw = ImageDraw.Draw(pil)
    font = _font(max(10, round(min(height, width) / 40)))
    for i in order:
        colour = tuple(int(c) for c in colours[i])
        if boxes is not None and np.isfinite(boxes[i]).all():
            x1, y1, x2, y2 = (round(v) for v in boxes[i])
            # The outline lies on the pixels inside the box: x1 .. x2 - 1.
            draw.rectangle((x1, y1, max(x2 - 1, x1), max(y2 - 1, y1)), outline=colour, width=line)
        text = _caption_text(
            str(labels[i]) if labels is not None else None, float(scores[i]) if scores is not None else None
        )
        if text and anchors is not None and np.isfinite(anchors[i]).all():
            _draw_caption(
                draw, text, x=anchors[i, 0], y=anchors[i, 1], colour=colour, font=font, image_size=(width, height)
            )
    return np.array(pil)
