"""A made-up COCO dataset and results for the evaluation tests, and pycocotools run directly as the oracle.

The ground truth has 6 images of different sizes, 4 categories (one without any instance), small, medium and large
objects as polygons, and crowd regions as uncompressed RLE. The results hit most objects with jittered masks, miss
some, confuse some classes, add false positives (some on the class without ground truth) and duplicates.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from coco_rle import uncompressed_rle

CATEGORIES = [
    {"id": 1, "name": "cat"},
    {"id": 2, "name": "dog"},
    {"id": 4, "name": "traffic light"},
    {"id": 7, "name": "unicorn"},  # no ground truth
]
IMAGE_SIZES = [(240, 320), (200, 150), (96, 128), (300, 300), (180, 260), (128, 128)]  # (height, width)


def ellipse_polygon(cx: float, cy: float, rx: float, ry: float, *, points: int = 16) -> list[float]:
    angles = np.linspace(0, 2 * np.pi, points, endpoint=False)
    xy = np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1)
    return [round(float(v), 2) for v in xy.reshape(-1)]


def polygon_rle(polygon: list[float], height: int, width: int) -> dict:
    rle = mask_utils.merge(mask_utils.frPyObjects([polygon], height, width))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def make_dataset(seed: int = 0) -> tuple[dict, list[dict]]:
    """(ground truth dict, results list) with boxes and RLE masks in every result, and `file_name`s."""
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    for image_id, (height, width) in enumerate(IMAGE_SIZES, start=1):
        images.append({"id": image_id, "file_name": f"val/img_{image_id}.jpg", "height": height, "width": width})
        for _ in range(int(rng.integers(3, 8))):
            kind = rng.choice(["small", "medium", "large"], p=[0.35, 0.4, 0.25])
            radius = {"small": (3, 12), "medium": (20, 40), "large": (55, 80)}[kind]
            rx, ry = (float(rng.uniform(*radius)) for _ in range(2))
            rx, ry = min(rx, width / 2 - 2), min(ry, height / 2 - 2)
            cx, cy = float(rng.uniform(rx + 1, width - rx - 1)), float(rng.uniform(ry + 1, height - ry - 1))
            polygon = ellipse_polygon(cx, cy, rx, ry)
            rle = mask_utils.merge(mask_utils.frPyObjects([polygon], height, width))
            category_id = int(rng.choice([1, 2, 4]))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_id,
                    "segmentation": [polygon],
                    "area": float(mask_utils.area(rle)),
                    "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                    "iscrowd": 0,
                }
            )
            # Detections: a jittered copy of most objects, sometimes with the wrong class, sometimes twice.
            u = rng.random()
            copies = 0 if u < 0.12 else 2 if u > 0.92 else 1
            for _ in range(copies):
                shift = rng.normal(0, max(1.0, 0.12 * min(rx, ry)), size=2)
                scale = rng.uniform(0.8, 1.2, size=2)
                jittered = ellipse_polygon(cx + shift[0], cy + shift[1], rx * scale[0], ry * scale[1])
                det_rle = polygon_rle(jittered, height, width)
                wrong_class = rng.random() < 0.12
                results.append(
                    {
                        "image_id": image_id,
                        "file_name": f"img_{image_id}.jpg",
                        "category_id": int(rng.choice([1, 2, 4])) if wrong_class else category_id,
                        "bbox": [round(float(v), 2) for v in mask_utils.toBbox(det_rle)],
                        "score": round(float(rng.uniform(0.05, 1.0)), 4),
                        "segmentation": det_rle,
                    }
                )
        # One crowd region per image on alternate images, with a detection inside it.
        if image_id % 2 == 0:
            crowd = np.zeros((height, width), dtype=bool)
            y0, x0 = height // 3, width // 3
            crowd[y0 : y0 + height // 4, x0 : x0 + width // 4] = True
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "segmentation": uncompressed_rle(crowd),
                    "area": float(crowd.sum()),
                    "bbox": [float(x0), float(y0), float(width // 4), float(height // 4)],
                    "iscrowd": 1,
                }
            )
            inner = np.zeros_like(crowd)
            inner[y0 + 2 : y0 + height // 8, x0 + 2 : x0 + width // 8] = True
            det_rle = mask_utils.encode(np.asfortranarray(inner.astype(np.uint8)))
            det_rle["counts"] = det_rle["counts"].decode("ascii")
            results.append(
                {
                    "image_id": image_id,
                    "file_name": f"img_{image_id}.jpg",
                    "category_id": 1,
                    "bbox": [float(v) for v in mask_utils.toBbox(det_rle)],
                    "score": 0.77,
                    "segmentation": det_rle,
                }
            )
        # False positives, some on the class without ground truth.
        for _ in range(2):
            r = float(rng.uniform(4, 30))
            cx, cy = float(rng.uniform(r + 1, width - r - 1)), float(rng.uniform(r + 1, height - r - 1))
            det_rle = polygon_rle(ellipse_polygon(cx, cy, r, r), height, width)
            results.append(
                {
                    "image_id": image_id,
                    "file_name": f"img_{image_id}.jpg",
                    "category_id": int(rng.choice([1, 2, 4, 7])),
                    "bbox": [round(float(v), 2) for v in mask_utils.toBbox(det_rle)],
                    "score": round(float(rng.uniform(0.05, 0.9)), 4),
                    "segmentation": det_rle,
                }
            )
    # A confident false positive shaped as a thin diagonal: its mask is small (< 32**2) while its box is medium,
    # so it counts against APs when scored by mask area, against APm when scored by box area.
    height, width = IMAGE_SIZES[0]
    band = np.zeros((height, width), dtype=np.uint8)
    for i in range(60):
        band[150 + i, 10 + i : 14 + i] = 1
    det_rle = mask_utils.encode(np.asfortranarray(band))
    det_rle["counts"] = det_rle["counts"].decode("ascii")
    results.append(
        {
            "image_id": 1,
            "file_name": "img_1.jpg",
            "category_id": 1,
            "bbox": [float(v) for v in mask_utils.toBbox(det_rle)],
            "score": 0.99,
            "segmentation": det_rle,
        }
    )
    gt = {"images": images, "annotations": annotations, "categories": CATEGORIES}
    return gt, results


@pytest.fixture
def dataset() -> tuple[dict, list[dict]]:
    return make_dataset()


def _write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


def _pycocotools_eval(gt_path: Path, results: Path | list[dict], iou_type: str) -> COCOeval:
    """The oracle: pycocotools on the files, exactly as its own demo runs it (printing silenced)."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_path))
        coco_dt = coco_gt.loadRes(str(results) if isinstance(results, Path) else results)
        evaluator = COCOeval(coco_gt, coco_dt, iouType=iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def _only(results: list[dict], iou_type: str) -> list[dict]:
    """Each result with only the field ``iou_type`` scores (bbox or segmentation), as separate files would hold."""
    drop = "segmentation" if iou_type == "bbox" else "bbox"
    return [{k: v for k, v in r.items() if k not in (drop, "file_name")} for r in results]


@pytest.fixture
def write_json():
    """write_json(path, obj) -> path."""
    return _write_json


@pytest.fixture
def pycocotools_eval():
    """pycocotools_eval(gt_path, results_path_or_list, iou_type) -> COCOeval after summarize()."""
    return _pycocotools_eval


@pytest.fixture
def only():
    """only(results, iou_type) -> results holding just the field that iou type scores."""
    return _only
