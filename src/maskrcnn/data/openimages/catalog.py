"""Open Images class names: DisplayName <-> MID, which classes have masks, and user-given names -> classes.

Open Images names classes by a Freebase MID (``/m/01yrx``) and shows a DisplayName (``Cat``). The boxable
class list (``class-descriptions-boxable.csv``, 601 rows ``MID,DisplayName`` without a header) covers every class
with boxes; ``classes-segmentation.txt`` lists the 350 MIDs that also have instance masks.

>>> names = {"/m/01yrx": "Cat", "/m/015qff": "Traffic light"}
>>> resolve_classes(["cat", "/m/015qff"], names=names, segmentable={"/m/01yrx", "/m/015qff"})
[OpenImagesClass(mid='/m/01yrx', name='Cat'), OpenImagesClass(mid='/m/015qff', name='Traffic light')]
"""

from __future__ import annotations

import csv
import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from maskrcnn.errors import ArgumentError, UserError


@dataclass(frozen=True)
class OpenImagesClass:
    """One class: ``mid`` as in the CSVs (``/m/01yrx``), ``name`` its DisplayName (``Cat``)."""

    mid: str
    name: str


def read_class_descriptions(path: Path) -> dict[str, str]:
    """``MID,DisplayName`` rows -> {MID: DisplayName}, in file order. A ``LabelName,DisplayName`` header is skipped
    (the V6/V7 files have one, the V5 boxable file does not)."""
    names: dict[str, str] = {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for lineno, row in enumerate(csv.reader(f), 1):
                if not row or (lineno == 1 and row[0] == "LabelName"):
                    continue
                if len(row) < 2 or not row[0].strip():
                    raise UserError(f"{path}:{lineno}: expected MID,DisplayName, got {','.join(row)!r}")
                names[row[0].strip()] = row[1].strip()
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"cannot read class descriptions {path}: {e}") from None
    if not names:
        raise UserError(f"no classes in {path}")
    return names


def read_segmentation_classes(path: Path) -> set[str]:
    """``classes-segmentation.txt`` (one MID a line) -> the set of MIDs that have masks."""
    try:
        return {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read segmentation classes {path}: {e}") from None


def resolve_classes(
    requested: Iterable[str], *, names: dict[str, str], segmentable: set[str] | None
) -> list[OpenImagesClass]:
    """User-given class names (DisplayNames, any case, or MIDs) -> classes, in the given order, duplicates dropped.

    ``names`` maps MID -> DisplayName; ``segmentable`` is the set of MIDs with masks (None: do not check).
    An unknown name raises ``UserError`` suggesting the closest DisplayNames; a known class without masks raises
    ``UserError`` saying so. Where two MIDs share a DisplayName, the one with masks wins.
    """
    by_lower: dict[str, list[str]] = {}
    for mid, name in names.items():
        by_lower.setdefault(name.lower(), []).append(mid)
    chosen: list[OpenImagesClass] = []
    for raw in requested:
        wanted = raw.strip()
        if not wanted:
            continue
        if wanted in names:
            mids = [wanted]
        elif wanted.lower() in by_lower:
            mids = by_lower[wanted.lower()]
        else:
            raise UserError(_unknown_class_message(wanted, names))
        if segmentable is not None:
            with_masks = [mid for mid in mids if mid in segmentable]
            if not with_masks:
                raise UserError(
                    f"class {names[mids[0]]!r} ({mids[0]}) has boxes but no instance masks in Open Images "
                    f"(it is not in classes-segmentation.txt); pick one of the {len(segmentable)} segmentation classes"
                )
            mids = with_masks
        found = OpenImagesClass(mid=mids[0], name=names[mids[0]])
        if found not in chosen:
            chosen.append(found)
    if not chosen:
        raise ArgumentError("classes", "no class given: {arg} names none; give DisplayNames or MIDs, such as Cat or "
                            "Traffic light")  # fmt: skip
    return chosen


def _unknown_class_message(wanted: str, names: dict[str, str]) -> str:
    display = sorted(set(names.values()))
    lower_to_name = {name.lower(): name for name in display}
    close = difflib.get_close_matches(wanted.lower(), list(lower_to_name), n=5, cutoff=0.6)
    # Also offer names that contain the word typed ("light" -> "Traffic light"), which difflib ranks low.
    close += [n.lower() for n in display if wanted.lower() in n.lower() and n.lower() not in close][: 5 - len(close)]
    hint = f"; did you mean {', '.join(repr(lower_to_name[c]) for c in close)}?" if close else ""
    return f"unknown Open Images class {wanted!r}{hint}"
