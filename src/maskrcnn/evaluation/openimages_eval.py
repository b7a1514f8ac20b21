"""The Open Images Challenge 2019 instance-segmentation metric: mAP at mask IoU 0.5 under Open Images' rules.

Shapes: D detections of one class in one image, G ground-truth instances of that class there.

Input: a COCO ground truth (``coco_eval.load_ground_truth``) and COCO results with masks, as for ``segm``. What the
ground truth may carry, as ``maskrcnn openimages download`` writes it:

- ``iscrowd: 1``: an Open Images group-of region (a crowd of cars drawn as one box);
- an instance without a mask (``"isbbox": true``, or no usable ``segmentation``): a box-only instance;
- on each image, the verified labels (``pos_category_ids``, ``neg_category_ids``; LVIS's
  ``not_exhaustive_category_ids`` counts as verified too); categories may carry their ``mid``.

The rules, each as the reference evaluator (TF Object Detection API, ``OpenImagesChallengeEvaluator`` with masks)
applies it:

1. Hierarchy (when given): a ground-truth instance of a class is also one of each ancestor class that is a category;
   a verified-present label also verifies its ancestors, a verified-absent one its descendants. Detections are not
   expanded.
2. Only the classes verified on an image (present or absent) or with ground truth there are scored on it; other
   detections are dropped. A ground truth where no image carries verified labels (plain COCO) is exhaustive: every
   class is scored on every image.
3. Detections with an empty mask are dropped; per image and class the rest are taken by decreasing score (at most
   ``MAX_DETECTIONS`` of them), and each goes through four stages in turn, stopping at the first that claims it:
   a. instances with a mask, not group-of: the detection's argmax-IoU instance; IoU >= 0.5 and that instance not
      yet matched -> true positive. There is no fallback to the next best instance: otherwise a false positive.
   b. group-of regions with a mask: the argmax of intersection / detection area; >= 0.5 -> the detection is folded
      into that group, which counts as one entry of weight ``group_of_weight`` at the highest score folded into it.
   c. box-only instances, not group-of: by box IoU as in (a), the detection's box being its mask's; the first
      detection matching an instance is ignored (there is no mask to score it against); later ones stay false
      positives.
   d. box-only group-of regions: box intersection / detection box area >= 0.5 -> ignored.
4. Ground truth counted per class: instances with a mask, plus ``group_of_weight`` per group-of region with a mask.
5. AP per class: area under the all-points precision-recall curve (precision made non-increasing from the right);
   classes without counted ground truth have no AP and are left out of the mean.

``group_of_weight``: 1.0 in the challenge (the reference ``oid_challenge_evaluation.py`` builds its evaluator with the
class default, 1.0, for both tracks: a group hit once is one true positive, a group never hit one miss); 0.0 ignores
group-of regions altogether (the reference's ``OpenImagesInstanceSegmentationChallengeEvaluator``). Ties in score are
broken by order of appearance (image order, then result order).

>>> result = evaluate_openimages(Path("val/annotations.json"), Path("predictions.json"),
...                              hierarchy=Path("val/.openimages/2018_04/bbox_labels_600_hierarchy.json"))
>>> result.mean_ap, result.per_class["Cat"]
(41.2, 55.0)
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from maskrcnn.data.coco import VERIFIED_LABEL_KEYS
from maskrcnn.data.openimages.hierarchy import ClassHierarchy, read_hierarchy
from maskrcnn.evaluation.coco_eval import GroundTruth, _results_for, _unique_names, load_inputs
from maskrcnn.structures.masks import ious, rle_area, rle_boxes

IOU_THRESHOLD = 0.5
MAX_DETECTIONS = 10000  # per class and image, as the reference keeps
CHALLENGE_GROUP_OF_WEIGHT = 1.0


@dataclass(frozen=True)
class OpenImagesResult:
    """mean_ap: percent, None when no class has ground truth; per_class: {class name: AP percent or None};
    num_gt: {class name: ground truth counted (group-of regions weighted)}; notes: how the inputs were read."""

    mean_ap: float | None
    per_class: dict[str, float | None]
    num_gt: dict[str, float]
    group_of_weight: float
    num_images: int
    num_results: int
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """The ``"openimages"`` entry of metrics.json."""
        return {"mAP": self.mean_ap, "per_class": dict(self.per_class)}


@dataclass
class _Instances:
    """One image's ground truth of one class: masks (RLE) or boxes (x, y, w, h), and which are group-of."""

    masks: list = field(default_factory=list)
    mask_group_of: list[bool] = field(default_factory=list)
    boxes: list[list[float]] = field(default_factory=list)
    box_group_of: list[bool] = field(default_factory=list)


def evaluate_openimages(
    gt: Path | dict | GroundTruth,
    results: Path | list[dict],
    *,
    hierarchy: Path | ClassHierarchy | None = None,
    group_of_weight: float = CHALLENGE_GROUP_OF_WEIGHT,
    source: str | None = None,
) -> OpenImagesResult:
    """The challenge metric of ``results`` (COCO results with ``segmentation``) against ``gt`` (see module doc).

    hierarchy: the class hierarchy file or its parsed form; categories are placed in it by their ``mid`` (else by
    their name). ``UserError`` for inputs that cannot be scored.
    """
    ground_truth, results, source, notes = load_inputs(gt, results, source=source)
    detections = _results_for("segm", results, ground_truth, source=source) if results else []
    if isinstance(hierarchy, Path):
        hierarchy = read_hierarchy(hierarchy)
    up, down = _category_links(ground_truth, hierarchy, notes)

    category_ids = [c["id"] for c in ground_truth.categories]
    names = dict(zip(category_ids, _unique_names(ground_truth.categories)))
    instances, evaluatable = _ground_truth_by_image(ground_truth, up, down, notes)
    num_gt = {c: 0.0 for c in category_ids}
    for per_class in instances.values():
        for c, inst in per_class.items():
            num_gt[c] += sum(1.0 if not g else group_of_weight for g in inst.mask_group_of)

    by_image: dict = defaultdict(list)
    for det in detections:
        by_image[det["image_id"]].append(det)
    scores: dict = defaultdict(list)
    weights: dict = defaultdict(list)
    for image in ground_truth.images:
        image_id = image["id"]
        per_class_dets: dict = defaultdict(list)
        for det in by_image.get(image_id, []):
            if det["category_id"] in evaluatable[image_id]:
                per_class_dets[det["category_id"]].append(det)
        for c, dets in per_class_dets.items():
            s, w = _score_image_class(dets, instances[image_id].get(c), group_of_weight)
            scores[c].extend(s)
            weights[c].extend(w)

    per_class: dict[str, float | None] = {}
    for c in category_ids:
        ap = _average_precision(np.array(scores[c]), np.array(weights[c]), num_gt[c]) if num_gt[c] > 0 else None
        per_class[names[c]] = None if ap is None else 100.0 * ap
    valid = [v for v in per_class.values() if v is not None]
    return OpenImagesResult(
        mean_ap=float(np.mean(valid)) if valid else None,
        per_class=per_class,
        num_gt={names[c]: num_gt[c] for c in category_ids},
        group_of_weight=group_of_weight,
        num_images=len(ground_truth.images),
        num_results=len(results),
        notes=notes,
    )


# ----------------------------------------------------------------------------------------------------------------
# Ground truth


def _category_links(
    gt: GroundTruth, hierarchy: ClassHierarchy | None, notes: list[str]
) -> tuple[dict, dict]:
    """{category id: ancestor category ids} and {category id: descendant category ids}, within the categories."""
    ids = [c["id"] for c in gt.categories]
    if hierarchy is None:
        return {c: () for c in ids}, {c: () for c in ids}
    by_mid = {cat.get("mid", cat["name"]): cat["id"] for cat in gt.categories}
    outside = sorted(mid for mid in by_mid if mid not in hierarchy.ancestors)
    if outside:
        notes.append(f"openimages: {len(outside)} categories are not in the class hierarchy: {', '.join(outside[:5])}")
    up = {by_mid[m]: tuple(by_mid[a] for a in sorted(hierarchy.ancestors.get(m, ())) if a in by_mid) for m in by_mid}
    down = {by_mid[m]: tuple(by_mid[d] for d in sorted(hierarchy.descendants.get(m, ())) if d in by_mid) for m in by_mid}
    expanded = sum(1 for c in ids if up[c] or down[c])
    notes.append(f"openimages: ground truth and verified labels expanded over the class hierarchy ({expanded} of "
                 f"{len(ids)} categories have a parent or a child among the categories)")  # fmt: skip
    return up, down


def _ground_truth_by_image(
    gt: GroundTruth, up: dict, down: dict, notes: list[str]
) -> tuple[dict, dict]:
    """-> ({image id: {category id: _Instances}} expanded up the hierarchy, {image id: evaluatable category ids})."""
    instances: dict = {img["id"]: defaultdict(_Instances) for img in gt.images}
    box_only = 0
    for ann in gt.annotations:
        rle = ann["segmentation"]  # compressed RLE with pixels, or None
        box_only += rle is None and not ann["iscrowd"]
        for c in (ann["category_id"], *up[ann["category_id"]]):
            inst = instances[ann["image_id"]][c]
            if rle is not None:
                inst.masks.append(rle)
                inst.mask_group_of.append(bool(ann["iscrowd"]))
            else:
                inst.boxes.append([float(v) for v in ann["bbox"]])
                inst.box_group_of.append(bool(ann["iscrowd"]))
    if box_only:
        notes.append(f"openimages: {box_only} ground-truth instances without a mask: a detection on one is ignored")

    labelled = any(key in img for img in gt.images for key in VERIFIED_LABEL_KEYS)
    if not labelled:
        notes.append("openimages: no image carries verified labels: every class is scored on every image (as COCO)")
    everything = frozenset(c["id"] for c in gt.categories)
    evaluatable = {}
    for img in gt.images:
        if not labelled:
            evaluatable[img["id"]] = everything
            continue
        present = [*img.get("pos_category_ids", ()), *img.get("not_exhaustive_category_ids", ())]
        absent = img.get("neg_category_ids", ())
        classes = set(instances[img["id"]])
        classes.update(c2 for c in present for c2 in (c, *up[c]))
        classes.update(c2 for c in absent for c2 in (c, *down[c]))
        evaluatable[img["id"]] = frozenset(classes)
    return instances, evaluatable


# ----------------------------------------------------------------------------------------------------------------
# Matching


def _score_image_class(
    dets: list[dict], gt: _Instances | None, group_of_weight: float
) -> tuple[list[float], list[float]]:
    """One image's detections of one class (COCO results with RLE masks) -> the (score, true-positive weight) entries
    they add to the class's precision-recall curve (rule 3 of the module doc)."""
    masks = [d["segmentation"] for d in dets]
    keep = [i for i, m in enumerate(masks) if rle_area(m) > 0]
    order = sorted(keep, key=lambda i: -dets[i]["score"])[:MAX_DETECTIONS]  # stable: ties keep their order
    scores = np.array([float(dets[i]["score"]) for i in order])
    masks = [masks[i] for i in order]
    if gt is None:
        return list(scores), [0.0] * len(order)
    n = len(order)
    tp = np.zeros(n, dtype=bool)
    claimed = np.zeros(n, dtype=bool)  # folded into a group, or matched to a box-only instance: not an entry
    boxes = rle_boxes(masks)  # (D, 4) x, y, w, h of each mask
    def match_one_to_one(overlaps: np.ndarray, *, ignore: bool) -> None:
        taken = np.zeros(overlaps.shape[1], dtype=bool)
        best = overlaps.argmax(axis=1)  # (D,) the argmax instance, whether or not it is free
        for i in range(n):
            j = best[i]
            if tp[i] or claimed[i] or overlaps[i, j] < IOU_THRESHOLD or taken[j]:
                continue
            taken[j] = True
            tp[i] = True
            claimed[i] = ignore

    def fold_into_groups(overlaps: np.ndarray) -> dict[int, float]:
        group_scores: dict[int, float] = {}
        best = overlaps.argmax(axis=1)
        for i in range(n):
            j = best[i]
            if tp[i] or claimed[i] or overlaps[i, j] < IOU_THRESHOLD:
                continue
            claimed[i] = True
            group_scores[j] = max(group_scores.get(j, 0.0), scores[i])
        return group_scores

    mask_group = np.array(gt.mask_group_of, dtype=bool)
    box_group = np.array(gt.box_group_of, dtype=bool)
    singles = [m for m, g in zip(gt.masks, mask_group) if not g]
    groups = [m for m, g in zip(gt.masks, mask_group) if g]
    if n and singles:
        match_one_to_one(ious(masks, singles), ignore=False)  # (a)
    group_scores = fold_into_groups(ious(masks, groups, crowd=True)) if n and groups else {}  # (b)
    box_singles = [b for b, g in zip(gt.boxes, box_group) if not g]
    box_groups = [b for b, g in zip(gt.boxes, box_group) if g]
    if n and box_singles:
        match_one_to_one(ious(boxes, np.array(box_singles)), ignore=True)  # (c)
    if n and box_groups:
        fold_into_groups(ious(boxes, np.array(box_groups), crowd=True))  # (d): ignored whatever the weight
    entries = ~claimed
    out_scores = list(scores[entries])
    out_weights = list(tp[entries].astype(np.float64))
    if group_of_weight > 0:
        for score in group_scores.values():
            if score > 0:
                out_scores.append(score)
                out_weights.append(group_of_weight)
    return out_scores, out_weights


def _average_precision(scores: np.ndarray, weights: np.ndarray, num_gt: float) -> float:
    """All-points AP of entries (score, true-positive weight; 0 is a false positive) against ``num_gt``."""
    if scores.size == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    tp = weights[order]
    cum_tp = np.cumsum(tp)
    cum_fp = np.cumsum(tp <= 0)
    precision = cum_tp / (cum_tp + cum_fp)
    recall = cum_tp / num_gt
    # the precision envelope: from the right, the highest precision at this recall or more
    envelope = np.maximum.accumulate(np.concatenate([precision, [0.0]])[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(steps * envelope[:-1]))


# ----------------------------------------------------------------------------------------------------------------
# Terminal summary


def format_openimages_summary(result: OpenImagesResult) -> str:
    """mAP and per-class AP as plain text ("-": no ground truth to score)."""
    mean = "-" if result.mean_ap is None else f"{result.mean_ap:.1f}"
    lines = [
        f"Open Images challenge metric (mask IoU 0.5, group-of weight {result.group_of_weight:g}): "
        f"{result.num_images} images, {result.num_results} results",
        f"mAP {mean}",
    ]
    width = min(max([len("class")] + [len(n) for n in result.per_class]), 32)
    lines.append(f"{'class':<{width}} {'AP':>6} {'GT':>7}")
    for name, ap in result.per_class.items():
        shown = name if len(name) <= width else name[: width - 1] + "~"
        lines.append(f"{shown:<{width}} {'-' if ap is None else f'{ap:.1f}':>6} {result.num_gt[name]:>7g}")
    lines.extend(f"note: {n}" for n in result.notes)
    return "\n".join(lines)

