"""VGG Image Annotator (VIA) json -> COCO instances dataset (OUTPUT/annotations.json and OUTPUT/images/).

Accepted input: a VIA 1.x / 2.x annotation export (an object keyed by ``filename + size``, each entry with
``filename`` and ``regions`` as a list or as an object keyed by region index), or a VIA 2 project file (the same
entries under ``_via_img_metadata``); or a folder holding ``via_region_data.json`` (or exactly one ``.json``).

Shapes: ``polygon`` and ``polyline`` (closed), ``rect``, ``circle`` and ``ellipse`` (as 64-point polygons) become
polygons, clipped to the image; ``point`` and unknown shapes are skipped.

Class of a region, by one rule:
1. If regions carry attributes, the class attribute is the only attribute used in the file, or else the first of
   ``class``, ``label``, ``category``, ``name``, ``type`` that is used; its value is the class name (a text value,
   or the one option ticked in a checkbox / dropdown value). A region without a value there is skipped.
2. Without region attributes, every region is one class named after the dataset: the json's folder name, or its
   parent's name when the folder is a split (``train``, ``val``, ``test``, ...). So ``balloon/train/
   via_region_data.json`` gives the class ``balloon``.
Category ids are 1..K in the alphabetical order of the class names.

Each image is looked up as ``images_dir/filename``, else in the first of the json's folder and its ``images/`` and
``JPEGImages/`` subfolders that holds it (``data.images.image_folders``); its size comes from the file header (VIA does not store it). Every image of the json that is found is written, with or
without regions (images without objects teach background). Skipped items are reported as
``FILE: 'KEY' region N: reason`` (or ``FILE: 'KEY': reason`` for a whole image).
"""

from __future__ import annotations

import math
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from maskrcnn.data.convert.common import add_image, instance_from_polygons, write_coco
from maskrcnn.data.convert.report import ConvertReport
from maskrcnn.data.images import checked_images_dir, image_folders, image_size
from maskrcnn.errors import UserError
from maskrcnn.io import output_folder, read_json

SPLIT_NAMES = frozenset({"train", "training", "val", "valid", "validation", "test", "testing", "trainval", "dev"})
CLASS_ATTRIBUTES = ("class", "label", "category", "name", "type")
ELLIPSE_POINTS = 64


def find_via_json(input: Path) -> Path:
    """The VIA json named by ``input``: the file itself, or in a folder ``via_region_data.json`` or its only json."""
    input = Path(input)
    if input.is_file():
        return input
    if input.is_dir():
        if (input / "via_region_data.json").is_file():
            return input / "via_region_data.json"
        candidates = sorted(input.glob("*.json"))
        if len(candidates) == 1:
            return candidates[0]
        raise UserError(
            f"no VIA json in {input}: expected via_region_data.json"
            + (f" or a single .json file, found {len(candidates)}" if candidates else "")
        )
    raise UserError(f"input not found: {input}")


def dataset_class_name(json_path: Path) -> str:
    """The class of a VIA file without region attributes: its folder's name, or the parent's for a split folder."""
    folder = Path(json_path).resolve().parent
    if folder.name.lower() in SPLIT_NAMES and folder.parent.name:
        folder = folder.parent
    return folder.name or "object"


def _read_entries(json_path: Path) -> dict[str, Any]:
    data = read_json(json_path, what="VIA json")
    if isinstance(data, dict) and isinstance(data.get("_via_img_metadata"), dict):
        return data["_via_img_metadata"]  # VIA 2 project file
    if isinstance(data, dict) and {"project", "file", "metadata"} <= data.keys():
        raise UserError(f"{json_path} is a VIA 3 project; export its annotations from VIA 2 (json) to convert them")
    if not isinstance(data, dict) or not all(isinstance(v, dict) and "filename" in v for v in data.values()):
        raise UserError(
            f"{json_path} is not a VIA annotation file: expected an object of entries with 'filename' and 'regions'"
        )
    return data


def _regions(entry: dict[str, Any]) -> list[tuple[str, Any]]:
    """(index, region) pairs of an entry, whether ``regions`` is a list or an object keyed by index."""
    regions = entry.get("regions") or []
    if isinstance(regions, dict):
        return [(str(k), v) for k, v in regions.items()]
    if isinstance(regions, list):
        return [(str(i), r) for i, r in enumerate(regions)]
    return []


def _attribute_value(value: Any) -> str | None:
    """A region attribute's class name: a non-empty text, or the single ticked option of a checkbox object."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, dict):
        ticked = [str(k).strip() for k, v in value.items() if v]
        return ticked[0] if len(ticked) == 1 and ticked[0] else None
    return None


def _class_attribute(entries: dict[str, Any]) -> str | None:
    used: list[str] = []
    for entry in entries.values():
        for _, region in _regions(entry):
            attributes = region.get("region_attributes") if isinstance(region, dict) else None
            for key, value in (attributes or {}).items():
                if key not in used and _attribute_value(value) is not None:
                    used.append(key)
    if len(used) <= 1:
        return used[0] if used else None
    for preferred in CLASS_ATTRIBUTES:
        for key in used:
            if key.lower() == preferred:
                return key
    raise UserError(
        f"cannot tell which region attribute holds the class: {', '.join(repr(k) for k in used)}; "
        f"name it one of {', '.join(CLASS_ATTRIBUTES)}"
    )


def _number(attributes: dict, key: str) -> float:
    value = attributes[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key} is {value!r}")
    return float(value)


def _ellipse(cx: float, cy: float, rx: float, ry: float, theta: float = 0.0) -> np.ndarray:
    angles = 2 * math.pi * np.arange(ELLIPSE_POINTS) / ELLIPSE_POINTS
    x, y = rx * np.cos(angles), ry * np.sin(angles)
    c, s = math.cos(theta), math.sin(theta)
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)


def shape_to_polygon(shape: dict[str, Any]) -> np.ndarray:
    """VIA ``shape_attributes`` -> polygon ndarray[P, 2] in pixels. Raises ValueError with the reason."""
    kind = shape.get("name")
    try:
        if kind in ("polygon", "polyline"):
            xs, ys = shape["all_points_x"], shape["all_points_y"]
            if not isinstance(xs, list) or not isinstance(ys, list) or len(xs) != len(ys):
                raise ValueError("all_points_x and all_points_y differ in length")
            points = np.array([[float(x), float(y)] for x, y in zip(xs, ys, strict=True)], dtype=np.float64)
            if not np.isfinite(points).all():
                raise ValueError("a point is not a finite number")
            return points.reshape(-1, 2)
        if kind == "rect":
            x, y, w, h = (_number(shape, k) for k in ("x", "y", "width", "height"))
            return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float64)
        if kind == "circle":
            cx, cy, r = (_number(shape, k) for k in ("cx", "cy", "r"))
            return _ellipse(cx, cy, r, r)
        if kind == "ellipse":
            cx, cy, rx, ry = (_number(shape, k) for k in ("cx", "cy", "rx", "ry"))
            theta = _number(shape, "theta") if "theta" in shape else 0.0
            return _ellipse(cx, cy, rx, ry, theta)
    except KeyError as e:
        raise ValueError(f"{kind} lacks {e.args[0]}") from None
    except TypeError as e:
        raise ValueError(f"bad {kind} coordinates: {e}") from None
    raise ValueError(f"shape {kind!r} is not a region (need polygon, polyline, rect, circle or ellipse)")


def _output_name(file_name: str) -> str:
    relative = PurePosixPath(file_name.replace("\\", "/"))
    if relative.is_absolute() or ".." in relative.parts:
        relative = PurePosixPath(relative.name)
    return str(PurePosixPath("images") / relative)


def _convert_region(
    region: Any, class_attribute: str | None, default_class: str, width: int, height: int
) -> tuple[str, dict[str, Any]] | str:
    """One VIA region -> (class name, COCO fields), or the reason it is skipped."""
    if not isinstance(region, dict) or not isinstance(region.get("shape_attributes"), dict):
        return "no shape_attributes"
    if class_attribute is None:
        class_name = default_class
    else:
        attributes = region.get("region_attributes")
        class_name = _attribute_value(attributes.get(class_attribute)) if isinstance(attributes, dict) else None
        if class_name is None:
            return f"no class in region attribute {class_attribute!r}"
    try:
        polygon = shape_to_polygon(region["shape_attributes"])
    except ValueError as e:
        return str(e)
    fields, why = instance_from_polygons([polygon], width, height)
    return (class_name, fields) if fields is not None else why


def convert_via(input: Path, output_dir: Path, *, images_dir: Path | None = None) -> ConvertReport:
    """Convert a VIA json (or its folder) into ``output_dir/annotations.json`` + ``output_dir/images/``.

    Bad regions and missing images are skipped and listed in the report's ``skipped``; the rest converts. Raises
    ``UserError`` when no image at all could be used.
    """
    json_path = find_via_json(input)
    entries = _read_entries(json_path)
    folders = [checked_images_dir(images_dir)] if images_dir is not None else image_folders(json_path)
    output_dir = output_folder(output_dir)
    class_attribute = _class_attribute(entries)
    default_class = dataset_class_name(json_path)
    report = ConvertReport(output=output_dir)
    where = str(json_path)

    # Entries of the same file (VIA allows it) are merged, in the order the json lists them.
    by_file: dict[str, tuple[str, list[tuple[str, Any]]]] = {}
    for key, entry in entries.items():
        file_name = entry.get("filename")
        if not isinstance(file_name, str) or not file_name:
            report.skipped.append(f"{where}: {key!r}: no filename")
            continue
        by_file.setdefault(file_name, (key, []))[1].extend(_regions(entry))

    images, instances = [], []  # instances: (image_id, class name, COCO fields)
    for file_name, (key, regions) in by_file.items():
        source = next((folder / file_name for folder in folders if (folder / file_name).is_file()), None)
        lost = f" ({len(regions)} region{'s' if len(regions) != 1 else ''} skipped)" if regions else ""
        if source is None:
            looked = " or ".join(str(f) for f in folders)
            report.skipped.append(f"{where}: {key!r}: image {file_name!r} not found in {looked}{lost}")
            continue
        try:
            width, height = image_size(source)
        except UserError as e:
            report.skipped.append(f"{where}: {key!r}: {e}{lost}")
            continue
        image_id = add_image(images, source, output_dir, _output_name(file_name), width=width, height=height)
        for index, region in regions:
            converted = _convert_region(region, class_attribute, default_class, width, height)
            if isinstance(converted, str):
                report.skipped.append(f"{where}: {key!r} region {index}: {converted}")
            else:
                instances.append((image_id, *converted))

    if by_file and not images:  # converting nothing is not a success
        looked = " or ".join(str(f) for f in folders)
        raise UserError(f"none of the {len(by_file)} images of {json_path} could be used (looked in {looked}); "
                        f"first: {report.skipped[0]}")  # fmt: skip
    names = sorted({name for _, name, _ in instances} | ({default_class} if class_attribute is None else set()))
    category_of = {name: i + 1 for i, name in enumerate(names)}
    annotations = [
        {"image_id": image_id, "category_id": category_of[name], **fields} for image_id, name, fields in instances
    ]
    write_coco(
        output_dir,
        images=images,
        annotations=annotations,
        categories=[(category_of[name], name) for name in names],
        description=f"converted from VIA annotations {json_path} by maskrcnn convert",
    )
    report.images, report.annotations, report.categories = len(images), len(annotations), len(names)
    return report
