"""Verified image-level labels (``{split}-annotations-human-imagelabels-boxable.csv``) and the negative images.

Each row says a person checked whether a class is in an image: ``Confidence`` 1, present; 0, absent. Read line by
line, only the rows that bear on the requested classes are kept. With the class hierarchy, a label also speaks for
related classes, as the challenge metric reads it: a class is verified present when it or one of its subclasses is
(a Limousine is a Car), and verified absent when it or one of its ancestors is (no Vehicle, so no Car).

A negative image (``--negatives N``) is verified to contain none of the requested classes: each of them verified
absent, none verified present. The N with the smallest ``image_key(seed, ImageID)`` are chosen, the same rule that
chooses the images of each class.

>>> labels = read_verified_labels(path, classes=["/m/01yrx"], hierarchy=None, source=path.name)
>>> labels.present["0001eeaf4aed83f9"], choose_negatives(labels, classes=["/m/01yrx"], count=2, seed=0)
({'/m/01yrx'}, ['00a1b2c3d4e5f607', '0b1c2d3e4f506172'])
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from maskrcnn.data.openimages.csv_filter import candidate_lines, image_key, read_header
from maskrcnn.data.openimages.hierarchy import ClassHierarchy
from maskrcnn.data.openimages.layout import safe_image_id
from maskrcnn.errors import UserError

COLUMNS = ("ImageID", "LabelName", "Confidence")


@dataclass
class VerifiedLabels:
    """ImageID -> the requested MIDs verified present / absent there (hierarchy applied)."""

    present: dict[str, set[str]] = field(default_factory=dict)
    absent: dict[str, set[str]] = field(default_factory=dict)


def read_verified_labels(
    path: Path,
    *,
    classes: list[str],
    hierarchy: ClassHierarchy | None,
    source: str,
    problems: list[str] | None = None,
) -> VerifiedLabels:
    """The verified labels of ``classes`` (MIDs) in the labels CSV at ``path`` (``source`` names it in messages).
    ``UserError`` for a file without the columns ImageID, LabelName, Confidence; rows with another Confidence than
    0 or 1 are skipped and described in ``problems``."""
    requested = set(classes)
    ancestors = hierarchy.ancestors if hierarchy is not None else {}
    descendants = hierarchy.descendants if hierarchy is not None else {}
    # A label of class L: present -> L and its ancestors present; absent -> L and its descendants absent.
    if_present: dict[str, set[str]] = defaultdict(set)
    if_absent: dict[str, set[str]] = defaultdict(set)
    for c in requested:
        for label in (c, *descendants.get(c, ())):
            if_present[label].add(c)
        for label in (c, *ancestors.get(c, ())):
            if_absent[label].add(c)
    result = VerifiedLabels(present=defaultdict(set), absent=defaultdict(set))
    wanted = frozenset(if_present) | frozenset(if_absent)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            it = iter(f)
            header = read_header(it, source=source, required=COLUMNS, kind="image-level labels CSV")
            i_image, i_label, i_confidence = (header.index(c) for c in COLUMNS)
            width = max(i_image, i_label, i_confidence) + 1
            for lineno, line in candidate_lines(it, wanted):
                row = next(csv.reader([line]), [])
                if len(row) < width or row[i_label] not in wanted:
                    continue
                confidence = _confidence(row[i_confidence])
                if confidence is None:
                    if problems is not None:
                        problems.append(f"{source}:{lineno}: Confidence {row[i_confidence]!r} is not 0 or 1, skipped")
                    continue
                image_id, label = row[i_image], row[i_label]
                if confidence:
                    result.present[image_id].update(if_present.get(label, ()))
                else:
                    result.absent[image_id].update(if_absent.get(label, ()))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    result.present = {k: v for k, v in result.present.items() if v}
    result.absent = {k: v for k, v in result.absent.items() if v}
    return result


def _confidence(text: str) -> bool | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return True if value == 1 else False if value == 0 else None


def choose_negatives(
    labels: VerifiedLabels, *, classes: list[str], count: int, seed: int, exclude: set[str] = frozenset()
) -> list[str]:
    """The ``count`` images (sorted) verified to contain none of ``classes``, by the smallest image key; images in
    ``exclude`` (already chosen) are passed over."""
    if count < 1:
        return []
    requested = set(classes)
    candidates = [
        image_id
        for image_id, absent in labels.absent.items()
        if absent >= requested and image_id not in labels.present and image_id not in exclude and safe_image_id(image_id)
    ]
    return sorted(sorted(candidates, key=lambda i: (image_key(seed, i), i))[:count])
