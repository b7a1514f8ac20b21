"""Stream the segmentation CSV, keep the rows of a few classes, and choose images deterministically.

The train CSV has 2.7M rows (about 400 MB); it is read line by line and never held whole. A line is parsed only
when it contains one of the wanted MIDs as a substring (a cheap test that never drops a wanted row, since the
LabelName column holds the MID verbatim); the exact LabelName is then checked on the parsed row.

Columns (by name, any order): ``MaskPath,ImageID,LabelName,BoxID,BoxXMin,BoxXMax,BoxYMin,BoxYMax,PredictedIoU,Clicks``.
The first four are required; the Box columns, when present, say which box of the box CSV the mask was drawn for
(``instances.match_masks_to_boxes``). The COCO box and area of a mask instance come from the mask itself.

Choosing images, with memory O(N) per class however long the CSV: every image gets the key
``blake2b(f"{seed}:{ImageID}")`` (16 bytes); for each class the N images with the smallest ``(key, ImageID)`` among
the images that have that class are chosen. A bounded sorted list per class keeps the N smallest seen so far; once
it is full its largest key only decreases, so an image pushed out never comes back. The choice depends on the seed
and the set of rows, not on their order. A second pass then keeps every wanted-class row of a chosen image.

>>> rows = filter_segmentation_csv(Path("validation-annotations-object-segmentation.csv"),
...                                labels=["/m/01yrx"], max_images_per_class=50, seed=0)
>>> rows[0]
MaskRow(image_id='0001eeaf4aed83f9', label='/m/01yrx', box_id='8ff7ac5d',
        mask_path='0001eeaf4aed83f9_m01yrx_8ff7ac5d.png', box=(0.0, 0.99, 0.21, 1.0))
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from maskrcnn.data.openimages.layout import safe_image_id, safe_mask_name
from maskrcnn.errors import UserError, check_at_least

COLUMNS = (
    "MaskPath", "ImageID", "LabelName", "BoxID", "BoxXMin", "BoxXMax", "BoxYMin", "BoxYMax", "PredictedIoU", "Clicks",
)  # fmt: skip
USED_COLUMNS = ("MaskPath", "ImageID", "LabelName", "BoxID")
BOX_COLUMNS = ("BoxXMin", "BoxXMax", "BoxYMin", "BoxYMax")
PREFILTER_MAX_LABELS = 16  # more labels than this: parse every line (a long regex alternation is slower)


class MaskRow(NamedTuple):
    """One instance: the image, its class MID, the box ID, the mask PNG's name inside the shard zip, and the box it
    was drawn for, (XMin, XMax, YMin, YMax) normalised to [0, 1] (None when the CSV has no usable Box columns)."""

    image_id: str
    label: str
    box_id: str
    mask_path: str
    box: tuple[float, float, float, float] | None = None


def image_key(seed: int, image_id: str) -> bytes:
    """The sort key that decides which images are chosen: 16 bytes of ``blake2b(f"{seed}:{image_id}")``."""
    return hashlib.blake2b(f"{seed}:{image_id}".encode(), digest_size=16).digest()


def read_header(it: Iterator[str], *, source: str, required: Iterable[str], kind: str) -> list[str]:
    """The header row of a CSV (the next line of ``it``), with every ``required`` column; ``UserError`` naming
    ``source`` otherwise (``kind`` says what the file should be, e.g. "segmentation CSV")."""
    header_line = next(it, None)
    if header_line is None:
        raise UserError(f"{source} is empty (expected an Open Images {kind} with a header row)")
    header = next(csv.reader([header_line]))
    missing = [c for c in required if c not in header]
    if missing:
        raise UserError(f"{source}: not an Open Images {kind} (no column {', '.join(missing)})")
    return header


def candidate_lines(it: Iterable[str], labels: frozenset[str] | None) -> Iterator[tuple[int, str]]:
    """(line number, line) of the lines after the header that may hold one of ``labels`` (every line when None or
    when there are many): a substring test, which never drops a line whose LabelName is one of them."""
    if labels is None or len(labels) > PREFILTER_MAX_LABELS:
        return enumerate(it, 2)
    if len(labels) == 1:
        (only,) = labels
        return ((n, line) for n, line in enumerate(it, 2) if only in line)
    search = re.compile("|".join(re.escape(label) for label in sorted(labels))).search
    return ((n, line) for n, line in enumerate(it, 2) if search(line))


def scan_rows(
    lines: Iterable[str], *, labels: Iterable[str] | None, source: str, problems: list[str] | None = None
) -> Iterator[MaskRow]:
    """Rows of a segmentation CSV (``lines`` includes the header) whose LabelName is one of ``labels`` (all rows
    when None). With a few labels, only lines containing one of them are parsed.

    Rows that cannot be used (too few columns, an ImageID or MaskPath that is not a plain file name) are left out
    and, when ``problems`` is given, described there as ``"{source}:{line}: why"``.
    """
    labels = None if labels is None else frozenset(labels)
    it = iter(lines)
    header = read_header(it, source=source, required=USED_COLUMNS, kind="segmentation CSV")
    i_mask, i_image, i_label, i_box = (header.index(c) for c in USED_COLUMNS)
    box_columns = [header.index(c) for c in BOX_COLUMNS] if all(c in header for c in BOX_COLUMNS) else None
    width = max(i_mask, i_image, i_label, i_box, *(box_columns or ())) + 1
    if labels is not None and not labels:
        return
    for lineno, line in candidate_lines(it, labels):
        row = next(csv.reader([line]), [])
        if len(row) < width:
            if problems is not None and line.strip():
                problems.append(f"{source}:{lineno}: {len(row)} columns, expected {len(header)}")
            continue
        if labels is not None and row[i_label] not in labels:
            continue
        image_id, mask_path = row[i_image], row[i_mask]
        if not safe_image_id(image_id) or not safe_mask_name(mask_path):
            if problems is not None:
                field = f"ImageID {image_id!r}" if not safe_image_id(image_id) else f"MaskPath {mask_path!r}"
                problems.append(f"{source}:{lineno}: {field} is not a plain file name, row skipped")
            continue
        yield MaskRow(image_id, row[i_label], row[i_box], mask_path, _box(row, box_columns))


def _box(row: list[str], columns: list[int] | None) -> tuple[float, float, float, float] | None:
    """The normalised box in ``columns`` of ``row``, or None when absent or not four numbers."""
    if columns is None:
        return None
    try:
        xmin, xmax, ymin, ymax = (float(row[i]) for i in columns)
    except ValueError:
        return None
    return (xmin, xmax, ymin, ymax)


def choose_images(rows: Iterable[MaskRow], *, labels: Iterable[str], max_images_per_class: int, seed: int) -> set[str]:
    """For each label, the ``max_images_per_class`` images with the smallest ``image_key(seed, id)``; their union."""
    check_at_least("max_images_per_class", max_images_per_class, 1)
    kept: dict[str, list[tuple[bytes, str]]] = {label: [] for label in labels}  # sorted ascending, len <= N
    members: dict[str, set[str]] = {label: set() for label in labels}
    for row in rows:
        if row.label not in kept:
            continue  # a row kept for another reason (a subclass's), not a reason to choose its image
        best, inside = kept[row.label], members[row.label]
        if row.image_id in inside:
            continue
        entry = (image_key(seed, row.image_id), row.image_id)
        if len(best) < max_images_per_class:
            bisect.insort(best, entry)
            inside.add(row.image_id)
        elif entry < best[-1]:
            bisect.insort(best, entry)
            inside.discard(best.pop()[1])
            inside.add(row.image_id)
    return set().union(*members.values()) if members else set()


def filter_segmentation_csv(
    path: Path,
    *,
    labels: list[str],
    max_images_per_class: int | None,
    seed: int,
    problems: list[str] | None = None,
    extra_labels: Iterable[str] = (),
) -> list[MaskRow]:
    """The rows of ``labels`` for the chosen images (all images when ``max_images_per_class`` is None), sorted by
    (ImageID, position of the label in ``labels``, BoxID, MaskPath). Reads ``path`` once, or twice when choosing.

    ``extra_labels``: rows of these labels are kept too (after the others of an image), but do not choose images
    (the subclasses of the requested classes)."""
    extra = [label for label in dict.fromkeys(extra_labels) if label not in labels]
    order = {label: i for i, label in enumerate([*labels, *extra])}
    try:
        chosen: set[str] | None = None
        if max_images_per_class is not None:
            with open(path, newline="", encoding="utf-8") as f:
                chosen = choose_images(
                    scan_rows(f, labels=labels, source=path.name),
                    labels=labels,
                    max_images_per_class=max_images_per_class,
                    seed=seed,
                )
        with open(path, newline="", encoding="utf-8") as f:
            rows = [
                row
                for row in scan_rows(f, labels=[*labels, *extra], source=path.name, problems=problems)
                if chosen is None or row.image_id in chosen
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    rows.sort(key=lambda r: (r.image_id, order[r.label], r.box_id, r.mask_path))
    return _drop_duplicates(rows, source=path.name, problems=problems)


def _drop_duplicates(rows: list[MaskRow], *, source: str, problems: list[str] | None) -> list[MaskRow]:
    """Sorted rows -> without a second row naming the same mask (it would be the same instance twice)."""
    seen: set[str] = set()
    unique: list[MaskRow] = []
    for row in rows:
        if row.mask_path in seen:
            if problems is not None:
                problems.append(f"{source}: mask {row.mask_path} listed twice, kept once")
            continue
        seen.add(row.mask_path)
        unique.append(row)
    return unique
