"""COCO instances json: the one internal dataset format. Reading and checking it (``read_coco``, one set of rules
for training and evaluation alike), and serving training samples (``CocoDataset``).

Shapes: H, W image size after the transform (H0, W0 as in the json); G instances; C crowd regions; K classes.

What is accepted, and what is an error (a ``UserError`` naming the file and the entry, e.g. ``annotation #3 (id 7)``):

- ``images``: objects with an integer ``id`` (unique), a non-empty ``file_name`` and positive integer ``width`` and
  ``height``; optionally verified labels (``VERIFIED_LABEL_KEYS``, LVIS's convention): lists of category ids.
- ``categories``: objects with an integer ``id`` (unique, in any order, with gaps) and a ``name``; an Open Images
  ``mid`` is kept.
- ``annotations`` (may be missing): objects naming an ``image_id`` and a ``category_id`` of the json; ``iscrowd``
  0, 1 or a bool (default 0); ``bbox``, when present, ``[x, y, width, height]`` of finite numbers; ``segmentation``
  as polygons (several per instance), compressed RLE (``counts`` a string) or uncompressed RLE (``counts`` a list of
  ints) of the image's size. ``id``: kept when it is an integer not used before, else a fresh one past the largest.
  Extra keys (car-parts' ``color``, ``metadata``) are ignored.

What each annotation becomes:

- its mask is usable: an instance with a mask (polygons that are not valid, ``structures.masks.is_valid_polygon``,
  are passed over);
- it has no usable mask (no segmentation, only polygons of fewer than 3 points or of zero area, an empty RLE), or
  it is marked ``"isbbox": true`` (as ``maskrcnn openimages download`` writes an object that has a box but no mask;
  its ``segmentation`` is then only its box): a box-only instance, with its ``bbox`` as its box;
- ``iscrowd`` set: a crowd region (with its mask when usable, else its box), not an instance;
- with neither a usable mask nor a ``bbox`` with area inside the image: skipped, and counted in ``skipped`` by
  reason (one logged note).

Training (``CocoDataset``) derives each instance's box from its mask after the transform, so boxes always match masks
(some real jsons carry wrong ones); a box-only instance keeps its json box and trains the RPN and the box head, not
the mask head. Evaluation (``evaluation.coco_eval``) scores the json's boxes as given, and box-only instances as
ignored regions for mask AP.

Classes: contiguous label k (1..K) stands for the json category id ``category_ids[k - 1]``. Unless a mapping is
given, the classes are the categories with at least one non-crowd annotation, sorted by id; the others (such as
car-parts' ``_background_``) are dropped with one logged note.

Images resolve relative to ``images_dir``; by default the json's folder, else its ``images/`` or ``JPEGImages/``
subfolder, whichever holds the images (``data.images.find_images_dir``).
"""

from __future__ import annotations

import logging
import numbers
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from maskrcnn.data.images import (
    DEFAULT_MAX_PIXELS,
    check_pixels,
    checked_images_dir,
    find_images_dir,
    image_size,
    read_image,
)
from maskrcnn.data.transforms import LazyMasks, finish_target
from maskrcnn.errors import UserError
from maskrcnn.io import read_json
from maskrcnn.structures.masks import is_valid_polygon, polygon_area, rle_area, rle_to_compressed, segmentation_box

logger = logging.getLogger(__name__)

# Per-image verified labels: LVIS's two keys, and the classes verified present (Open Images' positive labels).
VERIFIED_LABEL_KEYS = ("pos_category_ids", "neg_category_ids", "not_exhaustive_category_ids")


def load_coco_json(path: Path, *, what: str = "annotations") -> dict[str, Any]:
    """Read a COCO instances json and check its top-level layout -> the parsed dict.

    ``images`` and ``categories`` must be lists; ``annotations`` may be missing (an image-info file), and is then
    set to ``[]``. Raises ``UserError`` naming the file (as ``what``) for a missing, unreadable or malformed file.
    """
    data = read_json(path, what=what)
    _check_layout(data, str(path))
    data.setdefault("annotations", [])
    return data


def _check_layout(data: Any, name: str) -> None:
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise UserError(f"{name}: expected a COCO json object with 'images' and 'categories', got a {kind}")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise UserError(f"{name}: '{key}' is missing or not a list (is this a COCO instances json?)")
    if not isinstance(data.get("annotations", []), list):
        raise UserError(f"{name}: 'annotations' is not a list")


@dataclass(frozen=True)
class CocoImage:
    id: int
    file_name: str
    height: int
    width: int
    verified: dict[str, list[int]]  # the verified labels it carries: {key of VERIFIED_LABEL_KEYS: category ids}


@dataclass(frozen=True)
class CocoCategory:
    id: int
    name: str
    mid: str | None  # Open Images' class id, when the json has one


@dataclass(frozen=True)
class CocoAnnotation:
    """One usable annotation: an instance with a mask, a box-only instance (``segmentation`` None), or a crowd region
    (``iscrowd``)."""

    id: int
    image_id: int
    category_id: int
    iscrowd: bool
    segmentation: list[np.ndarray] | dict | None  # valid polygons (ndarray[2P] float64) or compressed RLE (counts
    # bytes), source pixels; None: no mask
    box: np.ndarray  # float32 [4] (x1, y1, x2, y2) clipped to the image: the mask's extent, else the json bbox's
    bbox: list[float] | None  # the json's [x, y, w, h] as given, when it has one
    area: float | None  # the json's area, when it is a number


@dataclass(frozen=True)
class CocoData:
    """A checked COCO instances json (``read_coco``): entries in json order, without those that were skipped."""

    name: str  # how messages name it: the file, or "the COCO dataset" for a dict
    path: Path | None  # the file it was read from; None for a dict
    images: list[CocoImage]
    categories: list[CocoCategory]
    annotations: list[CocoAnnotation]
    skipped: dict[str, int]  # annotations left out (without a usable mask or box): how many for each reason

    def skipped_note(self) -> str | None:
        """One line on the skipped annotations, or None when there are none."""
        if not self.skipped:
            return None
        reasons = ", ".join(f"{n} with {why}" for why, n in sorted(self.skipped.items(), key=lambda kv: -kv[1]))
        return f"skipped {sum(self.skipped.values())} annotations without a usable mask or box ({reasons})"


def read_coco(source: Path | dict[str, Any], *, what: str = "annotations") -> CocoData:
    """Read and check a COCO instances json file (or its parsed dict, which is not modified) -> ``CocoData``, by the
    rules of the module docstring. ``UserError`` naming the file (as ``what`` when it cannot be read) and the entry.
    Masks are checked, not drawn: polygons stay polygons; RLEs become compressed RLEs."""
    if isinstance(source, dict):
        name, path, data = "the COCO dataset", None, source
        _check_layout(data, name)
    else:
        path = Path(source)
        name, data = str(path), load_coco_json(path, what=what)
    images = [_checked_image(image, i, name) for i, image in enumerate(data["images"])]
    categories = [_checked_category(category, i, name) for i, category in enumerate(data["categories"])]
    for kind, entries in (("image", images), ("category", categories)):
        seen: set[int] = set()
        for i, entry in enumerate(entries):
            if entry.id in seen:
                raise UserError(f"{name}: {_entry_name(kind, i, entry.id)} repeats {kind} id {entry.id}")
            seen.add(entry.id)
    category_ids = {c.id for c in categories}
    images = [_with_verified_labels(image, raw, i, category_ids, name)
              for i, (image, raw) in enumerate(zip(images, data["images"]))]  # fmt: skip

    size_of = {image.id: (image.height, image.width) for image in images}
    raw_annotations = data.get("annotations", [])
    taken = [a["id"] for a in raw_annotations if isinstance(a, dict) and is_integer(a.get("id"))]
    next_id = max(taken, default=0) + 1
    used_ids: set[int] = set()
    annotations, skipped = [], Counter()
    for i, ann in enumerate(raw_annotations):
        label = f"{name}: {_entry_name('annotation', i, ann.get('id') if isinstance(ann, dict) else None)}"
        checked = _checked_annotation(ann, label=label, size_of=size_of, category_ids=category_ids)
        if isinstance(checked, str):
            skipped[checked] += 1
            continue
        ann_id = int(ann["id"]) if is_integer(ann.get("id")) and int(ann["id"]) not in used_ids else None
        if ann_id is None:
            ann_id, next_id = next_id, next_id + 1
        used_ids.add(ann_id)
        annotations.append(CocoAnnotation(id=ann_id, **checked))
    return CocoData(name=name, path=path, images=images, categories=categories, annotations=annotations,
                    skipped=dict(skipped))  # fmt: skip


def _entry_name(kind: str, index: int, entry_id: Any) -> str:
    return f"{kind} #{index}" + (f" (id {entry_id})" if entry_id is not None else "")


def is_integer(value: Any) -> bool:
    """A json value that is an integer (numpy's included, for dicts made in Python), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A json value that is a finite real number (numpy's included), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and bool(np.isfinite(value))


def is_box(value: Any) -> bool:
    """A json value that is a COCO box: ``[x, y, width, height]`` of finite numbers."""
    return isinstance(value, list | tuple) and len(value) == 4 and all(map(is_number, value))


def _checked_image(image: Any, index: int, name: str) -> CocoImage:
    where = f"{name}: {_entry_name('image', index, image.get('id') if isinstance(image, dict) else None)}"
    if not isinstance(image, dict):
        raise UserError(f"{where} is not an object")
    missing = [k for k in ("id", "file_name", "width", "height") if k not in image]
    if missing:
        raise UserError(f"{where} lacks {', '.join(missing)}")
    if not is_integer(image["id"]) or not isinstance(image["file_name"], str) or not image["file_name"]:
        raise UserError(f"{where} needs an integer 'id' and a non-empty 'file_name'")
    if not all(is_integer(image[k]) and image[k] > 0 for k in ("width", "height")):
        raise UserError(f"{where} needs positive integer 'width' and 'height'")
    return CocoImage(id=int(image["id"]), file_name=image["file_name"], height=int(image["height"]),
                     width=int(image["width"]), verified={})  # fmt: skip


def _checked_category(category: Any, index: int, name: str) -> CocoCategory:
    category_id = category.get("id") if isinstance(category, dict) else None
    if not isinstance(category, dict) or not is_integer(category_id) or "name" not in category:
        raise UserError(f"{name}: {_entry_name('category', index, category_id)} needs an integer 'id' and a 'name'")
    mid = category.get("mid")
    return CocoCategory(id=int(category_id), name=str(category["name"]), mid=mid if isinstance(mid, str) else None)


def _with_verified_labels(image: CocoImage, raw: dict, index: int, category_ids: set[int], name: str) -> CocoImage:
    """``image`` with the verified labels (``VERIFIED_LABEL_KEYS``) that its json entry carries, checked."""
    verified = {}
    for key in VERIFIED_LABEL_KEYS:
        if key not in raw:
            continue
        where = f"{name}: {_entry_name('image', index, image.id)}"
        ids = raw[key]
        if not isinstance(ids, list) or not all(is_integer(c) for c in ids):
            raise UserError(f"{where}: '{key}' must be a list of category ids")
        unknown = [c for c in ids if c not in category_ids]
        if unknown:
            raise UserError(f"{where}: '{key}' names category ids {unknown} that are not in categories")
        verified[key] = [int(c) for c in ids]
    return CocoImage(id=image.id, file_name=image.file_name, height=image.height, width=image.width,
                     verified=verified) if verified else image  # fmt: skip


def _checked_annotation(
    ann: Any, *, label: str, size_of: dict[int, tuple[int, int]], category_ids: set[int]
) -> dict[str, Any] | str:
    """One json annotation -> the fields of its ``CocoAnnotation`` (all but ``id``), or why it is skipped (a str).
    ``UserError`` (prefixed with ``label``) for what breaks the format."""
    if not isinstance(ann, dict):
        raise UserError(f"{label} is not an object")
    missing = [k for k in ("image_id", "category_id") if k not in ann]
    if missing:
        raise UserError(f"{label} lacks {', '.join(missing)}")
    if not is_integer(ann["image_id"]) or ann["image_id"] not in size_of:
        raise UserError(f"{label} refers to image_id {ann['image_id']!r}, which is not in images")
    if not is_integer(ann["category_id"]) or ann["category_id"] not in category_ids:
        raise UserError(f"{label} refers to category_id {ann['category_id']!r}, which is not in categories")
    iscrowd = ann.get("iscrowd", 0)
    if iscrowd not in (0, 1):  # also True / False
        raise UserError(f"{label} has iscrowd {iscrowd!r} (expected 0, 1 or a bool)")
    bbox = ann.get("bbox")
    if bbox is not None and not is_box(bbox):
        raise UserError(f"{label} has bbox {bbox!r}, expected [x, y, width, height]")
    height, width = size_of[ann["image_id"]]
    segmentation, why = None, "a box-only instance without a usable bbox"
    if ann.get("isbbox") is not True:
        try:
            segmentation, why = _parse_segmentation(ann.get("segmentation"), height, width)
        except ValueError as e:
            raise UserError(f"{label}: {e}") from None
    if segmentation is not None:
        box = segmentation_box(segmentation, height, width)
    else:
        box = _bbox_box(bbox, height, width)
        if box is None:
            return why if bbox is None or ann.get("isbbox") is True else f"{why} and a bbox outside the image"
    return {
        "image_id": int(ann["image_id"]),
        "category_id": int(ann["category_id"]),
        "iscrowd": bool(iscrowd),
        "segmentation": segmentation,
        "box": box,
        "bbox": None if bbox is None else [float(v) for v in bbox],
        "area": float(ann["area"]) if is_number(ann.get("area")) else None,
    }


def _parse_segmentation(segmentation: Any, height: int, width: int) -> tuple[list[np.ndarray] | dict | None, str]:
    """A json ``segmentation`` -> (valid polygons or compressed RLE, "") or (None, why it has no usable mask).

    Raises ``ValueError`` for values that break the format (wrong types, RLE of another size).
    """
    if isinstance(segmentation, dict):
        rle = rle_to_compressed(segmentation, height, width)
        try:
            area = rle_area(rle)
        except (TypeError, ValueError) as e:
            raise ValueError(f"unreadable RLE: {e}") from None
        return (rle, "") if area > 0 else (None, "empty mask")
    if isinstance(segmentation, list):
        if not segmentation:
            return None, "no segmentation"
        polygons = []
        for polygon in segmentation:
            try:
                if not isinstance(polygon, list):
                    raise TypeError
                array = np.asarray(polygon, dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError("a polygon must be a list of numbers [x1, y1, x2, y2, ...]") from None
            if is_valid_polygon(array):
                polygons.append(array)
        if not polygons:
            return None, "polygons of fewer than 3 points"
        if sum(polygon_area(p) for p in polygons) <= 0.0:
            return None, "zero area"
        return polygons, ""
    if segmentation is None:
        return None, "no segmentation"
    raise ValueError(f"segmentation must be polygons (a list) or RLE (a dict), got {type(segmentation).__name__}")


def _bbox_box(bbox: list[float] | None, height: int, width: int) -> np.ndarray | None:
    """A json ``[x, y, w, h]`` -> (x1, y1, x2, y2) clipped to the image, ndarray[4] float32; None when it has no area
    inside the image."""
    if bbox is None:
        return None
    x, y, w, h = (float(v) for v in bbox)
    box = np.clip(np.array([x, y, x + w, y + h]), 0, [width, height, width, height]).astype(np.float32)
    return box if box[2] > box[0] and box[3] > box[1] else None


@dataclass(frozen=True)
class _ImageRecord:
    """One image's annotations, ready for ``__getitem__``."""

    image_id: int
    file_name: str
    height: int
    width: int
    labels: np.ndarray  # int64 [G], 1..K
    segmentations: list  # G entries: list of polygons (ndarray[2P] float64), compressed RLE (counts bytes), or None
    boxes: np.ndarray  # float32 [G, 4] xyxy, source pixels: the box of each box-only instance (0 for the others)
    has_mask: np.ndarray  # bool [G]
    crowd_boxes: np.ndarray  # float32 [C, 4] xyxy, source pixels


class CocoDataset(torch.utils.data.Dataset):
    """A COCO instances json as a torch Dataset of (image, target) pairs; images are decoded in ``__getitem__``.

    ``dataset[i]`` or ``dataset[i, seed]`` -> (image, target):

    - image: Tensor[3, H, W] uint8 RGB, after the transform.
    - target["boxes"]: Tensor[G, 4] float32 (x1, y1, x2, y2), absolute pixels of the returned image, tight around
      each mask's pixels.
    - target["labels"]: Tensor[G] int64 in 1..K.
    - target["masks"]: Tensor[G, H, W] uint8 (0/1); all 0 for a box-only instance.
    - target["has_mask"]: Tensor[G] bool, False for a box-only instance (``"isbbox": true`` in the json).
    - target["crowd_boxes"]: Tensor[C, 4] float32 xyxy, the iscrowd regions (to ignore in training).
    - target["image_id"]: int, the json's id; target["orig_size"]: (H0, W0), the image's size before the transform.

    The transform gets ``np.random.default_rng(seed)``; ``dataset[i]`` uses seed ``i``, so every sample is a pure
    function of (index, seed). Instances whose mask is empty after the transform are dropped; images without
    instances are kept (G = 0).

    ``category_ids``: use exactly this mapping (label k is category ``category_ids[k - 1]``), e.g. the training
    set's or a checkpoint's, and skip annotations of other categories with one note.
    """

    def __init__(
        self,
        json_path: Path,
        images_dir: Path | None = None,
        *,
        transform: Callable | None = None,
        category_ids: list[int] | None = None,
    ) -> None:
        self.json_path = Path(json_path)
        self.transform = transform
        coco = read_coco(self.json_path)
        if coco.skipped:
            logger.warning("%s: %s", self.json_path, coco.skipped_note())
        names = {c.id: c.name for c in coco.categories}
        self.categories: dict[int, str] = names  # every category of the json, classes or not: id -> name

        if category_ids is None:
            used = {a.category_id for a in coco.annotations if not a.iscrowd}
            category_ids = sorted(used)
            dropped = [f"{cid} {names[cid]!r}" for cid in sorted(names) if cid not in used]
            if dropped:
                logger.warning(
                    "%s: dropped %d categor%s without instances (no usable non-crowd annotation): %s",
                    self.json_path,
                    len(dropped),
                    "y" if len(dropped) == 1 else "ies",
                    ", ".join(dropped),
                )
        else:
            category_ids = [int(c) for c in category_ids]
            unknown = [c for c in category_ids if c not in names]
            if unknown:
                raise UserError(
                    f"{self.json_path} has no categories with ids {unknown} of the given class mapping "
                    f"(its categories: {sorted(names)})"
                )
            if len(set(category_ids)) != len(category_ids):
                raise UserError(f"the class mapping repeats category ids: {category_ids}")
        self.category_ids: list[int] = category_ids
        self.class_names: list[str] = [names[c] for c in category_ids]

        if images_dir is None:
            self.images_dir = find_images_dir(self.json_path, [im.file_name for im in coco.images])
        else:
            self.images_dir = checked_images_dir(images_dir)
        self._check_files_exist(coco.images)

        self._records = self._build_records(coco)
        self.image_ids: list[int] = [r.image_id for r in self._records]

    def _check_files_exist(self, images: list[CocoImage]) -> None:
        missing = [im.file_name for im in images if not os.path.isfile(self.images_dir / im.file_name)]
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise UserError(
                f"{len(missing)} of the {len(images)} images of {self.json_path} are missing from {self.images_dir}: "
                f"{shown}"
            )

    def _build_records(self, coco: CocoData) -> list[_ImageRecord]:
        label_of = {cid: k + 1 for k, cid in enumerate(self.category_ids)}
        # image id -> (labels, segmentations, boxes of box-only instances or None, crowd boxes)
        per_image: dict[int, tuple[list[int], list, list[np.ndarray | None], list[np.ndarray]]] = {
            im.id: ([], [], [], []) for im in coco.images
        }
        other_categories: Counter[int] = Counter()
        for ann in coco.annotations:
            if ann.category_id not in label_of:
                other_categories[ann.category_id] += 1
                continue
            labels, segmentations, boxes, crowd_boxes = per_image[ann.image_id]
            if ann.iscrowd:
                crowd_boxes.append(ann.box)
            else:
                labels.append(label_of[ann.category_id])
                segmentations.append(ann.segmentation)
                boxes.append(ann.box if ann.segmentation is None else None)
        if other_categories:
            logger.warning(
                "%s: skipped %d annotations of categories outside the class mapping (ids %s)",
                self.json_path,
                sum(other_categories.values()),
                ", ".join(str(c) for c in sorted(other_categories)),
            )
        records = []
        for im in coco.images:
            labels, segmentations, boxes, crowd_boxes = per_image[im.id]
            records.append(
                _ImageRecord(
                    image_id=im.id,
                    file_name=im.file_name,
                    height=im.height,
                    width=im.width,
                    labels=np.asarray(labels, dtype=np.int64),
                    segmentations=segmentations,
                    boxes=np.asarray([np.zeros(4) if b is None else b for b in boxes], np.float32).reshape(-1, 4),
                    has_mask=np.array([b is None for b in boxes], dtype=bool),
                    crowd_boxes=np.asarray(crowd_boxes, dtype=np.float32).reshape(-1, 4),
                )
            )
        return records

    # ----------------------------------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self._records)

    def image_path(self, index: int) -> Path:
        return self.images_dir / self._records[index].file_name

    def unreadable_images(self, *, progress: bool = False) -> list[str]:
        """Check every image's header (cheap: no pixel is decoded) -> one "path: reason" line per image that cannot be
        opened, whose size differs from the json's, or that has more pixels than ``read_image`` allows. A file whose
        pixel data is damaged past its header is found only when it is decoded."""
        from tqdm import tqdm

        problems = []
        for record in tqdm(self._records, desc="check images", unit="img", leave=False,
                           disable=not progress or len(self._records) < 1000):  # fmt: skip
            path = self.images_dir / record.file_name
            try:
                width, height = image_size(path)
                check_pixels(path, width, height, DEFAULT_MAX_PIXELS)
            except UserError as e:
                problems.append(str(e))
                continue
            if (width, height) != (record.width, record.height):
                problems.append(_size_mismatch(path, (width, height), self.json_path, (record.width, record.height)))
        return problems

    def aspect_ratios(self) -> list[float]:
        """Width / height of every image, from the json (no decoding)."""
        return [r.width / r.height for r in self._records]

    def num_instances(self, index: int) -> int:
        """Non-crowd instances of image ``index`` as annotated (before any transform)."""
        return len(self._records[index].labels)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, dict]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index = index % len(self)
        record = self._records[index]
        path = self.images_dir / record.file_name
        image = read_image(path)
        if image.shape[:2] != (record.height, record.width):
            raise UserError(
                _size_mismatch(path, (image.shape[1], image.shape[0]), self.json_path, (record.width, record.height))
            )
        target = {
            "masks": LazyMasks(record.segmentations, source_size=(record.height, record.width)),
            "labels": record.labels,
            "boxes": record.boxes,
            "has_mask": record.has_mask,
            "crowd_boxes": record.crowd_boxes,
        }
        if self.transform is not None:
            rng = np.random.default_rng(index if seed is None else seed)
            image, target = self.transform(image, target, rng)
        target = finish_target(image, target)
        image_tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))  # (H, W, 3) -> (3, H, W)
        return image_tensor, {
            "boxes": torch.from_numpy(target["boxes"]),
            "labels": torch.from_numpy(np.asarray(target["labels"], dtype=np.int64)),
            "masks": torch.from_numpy(target["masks"]),
            "has_mask": torch.from_numpy(np.asarray(target["has_mask"], dtype=bool)),
            "crowd_boxes": torch.from_numpy(np.ascontiguousarray(target["crowd_boxes"], dtype=np.float32)),
            "image_id": record.image_id,
            "orig_size": (record.height, record.width),
        }

    def __repr__(self) -> str:
        return f"CocoDataset({self.json_path}, {len(self)} images, {len(self.class_names)} classes)"


def _size_mismatch(path: Path, size: tuple[int, int], json_path: Path, expected: tuple[int, int]) -> str:
    return f"{path} is {size[0]}x{size[1]} pixels but {json_path} says {expected[0]}x{expected[1]} (width x height)"

