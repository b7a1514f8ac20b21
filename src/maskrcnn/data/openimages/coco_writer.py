"""Open Images instances (CSV rows + mask PNGs + image sizes) -> one COCO instances dataset.

Shapes: H, W the image's size (after its EXIF orientation, as ``maskrcnn.data.images.read_image`` reads it);
h, w the mask PNG's size, which often differs.

Each mask PNG covers the whole image at its own resolution; it is resized to (H, W) by nearest neighbour with
pixel centres aligned (destination pixel i samples source pixel ``floor((i + 0.5) * h / H)``, in exact integer
arithmetic), then encoded as compressed RLE. The COCO ``bbox`` and ``area`` come from the resized mask, not from
the CSV's Box columns. A mask that is empty after resizing is skipped.

Ids are fixed by the rows alone, so every run over the same rows writes the same json: image ids number the
distinct ImageIDs of the rows in sorted order from 1, annotation ids number the rows (sorted as
``filter_segmentation_csv`` returns them) from 1; an image or instance left out leaves a gap.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from maskrcnn.data.openimages.catalog import OpenImagesClass
from maskrcnn.data.openimages.csv_filter import MaskRow
from maskrcnn.structures.masks import bitmap_to_box, bitmap_to_rle

SUPERCATEGORY = "object"


def decode_mask_png(data: bytes) -> np.ndarray:
    """PNG bytes -> ndarray[h, w] bool (any non-zero pixel is set). Raises ValueError when it is not a readable
    image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.mode not in ("1", "L"):
                image = image.convert("L")
            return np.asarray(image).astype(bool)
    except Image.UnidentifiedImageError:
        raise ValueError("not an image file") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"not a readable image ({e})") from None


def resize_mask(bitmap: np.ndarray, *, height: int, width: int) -> np.ndarray:
    """ndarray[h, w] bool -> ndarray[height, width] bool, nearest neighbour with pixel centres aligned.

    >>> resize_mask(np.array([[1, 0]], bool), height=1, width=4).astype(int).tolist()
    [[1, 1, 0, 0]]
    """
    h, w = bitmap.shape
    if (h, w) == (height, width):
        return bitmap
    rows = ((2 * np.arange(height) + 1) * h) // (2 * height)
    cols = ((2 * np.arange(width) + 1) * w) // (2 * width)
    return bitmap[np.ix_(rows, cols)]


def image_size(path: Path) -> tuple[int, int]:
    """(W, H) of an image file as ``read_image`` returns it (EXIF rotations by 90 degrees swap them), read from its
    header only. Raises OSError / ValueError when it is not an image."""
    with Image.open(path) as image:
        width, height = image.size
        orientation = image.getexif().get(0x0112, 1)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def mask_annotation(png: bytes, *, width: int, height: int) -> dict[str, Any] | str:
    """Mask PNG bytes and the image size -> COCO fields ``{"segmentation", "area", "bbox"}``, or why not (a str)."""
    try:
        bitmap = resize_mask(decode_mask_png(png), height=height, width=width)
    except ValueError as e:
        return str(e)
    box = bitmap_to_box(bitmap)
    if box is None:
        return f"mask empty after resizing to {width}x{height}"
    return {"segmentation": bitmap_to_rle(bitmap), "area": int(bitmap.sum()), "bbox": box}


def build_dataset(
    rows: list[MaskRow],
    *,
    classes: list[OpenImagesClass],
    image_sizes: dict[str, tuple[int, int]],
    read_mask: Callable[[MaskRow], bytes | str],
    info: dict[str, Any],
    workers: int = 1,
) -> tuple[dict[str, Any], list[str]]:
    """The COCO dataset and the skip messages.

    ``rows``: sorted instances; ``image_sizes``: ImageID -> (W, H) of the images present (rows of other images are
    left out without a message: the caller reports why); ``read_mask(row)``: the mask's PNG bytes or why there is
    none. An image left with no instance is left out.
    """
    image_ids = {image_id: i for i, image_id in enumerate(sorted({row.image_id for row in rows}), 1)}
    category_ids = {c.mid: i for i, c in enumerate(classes, 1)}

    def convert(row: MaskRow) -> dict[str, Any] | str | None:
        if row.image_id not in image_sizes:
            return None
        png = read_mask(row)
        if isinstance(png, str):
            return png
        width, height = image_sizes[row.image_id]
        return mask_annotation(png, width=width, height=height)

    annotations: list[dict[str, Any]] = []
    skipped: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for ann_id, (row, fields) in enumerate(zip(rows, pool.map(convert, rows)), 1):
            if fields is None:
                continue
            if isinstance(fields, str):
                skipped.append(f"mask {row.mask_path}: {fields}")
                continue
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_ids[row.image_id],
                    "category_id": category_ids[row.label],
                    "segmentation": fields["segmentation"],
                    "area": fields["area"],
                    "bbox": fields["bbox"],
                    "iscrowd": 0,
                    "open_images_box_id": row.box_id,
                }
            )
    with_instances = {ann["image_id"] for ann in annotations}
    images = []
    for image_id, coco_id in image_ids.items():
        if image_id not in image_sizes:
            continue
        if coco_id not in with_instances:
            skipped.append(f"image {image_id}: no usable instance left, left out")
            continue
        width, height = image_sizes[image_id]
        images.append(
            {"id": coco_id, "file_name": f"images/{image_id}.jpg", "width": width, "height": height,
             "open_images_id": image_id}
        )  # fmt: skip
    categories = [
        {"id": i, "name": c.name, "supercategory": SUPERCATEGORY, "mid": c.mid} for i, c in enumerate(classes, 1)
    ]
    dataset = {"info": info, "licenses": [], "images": images, "annotations": annotations, "categories": categories}
    return dataset, skipped
