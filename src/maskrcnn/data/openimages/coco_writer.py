"""Open Images instances (mask and box rows, mask PNGs, image sizes, verified labels) -> one COCO instances dataset.

Shapes: H, W the image's size (after its EXIF orientation, as ``maskrcnn.data.images.read_image`` reads it);
h, w the mask PNG's size, which often differs.

Each mask PNG covers the whole image at its own resolution; it is resized to (H, W) by nearest neighbour with
pixel centres aligned (destination pixel i samples source pixel ``floor((i + 0.5) * h / H)``, in exact integer
arithmetic), then encoded as compressed RLE. The COCO ``bbox`` and ``area`` of a mask instance come from the resized
mask, not from the CSV's box. A mask that is empty after resizing or unreadable is skipped; the instance is then
kept as box-only when it has a box, and left out when not.

A box-only instance (a box of the box CSV with no mask) keeps its box and class: ``bbox`` its box in pixels,
``area`` the box's, ``"isbbox": true``, and as ``segmentation`` the box itself as one 4-corner polygon, so that
every COCO reader (pycocotools, detectron2, ...) reads it; our loader and evaluators read the flag and treat it as
having no mask. A group-of box (``IsGroupOf`` 1) is a crowd region: ``iscrowd`` 1, with its mask when it has one.

Each image carries its verified labels in the LVIS convention: ``neg_category_ids`` (verified absent),
``not_exhaustive_category_ids`` (verified present, with no box drawn), and ``pos_category_ids`` (verified present,
or with instances; an addition of ours, which LVIS tools ignore).

Ids are fixed by the rows alone, so every run over the same rows writes the same json: image ids number the chosen
ImageIDs in sorted order from 1, annotation ids number the instances (in ``instances.plan_instances`` order) from 1;
an image or instance left out leaves a gap.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from PIL import Image

from maskrcnn.data.openimages.catalog import OpenImagesClass
from maskrcnn.data.openimages.csv_filter import MaskRow
from maskrcnn.data.openimages.image_labels import VerifiedLabels
from maskrcnn.data.openimages.instances import Instance, InstancePlan
from maskrcnn.structures.masks import bitmap_to_box, bitmap_to_rle, resize_bitmap

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


def mask_annotation(png: bytes, *, width: int, height: int) -> dict[str, Any] | str:
    """Mask PNG bytes and the image size -> COCO fields ``{"segmentation", "area", "bbox"}``, or why not (a str)."""
    try:
        bitmap = resize_bitmap(decode_mask_png(png), height=height, width=width)
    except ValueError as e:
        return str(e)
    box = bitmap_to_box(bitmap)
    if box is None:
        return f"mask empty after resizing to {width}x{height}"
    return {"segmentation": bitmap_to_rle(bitmap), "area": int(bitmap.sum()), "bbox": box}


def box_annotation(box: tuple[float, float, float, float], *, width: int, height: int) -> dict[str, Any] | str:
    """A normalised (XMin, XMax, YMin, YMax) box and the image size -> the COCO fields of a box-only instance
    ``{"segmentation", "area", "bbox", "isbbox"}``, or why not (a str)."""
    xmin, xmax, ymin, ymax = box
    x0, x1 = (round(min(max(v * width, 0.0), width), 2) for v in (xmin, xmax))
    y0, y1 = (round(min(max(v * height, 0.0), height), 2) for v in (ymin, ymax))
    if x1 <= x0 or y1 <= y0:
        return f"box {box} has no area in a {width}x{height} image"
    w, h = round(x1 - x0, 2), round(y1 - y0, 2)
    return {"segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]], "area": round(w * h, 2), "bbox": [x0, y0, w, h],
            "isbbox": True}  # fmt: skip


def build_dataset(
    plan: InstancePlan,
    *,
    classes: list[OpenImagesClass],
    image_ids: Iterable[str],
    image_sizes: dict[str, tuple[int, int]],
    read_mask: Callable[[MaskRow], bytes | str],
    info: dict[str, Any],
    labels: VerifiedLabels | None = None,
    negatives: Iterable[str] = (),
    workers: int = 1,
) -> tuple[dict[str, Any], list[str]]:
    """The COCO dataset and the skip messages.

    ``plan``: the sorted instances; ``image_ids``: every chosen ImageID; ``image_sizes``: ImageID -> (W, H) of the
    images present (others are left out without a message: the caller reports why); ``read_mask(row)``: the mask's
    PNG bytes or why there is none; ``labels``: the verified labels (None: no labels file); ``negatives``: images
    chosen for having none of the classes, kept without instances. Another image left with no instance is left out.
    """
    negatives = set(negatives)
    image_index = {image_id: i for i, image_id in enumerate(sorted(set(image_ids)), 1)}
    category_ids = {c.mid: i for i, c in enumerate(classes, 1)}

    def convert(inst: Instance) -> tuple[dict[str, Any] | None, str | None]:
        """-> (COCO fields or None, a skip message or None)."""
        if inst.image_id not in image_sizes:
            return None, None
        width, height = image_sizes[inst.image_id]
        if inst.mask is not None:
            png = read_mask(inst.mask)
            fields = png if isinstance(png, str) else mask_annotation(png, width=width, height=height)
            if not isinstance(fields, str):
                return fields, None
            if inst.box is None:
                return None, f"mask {inst.mask.mask_path}: {fields}"
            why = f"mask {inst.mask.mask_path}: {fields}; kept as box-only"
        else:
            why = None
        fields = box_annotation(inst.box.box, width=width, height=height)
        if isinstance(fields, str):
            return None, f"image {inst.image_id}: a {inst.label} {fields}, left out"
        return fields, why

    annotations: list[dict[str, Any]] = []
    skipped: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for ann_id, (inst, (fields, why)) in enumerate(zip(plan.instances, pool.map(convert, plan.instances)), 1):
            if why is not None:
                skipped.append(why)
            if fields is None:
                continue
            ann = {"id": ann_id, "image_id": image_index[inst.image_id], "category_id": category_ids[inst.category],
                   **fields, "iscrowd": int(inst.group_of)}  # fmt: skip
            if inst.mask is not None:
                ann["open_images_box_id"] = inst.mask.box_id
            if inst.label != inst.category:
                ann["open_images_label"] = inst.label
            annotations.append(ann)
    classes_with_instances: dict[int, set[int]] = defaultdict(set)
    for ann in annotations:
        classes_with_instances[ann["image_id"]].add(ann["category_id"])
    images = []
    for image_id, coco_id in image_index.items():
        if image_id not in image_sizes:
            continue
        if coco_id not in classes_with_instances and image_id not in negatives:
            skipped.append(f"image {image_id}: no usable instance left, left out")
            continue
        width, height = image_sizes[image_id]
        image = {"id": coco_id, "file_name": f"images/{image_id}.jpg", "width": width, "height": height,
                 "open_images_id": image_id}  # fmt: skip
        image.update(_image_labels(image_id, classes_with_instances[coco_id], labels, category_ids))
        images.append(image)
    categories = [
        {"id": i, "name": c.name, "supercategory": SUPERCATEGORY, "mid": c.mid} for i, c in enumerate(classes, 1)
    ]
    dataset = {"info": info, "licenses": [], "images": images, "annotations": annotations, "categories": categories}
    return dataset, skipped


def _image_labels(
    image_id: str, annotated: set[int], labels: VerifiedLabels | None, category_ids: dict[str, int]
) -> dict[str, list[int]]:
    """An image's ``pos_category_ids``, ``neg_category_ids``, ``not_exhaustive_category_ids`` (see module doc)."""
    present = {category_ids[m] for m in labels.present.get(image_id, ())} if labels else set()
    absent = {category_ids[m] for m in labels.absent.get(image_id, ())} if labels else set()
    positive = present | annotated
    return {
        "pos_category_ids": sorted(positive),
        "neg_category_ids": sorted(absent - positive),
        "not_exhaustive_category_ids": sorted(present - annotated),
    }


def dataset_counts(dataset: dict[str, Any], negatives: Iterable[str]) -> dict[str, int]:
    """What a written dataset holds: instances with masks, box-only instances, group-of regions, negative images."""
    annotations = dataset["annotations"]
    negatives = set(negatives)
    return {
        "masks": sum(1 for a in annotations if not a["iscrowd"] and not a.get("isbbox")),
        "box_only": sum(1 for a in annotations if not a["iscrowd"] and a.get("isbbox")),
        "group_of": sum(1 for a in annotations if a["iscrowd"]),
        "negative_images": sum(1 for img in dataset["images"] if img["open_images_id"] in negatives),
    }
