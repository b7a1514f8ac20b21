"""YOLO segmentation labels -> COCO instances dataset (OUTPUT/annotations.json and OUTPUT/images/).

A YOLO-seg label file ``labels/<name>.txt`` belongs to the image ``images/<name>.<ext>`` and has one line per
instance: ``class x1 y1 x2 y2 ... xn yn``, the class an index into the names list and the polygon normalised by
the image width and height.

Input: the dataset folder holding ``images/`` and ``labels/`` (split subfolders such as ``train2017/`` are kept),
or a labels folder, whose images are found by replacing its last ``labels`` path component with ``images`` (or
beside the labels, darknet style, when the path has no ``labels`` component); ``images_dir`` overrides that.

Names: ``names_file`` (one name per line, or a YOLO ``data.yaml`` with ``names:`` as a list or an index -> name
map); without it, a ``data.yaml`` or ``dataset.yaml`` in the dataset folder, or ``classes.txt`` beside the labels;
otherwise the 80 COCO names in their usual order. With the COCO names the categories get the official COCO ids
(``COCO_CATEGORIES``), so results compare with COCO's; with other names, ids 1..K in the names' order. All
categories of the names list are written, used or not.

Every image under the images folder is written, with its instances or, without a label file, as an image
without objects (the YOLO convention; such images teach background). Skipped items are reported as
``FILE:LINE: reason``: box-only lines (detection labels, not segmentation), polygons of fewer than 3 points, an
odd number of coordinates, values that are not numbers, unknown class ids, polygons outside the image; and, as
``FILE: reason``, label files whose image is missing or unreadable. Polygons partly outside the image are clipped.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from maskrcnn.data.coco_classes import COCO_CATEGORIES
from maskrcnn.data.convert.common import add_image, instance_from_polygons, write_coco
from maskrcnn.data.convert.report import ConvertReport
from maskrcnn.data.images import IMAGE_SUFFIXES, checked_images_dir, image_size
from maskrcnn.errors import ArgumentError, UserError
from maskrcnn.io import output_folder

NAMES_FILES = ("data.yaml", "dataset.yaml")
CLASSES_TXT = "classes.txt"


def locate_folders(input: Path, images_dir: Path | None = None) -> tuple[Path, Path]:
    """(labels folder, images folder) of a YOLO dataset given as its folder or its labels folder."""
    input = Path(input)
    if not input.exists():
        raise UserError(f"input not found: {input}")
    if not input.is_dir():
        raise UserError(f"yolo-seg input must be a folder (the dataset or its labels folder), not the file {input}")
    if (input / "labels").is_dir():
        labels_root, images_root = input / "labels", input / "images"
    else:
        labels_root = input
        parts = list(input.parts)
        if "labels" in parts:
            at = len(parts) - 1 - parts[::-1].index("labels")
            parts[at] = "images"
            images_root = Path(*parts)
        else:
            images_root = input
    if images_dir is not None:
        return labels_root, checked_images_dir(images_dir)
    if not images_root.is_dir():
        raise ArgumentError(
            "images_dir", f"images folder not found: {images_root} (the images of {labels_root}; give it as {{arg}})"
        )
    return labels_root, images_root


def read_names(path: Path) -> list[str]:
    """Class names from a text file (one per line, blank lines ignored) or a YOLO yaml (``names:`` list or map)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read names file {path}: {e}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise UserError(f"{path} is not valid yaml: {e}") from None
        names: Any = data.get("names") if isinstance(data, dict) else None
        if isinstance(names, dict):
            if sorted(names) != list(range(len(names))):
                raise UserError(f"{path}: 'names' must map the class ids 0..{len(names) - 1} to names")
            names = [names[i] for i in range(len(names))]
        if not isinstance(names, list):
            raise UserError(f"{path} has no 'names:' list of class names")
        names = [str(n).strip() for n in names]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names or not all(names):
        raise UserError(f"{path}: no class names (or an empty one)")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UserError(f"{path}: class names repeat: {', '.join(repeated)}")
    return names


def _find_names_file(input: Path, labels_root: Path) -> Path | None:
    for folder in (Path(input), labels_root.parent):
        for name in NAMES_FILES:
            if (folder / name).is_file():
                return folder / name
    for folder in (labels_root, labels_root.parent):
        if (folder / CLASSES_TXT).is_file():
            return folder / CLASSES_TXT
    return None


def _visible_files(root: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in suffixes
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def parse_line(line: str, *, num_classes: int, width: int, height: int) -> tuple[int, dict[str, Any]] | str:
    """One label line -> (class index, COCO fields), or the reason it is skipped."""
    tokens = line.split()
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        bad = next(t for t in tokens if not _is_float(t))
        return f"not a number: {bad!r}"
    if not all(math.isfinite(v) for v in values):
        return "not a finite number"
    class_value, coordinates = values[0], values[1:]
    if class_value != int(class_value):
        return f"class id {tokens[0]!r} is not an integer"
    if len(coordinates) == 4:
        return "box-only line (YOLO detection label), not a segmentation polygon"
    if len(coordinates) % 2:
        return f"odd number of coordinates ({len(coordinates)})"
    if len(coordinates) < 6:
        points = len(coordinates) // 2
        return f"polygon has {points} point{'s' if points != 1 else ''} (need 3)"
    class_index = int(class_value)
    if not 0 <= class_index < num_classes:
        return f"unknown class id {class_index} (the names list has {num_classes} classes, ids 0..{num_classes - 1})"
    polygon = np.array(coordinates, dtype=np.float64).reshape(-1, 2) * [width, height]  # (P, 2) normalised -> pixels
    fields, why = instance_from_polygons([polygon], width, height)
    return (class_index, fields) if fields is not None else why


def _is_float(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def convert_yolo_seg(
    input: Path, output_dir: Path, *, images_dir: Path | None = None, names_file: Path | None = None
) -> ConvertReport:
    """Convert a YOLO-seg dataset into ``output_dir/annotations.json`` + ``output_dir/images/``.

    Bad lines and label files without an image are skipped and listed in the report's ``skipped``.
    """
    input = Path(input)
    labels_root, images_root = locate_folders(input, images_dir)
    if names_file is None:
        names_file = _find_names_file(input, labels_root)
    if names_file is None:
        names = [name for _, name in COCO_CATEGORIES]
        category_ids = [cid for cid, _ in COCO_CATEGORIES]
    else:
        names = read_names(names_file)
        category_ids = list(range(1, len(names) + 1))
    output_dir = output_folder(output_dir)
    report = ConvertReport(output=output_dir)
    shown_root = input.resolve().parent

    def shown(path: Path) -> str:
        resolved = path.resolve()
        return str(resolved.relative_to(shown_root)) if resolved.is_relative_to(shown_root) else str(path)

    label_files = {
        p.relative_to(labels_root).with_suffix(""): p
        for p in _visible_files(labels_root, (".txt",))
        if p.name != CLASSES_TXT
    }
    image_files: dict[Path, Path] = {}
    for p in _visible_files(images_root, IMAGE_SUFFIXES):
        image_files.setdefault(p.relative_to(images_root).with_suffix(""), p)
    if not label_files and not image_files:
        raise UserError(f"no YOLO label files (.txt) or images found under {labels_root}")

    for stem, label_file in label_files.items():
        if stem not in image_files:
            report.skipped.append(f"{shown(label_file)}: no image for it in {shown(images_root / stem.parent)}")

    images, annotations = [], []
    for stem, image_file in sorted(image_files.items()):
        label_file = label_files.get(stem)
        try:
            width, height = image_size(image_file)
            lines = _read_lines(label_file) if label_file is not None else []
        except UserError as e:
            report.skipped.append(f"{shown(label_file or image_file)}: {e}")
            continue
        output_name = "images/" + image_file.relative_to(images_root).as_posix()
        image_id = add_image(images, image_file, output_dir, output_name, width=width, height=height)
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            parsed = parse_line(line, num_classes=len(names), width=width, height=height)
            if isinstance(parsed, str):
                report.skipped.append(f"{shown(label_file)}:{number}: {parsed}")
                continue
            class_index, fields = parsed
            annotations.append({"image_id": image_id, "category_id": category_ids[class_index], **fields})

    write_coco(
        output_dir,
        images=images,
        annotations=annotations,
        categories=list(zip(category_ids, names, strict=True)),
        description=f"converted from YOLO-seg labels {labels_root} by maskrcnn convert",
    )
    report.images, report.annotations, report.categories = len(images), len(annotations), len(names)
    return report


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read label file {path}: {e}") from None
