"""COCO box and mask AP of a results list against a ground-truth COCO json, computed by pycocotools.

Shapes: T = 10 IoU thresholds (0.50:0.05:0.95), R = 101 recall thresholds (0:0.01:1), K categories of the ground truth.

The numbers are pycocotools's own (``COCOeval.evaluate/accumulate/summarize``); this module checks and prepares the
inputs so that a user mistake becomes one clear ``UserError`` instead of an assertion deep inside pycocotools:

- results name categories and images of the ground truth. A result carrying ``file_name`` (``maskrcnn predict``
  writes it) is matched to the ground-truth image of that file name when its ``image_id`` does not name that image
  (or it has no ``image_id``): first by the exact path, then by the base name. So predictions made on a folder can
  be scored against a json.
- ``bbox`` is scored on each result's ``bbox``; ``segm`` on its ``segmentation`` (compressed or uncompressed RLE or
  polygons), with the box dropped so that the detection's area for the small/medium/large split is its mask's area
  and not its box's (detectron2 scores masks the same way).
- An empty results list scores 0 wherever ground truth exists (pycocotools itself refuses an empty list).
- The ground truth is read and checked by ``data.coco.read_coco``, by the same rules as for training (which
  annotations are instances, box-only instances, crowd regions or skipped; see there).
- Box-only ground-truth instances (no usable mask, or ``"isbbox": true``) and masks that cover no pixel are *ignored
  regions* for ``segm``: they are given their box as a crowd region, so a detection on them counts neither as a hit
  nor as a false positive and no detection is required. If no ground-truth instance has a mask, ``segm`` is skipped
  with a note. Box scoring uses every instance.
- A ground-truth annotation without ``area`` gets its mask's area (its box's when it has no mask), one without
  ``bbox`` its mask's extent.

Metrics are in percent; pycocotools's -1 ("no ground truth of this size or class") becomes None.

>>> result = evaluate_coco(Path("val.json"), Path("results.json"))
>>> result.metrics["segm"]["AP50"]
61.2
"""

from __future__ import annotations

import contextlib
import io
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from maskrcnn.data.coco import CocoData, is_box, is_integer, is_number, read_coco
from maskrcnn.errors import ArgumentError, UserError
from maskrcnn.io import read_json
from maskrcnn.structures.masks import rle_area, segmentation_to_rle

IOU_TYPES = ("bbox", "segm")
METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # the first six of COCOeval.stats, in order


@dataclass(frozen=True)
class CocoEvalResult:
    """What one evaluation found.

    metrics: {iou_type: {"AP", "AP50", "AP75", "APs", "APm", "APl": percent or None}}, for each iou type scored.
    per_class: {iou_type: {class name: AP (IoU 0.50:0.95, all areas, 100 detections) percent or None}}.
    precision: {iou_type: ndarray[T, R, K] float64}, precision at each IoU and recall threshold for all areas and
        100 detections per image; -1 where a class has no ground truth (pycocotools's convention).
    iou_thresholds: ndarray[T]; recall_thresholds: ndarray[R].
    category_ids, class_names: the K ground-truth categories in the order of ``precision``'s last axis; a name
        shared by two categories is made unique with its id.
    num_images, num_results: ground-truth images scored, and results given.
    notes: what the user should know about how the inputs were read (matched file names, ignored instances).
    """

    metrics: dict[str, dict[str, float | None]]
    per_class: dict[str, dict[str, float | None]]
    precision: dict[str, np.ndarray]
    iou_thresholds: np.ndarray
    recall_thresholds: np.ndarray
    category_ids: list[int]
    class_names: list[str]
    num_images: int
    num_results: int
    notes: list[str] = field(default_factory=list)


def load_results(path: Path) -> list[dict]:
    """A COCO results json (a list of detections) -> list[dict]; ``UserError`` naming the file when it is not one."""
    results = read_json(path, what="results file")
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise UserError(f"results file {path} must hold a json list of detections (COCO results format)")
    return results


# ----------------------------------------------------------------------------------------------------------------
# Ground truth


@dataclass(frozen=True)
class GroundTruth:
    """A checked COCO instances json, reduced to what scoring and drawing need (fresh dicts, safe to hand on)."""

    path: Path | None  # the json it was read from; None for a dict
    images: list[dict]  # {"id", "file_name", "height", "width"} + the verified labels present (VERIFIED_LABEL_KEYS)
    categories: list[dict]  # {"id", "name"} + "mid" when the json has one (Open Images)
    annotations: list[dict]  # {"id", "image_id", "category_id", "bbox", "area", "iscrowd", "segmentation"}:
    # segmentation a compressed RLE, or None for an instance without a mask (box-only)
    notes: list[str] = field(default_factory=list)  # annotations the rules skipped


def load_ground_truth(gt: Path | dict | GroundTruth) -> GroundTruth:
    """Read and check a COCO instances json (or its dict, which is not modified) with ``data.coco.read_coco`` ->
    the fresh dicts pycocotools scores, masks drawn as compressed RLE.

    ``UserError`` naming the file and the annotation for what breaks the format. A ``GroundTruth`` is returned as it
    is, so callers can load once and pass it to scoring and to the report.
    """
    if isinstance(gt, GroundTruth):
        return gt
    coco = read_coco(gt, what="ground-truth file")
    return GroundTruth(
        path=coco.path,
        images=[{"id": im.id, "file_name": im.file_name, "height": im.height, "width": im.width, **im.verified}
                for im in coco.images],  # fmt: skip
        categories=[{"id": c.id, "name": c.name, **({"mid": c.mid} if c.mid is not None else {})}
                    for c in coco.categories],  # fmt: skip
        annotations=_scored_annotations(coco),
        notes=[f"ground truth: {coco.skipped_note()}"] if coco.skipped else [],
    )


def _scored_annotations(coco: CocoData) -> list[dict]:
    """Each annotation as pycocotools scores it: its mask drawn (None when it has none or it covers no pixel), its
    ``bbox`` and ``area`` as the json gives them, else from its mask (from its box without one)."""
    sizes = {im.id: (im.height, im.width) for im in coco.images}
    scored = []
    for ann in coco.annotations:
        rle = None
        if ann.segmentation is not None:
            rle = segmentation_to_rle(ann.segmentation, *sizes[ann.image_id])
            rle = rle if rle_area(rle) > 0 else None
        x1, y1, x2, y2 = (float(v) for v in ann.box)
        bbox = ann.bbox if ann.bbox is not None else [x1, y1, x2 - x1, y2 - y1]
        area = ann.area if ann.area is not None else float(rle_area(rle)) if rle is not None else bbox[2] * bbox[3]
        scored.append({"id": ann.id, "image_id": ann.image_id, "category_id": ann.category_id, "bbox": bbox,
                       "area": area, "iscrowd": int(ann.iscrowd), "segmentation": rle})  # fmt: skip
    return scored


def _coco(images: list[dict], categories: list[dict], annotations: list[dict]) -> COCO:
    """A pycocotools COCO object over the given dicts (built in memory; its index messages silenced)."""
    coco = COCO()
    coco.dataset = {"images": images, "categories": categories, "annotations": annotations}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _gt_coco(gt: GroundTruth, iou_type: str) -> tuple[COCO, int]:
    """COCO ground truth for one iou type, and how many instances were turned into ignored regions (segm)."""
    if iou_type == "bbox":
        annotations = [{k: v for k, v in a.items() if k != "segmentation"} for a in gt.annotations]
        return _coco(gt.images, gt.categories, annotations), 0
    annotations, unmasked = [], 0
    for a in gt.annotations:
        a = dict(a)
        if a["segmentation"] is None:
            # No mask: an ignored (crowd) region covering its box.
            x, y, w, h = a["bbox"]
            a["segmentation"] = [[x, y, x, y + h, x + w, y + h, x + w, y]]
            unmasked += 0 if a["iscrowd"] else 1
            a["iscrowd"] = 1
        annotations.append(a)
    return _coco(gt.images, gt.categories, annotations), unmasked


# ----------------------------------------------------------------------------------------------------------------
# Results


def _base_name(file_name: str) -> str:
    return posixpath.basename(file_name.replace("\\", "/"))


def match_images(results: list[dict], gt: GroundTruth, *, source: str) -> tuple[list[dict], list[str]]:
    """Results with ``image_id`` set to ground-truth ids, and notes on what changed.

    A result whose ``file_name`` names another image than its ``image_id`` (or whose id is unknown) takes the id of
    the ground-truth image with that file name: the exact path first, then the base name. ``UserError`` for results
    whose image cannot be found, naming them. Results are not modified; re-identified ones are copies.
    """
    gt_names = {img["id"]: img["file_name"] for img in gt.images}
    by_path: dict[str, list] = {}
    by_base: dict[str, list] = {}
    for img_id, file_name in gt_names.items():
        if isinstance(file_name, str):
            by_path.setdefault(file_name.replace("\\", "/"), []).append(img_id)
            by_base.setdefault(_base_name(file_name), []).append(img_id)

    matched, remapped, unknown_ids, unknown_files = [], 0, [], []
    for r in results:
        image_id, file_name = r.get("image_id"), r.get("file_name")
        if not isinstance(file_name, str):
            if image_id not in gt_names:
                unknown_ids.append(image_id)
            matched.append(r)
            continue
        own = gt_names.get(image_id)
        if isinstance(own, str) and _base_name(own) == _base_name(file_name):
            matched.append(r)
            continue
        candidates = by_path.get(file_name.replace("\\", "/")) or by_base.get(_base_name(file_name), [])
        if len(candidates) > 1:
            raise UserError(
                f"{source}: file name {file_name!r} matches {len(candidates)} ground-truth images "
                f"({', '.join(str(gt_names[c]) for c in candidates[:3])}); give results the ground truth's image ids"
            )
        if not candidates:
            unknown_files.append(file_name)
            continue
        matched.append({**r, "image_id": candidates[0]})
        remapped += 1
    if unknown_files:
        names = sorted(set(unknown_files))
        raise UserError(
            f"{source}: {len(unknown_files)} results are for images not in the ground truth, by file name: "
            f"{', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
        )
    if unknown_ids:
        ids = sorted(set(map(str, unknown_ids)))
        raise UserError(
            f"{source}: {len(unknown_ids)} results have image ids not in the ground truth: "
            f"{', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}"
        )
    notes = [f"{remapped} results were matched to ground-truth images by file name"] if remapped else []
    return matched, notes


def _check_results(results: list[dict], gt: GroundTruth, *, source: str) -> None:
    """``UserError`` for a result without a usable category or score, or with a category the ground truth lacks."""
    category_ids = {c["id"] for c in gt.categories}
    unknown: set = set()
    for i, r in enumerate(results):
        if not isinstance(r, dict):
            raise UserError(f"{source}: result {i} is not an object")
        if "image_id" not in r and not isinstance(r.get("file_name"), str):
            raise UserError(f"{source}: result {i} has neither `image_id` nor `file_name`")
        for key in ("category_id", "score"):
            if key not in r:
                raise UserError(f"{source}: result {i} has no `{key}`")
        for key in ("image_id", "category_id"):
            if key in r and not is_integer(r[key]):
                raise UserError(f"{source}: result {i} has {key} {r[key]!r}, expected an integer")
        if not is_number(r["score"]):
            raise UserError(f"{source}: result {i} has score {r['score']!r}, expected a finite number")
        if r["category_id"] not in category_ids:
            unknown.add(r["category_id"])
    if unknown:
        names = ", ".join(sorted(map(str, unknown)))
        known = ", ".join(map(str, sorted(category_ids, key=str)))
        raise UserError(f"{source}: category ids {names} are not in the ground truth (its categories: {known})")


def _first_without_mask(results: list[dict]) -> int | None:
    return next((i for i, r in enumerate(results) if r.get("segmentation") is None), None)


def _keys(result: dict) -> dict:
    return {"image_id": result["image_id"], "category_id": result["category_id"], "score": float(result["score"])}


def _results_for(iou_type: str, results: list[dict], gt: GroundTruth, *, source: str) -> list[dict]:
    """Fresh result dicts holding what pycocotools's ``loadRes`` needs for ``iou_type``.

    bbox: ``bbox`` kept, ``segmentation`` dropped (pycocotools scores the box and takes the area from it). When no
    result has a box but all have masks, the masks are kept and pycocotools takes each box from its mask.
    segm: ``segmentation`` as compressed RLE, ``bbox`` dropped (area and box come from the mask).
    """
    sizes = {img["id"]: (img["height"], img["width"]) for img in gt.images}
    prepared = []
    if iou_type == "bbox":
        with_box = [i for i, r in enumerate(results) if "bbox" in r]
        if len(with_box) == 0 and all("segmentation" in r for r in results):
            return _results_for("segm", results, gt, source=source)
        if len(with_box) != len(results):
            first = next(i for i, r in enumerate(results) if "bbox" not in r)
            raise UserError(f"{source}: result {first} has no `bbox`; box AP needs one in every result")
        for i, r in enumerate(results):
            bbox = r["bbox"]
            if not is_box(bbox):
                raise UserError(f"{source}: result {i} has bbox {bbox!r}, expected [x, y, width, height]")
            prepared.append({**_keys(r), "bbox": [float(v) for v in bbox]})
        return prepared

    missing = _first_without_mask(results)
    if missing is not None:
        raise UserError(f"{source}: result {missing} has no `segmentation`; the mask metrics need one in every result")
    for i, r in enumerate(results):
        try:
            rle = segmentation_to_rle(r["segmentation"], *sizes[r["image_id"]])
        except ValueError as e:
            raise UserError(f"{source}: result {i} (image {r['image_id']}): {e}") from None
        prepared.append({**_keys(r), "segmentation": rle})
    return prepared


# ----------------------------------------------------------------------------------------------------------------
# Scoring


def _run_cocoeval(gt_coco: COCO, results: list[dict], iou_type: str) -> COCOeval:
    """Evaluate, accumulate and summarize with pycocotools, its printing silenced."""
    with contextlib.redirect_stdout(io.StringIO()):
        if results:
            dt_coco = gt_coco.loadRes(results)
        else:  # loadRes refuses an empty list: an empty detection set scores 0 wherever ground truth exists
            dt_coco = _coco(gt_coco.dataset["images"], gt_coco.dataset["categories"], [])
        evaluator = COCOeval(gt_coco, dt_coco, iouType=iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def _percent(value: float) -> float | None:
    """pycocotools's fraction -> percent; its -1 (nothing to score) -> None."""
    return None if value < 0 else float(value) * 100.0


def _unique_names(categories: list[dict]) -> list[str]:
    names = [c["name"] for c in categories]
    return [f"{n} (id {c['id']})" if names.count(n) > 1 else n for n, c in zip(names, categories)]


def load_inputs(
    gt: Path | dict | GroundTruth, results: Path | list[dict], *, source: str | None
) -> tuple[GroundTruth, list[dict], str, list[str]]:
    """Read and check the ground truth and the results, and match the results' images to the ground truth's ->
    (ground truth, results with ground-truth image ids, how messages name the results, notes)."""
    if source is None:
        source = str(results) if isinstance(results, Path) else "results"
    if isinstance(results, Path):
        results = load_results(results)
    ground_truth = load_ground_truth(gt)
    _check_results(results, ground_truth, source=source)
    results, notes = match_images(results, ground_truth, source=source)
    return ground_truth, results, source, [*ground_truth.notes, *notes]


def evaluate_coco(
    gt: Path | dict | GroundTruth,
    results: Path | list[dict],
    *,
    iou_types: tuple[str, ...] = IOU_TYPES,
    source: str | None = None,
) -> CocoEvalResult:
    """COCO AP of ``results`` against the ground truth ``gt``, for each of ``iou_types`` ("bbox", "segm").

    gt: a COCO instances json file, its parsed dict, or ``load_ground_truth``'s result (none is modified).
    results: a COCO results json file or its list: ``{"image_id", "category_id", "score", "bbox": [x, y, w, h],
        "segmentation": RLE or polygons, "file_name" (optional)}`` in absolute pixels (not modified).
    source: how messages name the results (default: the file, or "results").
    Raises ``UserError`` for inputs that cannot be scored (see the module docstring).
    """
    for iou_type in iou_types:
        if iou_type not in IOU_TYPES:
            raise UserError(f"unknown iou type {iou_type!r}: choose from {', '.join(IOU_TYPES)}")
    ground_truth, results, source, notes = load_inputs(gt, results, source=source)

    metrics, per_class, precision = {}, {}, {}
    names = _unique_names(ground_truth.categories)
    evaluator = None
    for iou_type in iou_types:
        gt_coco, unmasked = _gt_coco(ground_truth, iou_type)
        if iou_type == "segm":
            masked = sum(1 for a in ground_truth.annotations if a["segmentation"] is not None)
            if ground_truth.annotations and masked == 0:
                notes.append("segm was not scored: no ground-truth instance has a mask")
                continue
            if unmasked:
                notes.append(f"segm: {unmasked} ground-truth instances without a mask were scored as ignored regions")
            missing = _first_without_mask(results)
            if missing is not None:
                raise ArgumentError("iou_types", f"{source}: result {missing} has no `segmentation`; mask AP (segm) "
                                    "needs one in every result (score boxes only with {arg} bbox)")  # fmt: skip
        evaluator = _run_cocoeval(gt_coco, _results_for(iou_type, results, ground_truth, source=source), iou_type)
        metrics[iou_type] = {name: _percent(v) for name, v in zip(METRIC_NAMES, evaluator.stats[: len(METRIC_NAMES)])}
        # precision: (T, R, K, A, M) -> area "all", maxDets 100 -> (T, R, K), categories in sorted-id order
        by_id = dict(zip(evaluator.params.catIds, np.moveaxis(evaluator.eval["precision"][:, :, :, 0, -1], 2, 0)))
        pr = np.stack([by_id[c["id"]] for c in ground_truth.categories], axis=2) if by_id else np.zeros((10, 101, 0))
        precision[iou_type] = pr
        per_class[iou_type] = {}
        for k, name in enumerate(names):
            valid = pr[:, :, k][pr[:, :, k] > -1]
            per_class[iou_type][name] = float(valid.mean()) * 100.0 if valid.size else None

    return CocoEvalResult(
        metrics=metrics,
        per_class=per_class,
        precision=precision,
        iou_thresholds=np.linspace(0.5, 0.95, 10) if evaluator is None else np.asarray(evaluator.params.iouThrs),
        recall_thresholds=np.linspace(0.0, 1.0, 101) if evaluator is None else np.asarray(evaluator.params.recThrs),
        category_ids=[c["id"] for c in ground_truth.categories],
        class_names=names,
        num_images=len(ground_truth.images),
        num_results=len(results),
        notes=notes,
    )


# ----------------------------------------------------------------------------------------------------------------
# Terminal summary


def _cell(value: float | None, width: int) -> str:
    return f"{'-' if value is None else f'{value:.1f}':>{width}}"


def format_summary(result: CocoEvalResult) -> str:
    """The metrics table and the per-class AP table, as plain text for a terminal ("-": nothing to score)."""
    lines = [f"COCO evaluation (pycocotools): {result.num_images} images, {result.num_results} results"]
    iou_types = list(result.metrics)
    if iou_types:
        lines.append(f"{'':6}" + "".join(f"{m:>7}" for m in METRIC_NAMES))
        for iou_type in iou_types:
            lines.append(f"{iou_type:6}" + "".join(_cell(result.metrics[iou_type][m], 7) for m in METRIC_NAMES))
        width = min(max([len("class")] + [len(n) for n in result.class_names]), 32)
        lines.append("")
        lines.append("per-class AP (IoU 0.50:0.95, all areas)")
        lines.append(f"{'class':<{width}}" + "".join(f"{t:>7}" for t in iou_types))
        for name in result.class_names:
            shown = name if len(name) <= width else name[: width - 1] + "~"
            lines.append(f"{shown:<{width}}" + "".join(_cell(result.per_class[t][name], 7) for t in iou_types))
    lines.extend(f"note: {n}" for n in result.notes)
    return "\n".join(lines)
