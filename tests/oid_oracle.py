"""The reference Open Images Challenge evaluator (``../shared/oracles/tf_oid_eval``) as a test oracle, and small
cases written both ways: a COCO ground truth + COCO results for our evaluator, the challenge CSVs for the oracle.

    case = OidCase(["/m/a", "/m/b"])
    case.gt("img1", "/m/a", rect(0, 10, 0, 10))            # a mask instance (rows 0-9, cols 0-9)
    case.gt("img1", "/m/a", rect(20, 30, 0, 10), mask=False) # box-only
    case.label("img1", "/m/b", 0)                            # verified absent
    case.pred("img1", "/m/a", 0.9, rect(0, 10, 0, 10))
    ours = evaluate_openimages(*case.coco())                 # COCO json dict, COCO results
    theirs = case.oracle(tmp_path)                           # {class mid: AP, "mAP": mAP}, fractions

The oracle is looked up beside the checkout (the repository's parent holds ``shared/``, in CI too); tests that
need it are skipped with the reason when the folder is absent.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

ORACLE_DIR = Path(__file__).resolve().parents[2] / "shared" / "oracles" / "tf_oid_eval"
PREFIX = "OpenImagesInstanceSegmentationChallenge_"
CLASS_PREFIX = PREFIX + "PerformanceByCategory/AP@0.5IOU/"


def oracle_module():
    """``run_oid_eval`` of the oracle folder; skips the test when the folder (or its third-party copy) is absent."""
    if not (ORACLE_DIR / "run_oid_eval.py").is_file() or not (ORACLE_DIR / "object_detection").is_dir():
        pytest.skip(f"Open Images reference evaluator not found at {ORACLE_DIR}")
    pytest.importorskip("pandas", reason="the Open Images oracle needs pandas (the dev extra)")
    if str(ORACLE_DIR) not in sys.path:
        sys.path.insert(0, str(ORACLE_DIR))
    import run_oid_eval

    return run_oid_eval


def rect(r0: int, r1: int, c0: int, c1: int, size: tuple[int, int] = (40, 40)) -> np.ndarray:
    """bool[H, W] with rows r0..r1-1 and columns c0..c1-1 set."""
    m = np.zeros(size, dtype=bool)
    m[r0:r1, c0:c1] = True
    return m


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight (x0, y0, x1, y1) pixel box of a mask (x1, y1 exclusive)."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _coco_rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


class OidCase:
    """Images (all 40x40 unless given), ground truth, verified labels and predictions, written both ways."""

    def __init__(self, mids: list[str], *, hierarchy: dict | None = None):
        self.mids = list(mids)
        self.hierarchy = hierarchy
        self.sizes: dict[str, tuple[int, int]] = {}
        self.instances: list[tuple[str, str, np.ndarray, bool, bool]] = []  # image, mid, mask, group_of, has_mask
        self.labels: list[tuple[str, str, int]] = []
        self.preds: list[tuple[str, str, float, np.ndarray]] = []

    def image(self, name: str, size: tuple[int, int] = (40, 40)) -> None:
        self.sizes.setdefault(name, size)

    def gt(self, image: str, mid: str, mask: np.ndarray, *, group_of: bool = False, has_mask: bool = True) -> None:
        """An instance: its mask (a box-only instance keeps just the mask's box)."""
        self.image(image, mask.shape)
        self.instances.append((image, mid, mask, group_of, has_mask))

    def label(self, image: str, mid: str, confidence: int) -> None:
        self.image(image)
        self.labels.append((image, mid, confidence))

    def pred(self, image: str, mid: str, score: float, mask: np.ndarray) -> None:
        self.image(image, mask.shape)
        self.preds.append((image, mid, score, mask))

    # -- our side ----------------------------------------------------------------------------------------------
    def coco(self) -> tuple[dict, list[dict]]:
        """(COCO ground truth with verified labels, COCO results), image ids 1.. in order of first mention."""
        ids = {name: i for i, name in enumerate(self.sizes, 1)}
        cat = {mid: i for i, mid in enumerate(self.mids, 1)}
        images = []
        for name, (h, w) in self.sizes.items():
            img = {"id": ids[name], "file_name": f"{name}.jpg", "height": h, "width": w}
            for key, conf in (("pos_category_ids", 1), ("neg_category_ids", 0)):
                img[key] = sorted({cat[m] for i, m, c in self.labels if i == name and c == conf})
            images.append(img)
        annotations = []
        for k, (image, mid, mask, group_of, has_mask) in enumerate(self.instances, 1):
            x0, y0, x1, y1 = _box(mask)
            ann = {"id": k, "image_id": ids[image], "category_id": cat[mid], "iscrowd": int(group_of),
                   "bbox": [x0, y0, x1 - x0, y1 - y0], "area": float((x1 - x0) * (y1 - y0))}  # fmt: skip
            if has_mask:
                ann["segmentation"] = _coco_rle(mask)
                ann["area"] = float(mask.sum())
            else:
                ann["segmentation"] = [[x0, y0, x1, y0, x1, y1, x0, y1]]
                ann["isbbox"] = True
            annotations.append(ann)
        categories = [{"id": cat[m], "name": m, "mid": m} for m in self.mids]
        results = [
            {"image_id": ids[image], "category_id": cat[mid], "score": score, "segmentation": _coco_rle(mask)}
            for image, mid, score, mask in self.preds
        ]
        gt = {"images": images, "annotations": annotations, "categories": categories}
        return gt, results

    # -- the oracle's side -------------------------------------------------------------------------------------
    def oracle(self, folder: Path, *, evaluator: str = "challenge") -> dict[str, float | None]:
        """Run the reference evaluator -> {"mAP": ..., mid: AP, ...} as fractions (None where it gives NaN)."""
        oracle = oracle_module()
        folder.mkdir(parents=True, exist_ok=True)
        boxes, masks = [], []
        for image, mid, mask, group_of, has_mask in self.instances:
            h, w = mask.shape
            x0, y0, x1, y1 = _box(mask)
            coords = (x0 / w, x1 / w, y0 / h, y1 / h)
            boxes.append("%s,%s,%r,%r,%r,%r,%d" % (image, mid, *coords, group_of))
            if has_mask:
                masks.append("%s,%s,%d,%d,%r,%r,%r,%r,%d,%s" % (image, mid, w, h, coords[0], coords[2], coords[1],
                             coords[3], group_of, oracle.encode_binary_mask(mask)))  # fmt: skip
        labels = ["%s,%s,%d" % row for row in self.labels]
        preds = ["%s,%d,%d,%s,%r,%s" % (image, mask.shape[1], mask.shape[0], mid, score,
                 oracle.encode_binary_mask(mask)) for image, mid, score, mask in self.preds]  # fmt: skip

        def write(name: str, header: str, rows: list[str]) -> str:
            path = folder / name
            path.write_text(header + "\n" + "".join(r + "\n" for r in rows))
            return str(path)

        hierarchy = None
        if self.hierarchy is not None:
            hierarchy = folder / "hierarchy.json"
            hierarchy.write_text(json.dumps(self.hierarchy))
        metrics = oracle.evaluate(
            write("boxes.csv", "ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf", boxes),
            write("labels.csv", "ImageID,LabelName,Confidence", labels),
            write("preds.csv", "ImageID,ImageWidth,ImageHeight,LabelName,Score,Mask", preds),
            masks_csv=write("masks.csv", "ImageID,LabelName,ImageWidth,ImageHeight,XMin,YMin,XMax,YMax,IsGroupOf,"
                            "Mask", masks),  # fmt: skip
            hierarchy_json=None if hierarchy is None else str(hierarchy),
            evaluator=evaluator,
        )
        out: dict[str, float | None] = {}
        for key, value in metrics.items():
            value = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
            if key == PREFIX + "Precision/mAP@0.5IOU":
                out["mAP"] = value
            elif key.startswith(CLASS_PREFIX):
                out[key[len(CLASS_PREFIX) :]] = value
        return out
