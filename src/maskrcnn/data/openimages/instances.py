"""From CSV rows to instances: which mask belongs to which box, and which requested class each instance is of.

A mask row of the segmentation CSV names the box it was drawn for only by its coordinates (its Box columns); the
box CSV has no BoxID. A mask and a box are partners when they are in the same image, have the same LabelName, and
their four coordinates differ by at most ``MATCH_TOLERANCE`` (normalised, so 0.5% of the image side); the closest
pairs are taken first, each row at most once. What finds no partner stays: a box without a mask is a box-only
instance, a mask without a box a mask instance all the same; both are counted for the report.

Classes: an instance of a requested class is one of that class. With the hierarchy, a box or mask of a subclass of
a requested class that was not requested itself (a Limousine when Car is requested) is an instance of its nearest
requested ancestors: in Open Images a Limousine is a Car, boxed as the more specific class.

Order (which fixes the annotation ids): ImageID, the category's place in the request, the LabelName, the box
(XMin, XMax, YMin, YMax; the mask's own Box columns when it has no box row), group-of, MaskPath.

>>> plan = plan_instances(mask_rows, box_rows, classes=["/m/01yrx"], hierarchy=None)
>>> plan.instances[0].mask.mask_path, plan.unmatched_boxes, plan.unmatched_masks
('0001eeaf4aed83f9_m01yrx_8ff7ac5d.png', 3, 0)
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from maskrcnn.data.openimages.box_csv import BoxRow
from maskrcnn.data.openimages.csv_filter import MaskRow
from maskrcnn.data.openimages.hierarchy import ClassHierarchy

MATCH_TOLERANCE = 0.005
_NO_BOX = (2.0, 2.0, 2.0, 2.0)  # sorts after every real box


@dataclass(frozen=True)
class Instance:
    """One object: ``category`` the requested MID it is written as, ``label`` its own MID in the CSVs, its mask row
    and / or its box row (at least one)."""

    image_id: str
    category: str
    label: str
    mask: MaskRow | None
    box: BoxRow | None

    @property
    def group_of(self) -> bool:
        return self.box is not None and self.box.group_of


@dataclass
class InstancePlan:
    """The sorted instances, and how many boxes and masks found no partner."""

    instances: list[Instance]
    unmatched_boxes: int
    unmatched_masks: int


def categories_of_labels(classes: list[str], hierarchy: ClassHierarchy | None) -> dict[str, list[str]]:
    """LabelName -> the requested classes its instances are of: itself when requested, else (with the hierarchy)
    its nearest requested ancestors."""
    requested = set(classes)
    mapping = {c: [c] for c in classes}
    if hierarchy is None:
        return mapping
    for label, above in hierarchy.ancestors.items():
        if label in requested:
            continue
        candidates = above & requested
        nearest = [c for c in classes if c in candidates and not (hierarchy.descendants[c] & candidates)]
        if nearest:
            mapping[label] = nearest
    return mapping


def match_masks_to_boxes(masks: list[MaskRow], boxes: list[BoxRow]) -> dict[int, int]:
    """{index into masks: index into boxes} of the partners (see the module doc)."""
    by_key: dict[tuple[str, str], tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    for i, m in enumerate(masks):
        if m.box is not None:
            by_key[m.image_id, m.label][0].append(i)
    for j, b in enumerate(boxes):
        if (b.image_id, b.label) in by_key:
            by_key[b.image_id, b.label][1].append(j)
    pairs: dict[int, int] = {}
    for mask_ids, box_ids in by_key.values():
        candidates = []
        for i in mask_ids:
            for j in box_ids:
                distance = max(abs(u - v) for u, v in zip(masks[i].box, boxes[j].box))
                if distance <= MATCH_TOLERANCE:
                    candidates.append((distance, i, j))
        used_boxes: set[int] = set()
        for _, i, j in sorted(candidates):
            if i not in pairs and j not in used_boxes:
                pairs[i] = j
                used_boxes.add(j)
    return pairs


def plan_instances(
    masks: list[MaskRow], boxes: list[BoxRow], *, classes: list[str], hierarchy: ClassHierarchy | None
) -> InstancePlan:
    """Every mask and box row of ``classes`` (or of their subclasses) as instances, partners joined, sorted."""
    categories = categories_of_labels(classes, hierarchy)
    masks = [m for m in masks if m.label in categories]
    boxes = [b for b in boxes if b.label in categories]
    pairs = match_masks_to_boxes(masks, boxes)
    paired_boxes = set(pairs.values())
    rows: list[tuple[str, str, MaskRow | None, BoxRow | None]] = [
        (m.image_id, m.label, m, boxes[pairs[i]] if i in pairs else None) for i, m in enumerate(masks)
    ]
    rows += [(b.image_id, b.label, None, b) for j, b in enumerate(boxes) if j not in paired_boxes]
    order = {c: k for k, c in enumerate(classes)}
    instances = [
        Instance(image_id=image_id, category=category, label=label, mask=mask, box=box)
        for image_id, label, mask, box in rows
        for category in categories[label]
    ]
    instances.sort(key=lambda inst: _sort_key(inst, order))
    return InstancePlan(
        instances=instances, unmatched_boxes=len(boxes) - len(paired_boxes), unmatched_masks=len(masks) - len(pairs)
    )


def _sort_key(inst: Instance, order: dict[str, int]) -> tuple:
    box = inst.box.box if inst.box is not None else (inst.mask.box or _NO_BOX)
    return (inst.image_id, order[inst.category], inst.label, box, inst.group_of, inst.mask.mask_path if inst.mask else "")
