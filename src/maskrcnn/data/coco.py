"""COCO instances json: the one internal dataset format. Reading, validating, and serving training samples.

Shapes: H, W image size after the transform (H0, W0 as in the json); G instances; C crowd regions; K classes.

What is accepted: ``segmentation`` as polygons (several per instance), compressed RLE (``counts`` a string) or
uncompressed RLE (``counts`` a list of ints); ``iscrowd`` as int or bool; category ids in any order, with gaps.
Extra keys (car-parts' ``isbbox``, ``color``, ``metadata``) are ignored. The json's ``bbox`` is not used: boxes are
derived from the masks after the transform, so they always match the masks (some real jsons carry wrong boxes).

Classes: contiguous label k (1..K) stands for the json category id ``category_ids[k - 1]``. Unless a mapping is
given, the classes are the categories with at least one non-crowd annotation, sorted by id; the others (such as
car-parts' ``_background_``) are dropped with one logged note.

Crowd annotations (``iscrowd`` set) are not instances: their boxes come back as ``crowd_boxes``, regions the
trainer may ignore. Annotations without a usable mask (no segmentation, polygons of fewer than 3 points, zero area)
are skipped with one logged note that counts them.

Box-only instances: an annotation marked ``"isbbox": true`` (as ``maskrcnn openimages download`` writes an object
that has a box but no mask; its ``segmentation`` is only its box) is an instance with a box and no mask. Its box is
its json ``bbox``, it has ``has_mask`` False and an all-zero mask: it trains the RPN and the box head, not the
mask head.

Images resolve relative to ``images_dir``; by default the json's folder, else its ``images/`` or ``JPEGImages/``
subfolder, whichever holds the images (``find_images_dir``).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils

from maskrcnn.data.images import DEFAULT_MAX_PIXELS, check_pixels, image_size, read_image
from maskrcnn.data.transforms import LazyMasks, finish_target
from maskrcnn.errors import UserError

logger = logging.getLogger(__name__)

IMAGE_SUBFOLDERS = ("images", "JPEGImages")


def load_coco_json(path: Path) -> dict[str, Any]:
    """Read a COCO instances json and check its top-level layout -> the parsed dict.

    ``images`` and ``categories`` must be lists; ``annotations`` may be missing (an image-info file), and is then
    set to ``[]``. Raises ``UserError`` naming the file for a missing, unreadable or malformed file.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise UserError(f"annotations not found: {path}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid json: {e.msg} at line {e.lineno} column {e.colno}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise UserError(f"{path}: expected a COCO json object with 'images' and 'categories', got a {kind}")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise UserError(f"{path}: '{key}' is missing or not a list (is this a COCO instances json?)")
    annotations = data.setdefault("annotations", [])
    if not isinstance(annotations, list):
        raise UserError(f"{path}: 'annotations' is not a list")
    return data


def find_images_dir(json_path: Path, file_names: list[str]) -> Path:
    """The folder the images' ``file_name``s are relative to: the json's folder, else its ``images/`` or
    ``JPEGImages/`` subfolder, whichever holds the most of the first 20 images (ties go to the earlier).

    Raises ``UserError`` when none of them holds any of those images.
    """
    base = Path(json_path).parent
    candidates = [base] + [base / sub for sub in IMAGE_SUBFOLDERS]
    if not file_names:
        return base
    sample = file_names[:20]
    found = [sum(os.path.isfile(folder / name) for name in sample) for folder in candidates]
    best = max(range(len(candidates)), key=lambda i: (found[i], -i))
    if found[best] == 0:
        looked = ", ".join(str(c) for c in candidates)
        raise UserError(
            f"cannot find the images of {json_path} (e.g. {sample[0]!r}): looked in {looked}; "
            "give the images folder explicitly (--images)"
        )
    return candidates[best]


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


def _entry_name(kind: str, index: int, entry: Any) -> str:
    entry_id = entry.get("id") if isinstance(entry, dict) else None
    return f"{kind} #{index}" + (f" (id {entry_id})" if entry_id is not None else "")


def _check_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _polygon_area(polygon: np.ndarray) -> float:
    x, y = polygon[0::2], polygon[1::2]
    # shoelace: sum of x_i * y_(i+1) - x_(i+1) * y_i over the closed outline
    cross = float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1])) + float(x[-1] * y[0] - x[0] * y[-1])
    return 0.5 * abs(cross)


class _Malformed(Exception):
    """A segmentation that breaks the format (reported as a UserError with the annotation's name)."""


def _parse_segmentation(segmentation: Any, height: int, width: int) -> tuple[list[np.ndarray] | dict | None, str]:
    """A json ``segmentation`` -> (polygons or compressed RLE, "") or (None, why it has no usable mask).

    Raises ``_Malformed`` for values that break the format (wrong types, RLE of another size).
    """
    if isinstance(segmentation, dict):
        if "counts" not in segmentation or "size" not in segmentation:
            raise _Malformed("RLE segmentation needs 'size' and 'counts'")
        size = segmentation["size"]
        if size != [height, width]:
            raise _Malformed(f"RLE size {size} differs from the image size [{height}, {width}]")
        counts = segmentation["counts"]
        try:
            if isinstance(counts, list):
                rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
            elif isinstance(counts, str | bytes):
                rle = {"size": [height, width], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
            else:
                raise _Malformed(f"RLE counts must be a string or a list of ints, got {type(counts).__name__}")
            area = int(mask_utils.area(rle))
        except (TypeError, ValueError, UnicodeEncodeError) as e:
            raise _Malformed(f"unreadable RLE: {e}") from None
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
                raise _Malformed("a polygon must be a list of numbers [x1, y1, x2, y2, ...]") from None
            if len(array) >= 6 and len(array) % 2 == 0 and np.isfinite(array).all():
                polygons.append(array)
        if not polygons:
            return None, "polygons of fewer than 3 points"
        if sum(_polygon_area(p) for p in polygons) <= 0.0:
            return None, "zero area"
        return polygons, ""
    if segmentation is None:
        return None, "no segmentation"
    raise _Malformed(f"segmentation must be polygons (a list) or RLE (a dict), got {type(segmentation).__name__}")


def _segmentation_box(segmentation: list[np.ndarray] | dict, height: int, width: int) -> np.ndarray:
    """Box (x1, y1, x2, y2) around polygons or an RLE, clipped to the image -> ndarray[4] float32."""
    if isinstance(segmentation, dict):
        x, y, w, h = mask_utils.toBbox(segmentation)
        box = np.array([x, y, x + w, y + h], dtype=np.float64)
    else:
        xy = np.concatenate(segmentation).reshape(-1, 2)  # (P, 2)
        box = np.concatenate([xy.min(axis=0), xy.max(axis=0)])
    return np.clip(box, 0, [width, height, width, height]).astype(np.float32)


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
        data = load_coco_json(self.json_path)
        images = self._check_images(data["images"])
        categories = self._check_categories(data["categories"])
        annotations = self._check_annotations(data["annotations"], images, categories)

        if category_ids is None:
            used = {a["category_id"] for a in annotations if not a.get("iscrowd")}
            category_ids = sorted(used)
            dropped = [f"{cid} {categories[cid]!r}" for cid in sorted(categories) if cid not in used]
            if dropped:
                logger.warning(
                    "%s: dropped %d categor%s without instances (no non-crowd annotation): %s",
                    self.json_path,
                    len(dropped),
                    "y" if len(dropped) == 1 else "ies",
                    ", ".join(dropped),
                )
        else:
            category_ids = [int(c) for c in category_ids]
            unknown = [c for c in category_ids if c not in categories]
            if unknown:
                raise UserError(
                    f"{self.json_path} has no categories with ids {unknown} of the given class mapping "
                    f"(its categories: {sorted(categories)})"
                )
            if len(set(category_ids)) != len(category_ids):
                raise UserError(f"the class mapping repeats category ids: {category_ids}")
        self.category_ids: list[int] = category_ids
        self.class_names: list[str] = [categories[c] for c in category_ids]

        self.images_dir = Path(images_dir) if images_dir is not None else None
        if self.images_dir is None:
            self.images_dir = find_images_dir(self.json_path, [im["file_name"] for im in images])
        elif not self.images_dir.is_dir():
            raise UserError(f"images folder not found: {self.images_dir}")
        self._check_files_exist(images)

        self._records = self._build_records(images, annotations)
        self.image_ids: list[int] = [r.image_id for r in self._records]

    # ----------------------------------------------------------------------------------------- validation
    def _check_images(self, images: list) -> list[dict]:
        seen: set[int] = set()
        for i, image in enumerate(images):
            name = _entry_name("image", i, image)
            if not isinstance(image, dict):
                raise UserError(f"{self.json_path}: {name} is not an object")
            missing = [k for k in ("id", "file_name", "width", "height") if k not in image]
            if missing:
                raise UserError(f"{self.json_path}: {name} lacks {', '.join(missing)}")
            if not _check_int(image["id"]) or not isinstance(image["file_name"], str) or not image["file_name"]:
                raise UserError(f"{self.json_path}: {name} needs an integer 'id' and a non-empty 'file_name'")
            if not all(_check_int(image[k]) and image[k] > 0 for k in ("width", "height")):
                raise UserError(f"{self.json_path}: {name} needs positive integer 'width' and 'height'")
            if image["id"] in seen:
                raise UserError(f"{self.json_path}: {name} repeats image id {image['id']}")
            seen.add(image["id"])
        return images

    def _check_categories(self, categories: list) -> dict[int, str]:
        names: dict[int, str] = {}
        for i, category in enumerate(categories):
            name = _entry_name("category", i, category)
            if not isinstance(category, dict) or not _check_int(category.get("id")) or "name" not in category:
                raise UserError(f"{self.json_path}: {name} needs an integer 'id' and a 'name'")
            if category["id"] in names:
                raise UserError(f"{self.json_path}: {name} repeats category id {category['id']}")
            names[category["id"]] = str(category["name"])
        return names

    def _check_annotations(self, annotations: list, images: list[dict], categories: dict[int, str]) -> list[dict]:
        image_ids = {image["id"] for image in images}
        for i, ann in enumerate(annotations):
            name = _entry_name("annotation", i, ann)
            if not isinstance(ann, dict):
                raise UserError(f"{self.json_path}: {name} is not an object")
            missing = [k for k in ("image_id", "category_id") if k not in ann]
            if missing:
                raise UserError(f"{self.json_path}: {name} lacks {', '.join(missing)}")
            if ann["image_id"] not in image_ids:
                raise UserError(
                    f"{self.json_path}: {name} refers to image_id {ann['image_id']}, which is not in images"
                )
            if ann["category_id"] not in categories:
                raise UserError(
                    f"{self.json_path}: {name} refers to category_id {ann['category_id']}, which is not in categories"
                )
            if ann.get("iscrowd", 0) not in (0, 1):  # also True / False
                raise UserError(f"{self.json_path}: {name} has iscrowd {ann['iscrowd']!r} (expected 0, 1 or a bool)")
        return annotations

    def _check_files_exist(self, images: list[dict]) -> None:
        missing = [im["file_name"] for im in images if not os.path.isfile(self.images_dir / im["file_name"])]
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise UserError(
                f"{len(missing)} of the {len(images)} images of {self.json_path} are missing from {self.images_dir}: "
                f"{shown}"
            )

    def _build_records(self, images: list[dict], annotations: list[dict]) -> list[_ImageRecord]:
        label_of = {cid: k + 1 for k, cid in enumerate(self.category_ids)}
        size_of = {im["id"]: (im["height"], im["width"]) for im in images}
        per_image: dict[int, tuple[list[int], list, list[np.ndarray], list[np.ndarray | None]]] = {
            im["id"]: ([], [], [], []) for im in images
        }
        degenerate: Counter[str] = Counter()
        other_categories: Counter[int] = Counter()
        for i, ann in enumerate(annotations):
            if ann["category_id"] not in label_of:
                other_categories[ann["category_id"]] += 1
                continue
            height, width = size_of[ann["image_id"]]
            try:
                segmentation, why = _parse_segmentation(ann.get("segmentation"), height, width)
            except _Malformed as e:
                raise UserError(f"{self.json_path}: {_entry_name('annotation', i, ann)}: {e}") from None
            labels, segmentations, crowd_boxes, boxes = per_image[ann["image_id"]]
            if ann.get("iscrowd", 0):
                box = _crowd_box(segmentation, ann.get("bbox"), height, width)
                if box is None:
                    degenerate[why or "no area"] += 1
                else:
                    crowd_boxes.append(box)
            elif ann.get("isbbox") is True:
                box = _crowd_box(None, ann.get("bbox"), height, width)
                if box is None:
                    degenerate["a box-only instance without a usable bbox"] += 1
                else:
                    labels.append(label_of[ann["category_id"]])
                    segmentations.append(None)
                    boxes.append(box)
            elif segmentation is None:
                degenerate[why] += 1
            else:
                labels.append(label_of[ann["category_id"]])
                segmentations.append(segmentation)
                boxes.append(None)
        if degenerate:
            reasons = ", ".join(f"{n} with {why}" for why, n in degenerate.most_common())
            logger.warning(
                "%s: skipped %d annotations without a usable mask (%s)",
                self.json_path,
                sum(degenerate.values()),
                reasons,
            )
        if other_categories:
            logger.warning(
                "%s: skipped %d annotations of categories outside the class mapping (ids %s)",
                self.json_path,
                sum(other_categories.values()),
                ", ".join(str(c) for c in sorted(other_categories)),
            )
        records = []
        for im in images:
            labels, segmentations, crowd_boxes, boxes = per_image[im["id"]]
            records.append(
                _ImageRecord(
                    image_id=im["id"],
                    file_name=im["file_name"],
                    height=im["height"],
                    width=im["width"],
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


def _crowd_box(segmentation: list[np.ndarray] | dict | None, bbox: Any, height: int, width: int) -> np.ndarray | None:
    """Box (x1, y1, x2, y2) of a crowd region from its mask, else from its json ``bbox``; None when it has no area."""
    if segmentation is not None:
        box = _segmentation_box(segmentation, height, width)
    elif isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, int | float) for v in bbox):
        x, y, w, h = bbox
        box = np.clip(np.array([x, y, x + w, y + h]), 0, [width, height, width, height]).astype(np.float32)
    else:
        return None
    return box if box[2] > box[0] and box[3] > box[1] else None
