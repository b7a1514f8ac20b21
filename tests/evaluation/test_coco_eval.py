"""COCO evaluation equals pycocotools run directly on the same files; user mistakes are one clear UserError."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from maskrcnn.errors import UserError
from maskrcnn.evaluation.coco_eval import METRIC_NAMES, evaluate_coco, format_summary


def _oracle_metrics(evaluator) -> dict[str, float | None]:
    return {name: (None if v < 0 else v * 100) for name, v in zip(METRIC_NAMES, evaluator.stats[:6])}


def _oracle_per_class(evaluator, category_ids: list[int]) -> list[float | None]:
    # precision: (T, R, K, A, M); area "all", 100 detections; -1 marks "no ground truth".
    aps = []
    for cat_id in category_ids:
        k = list(evaluator.params.catIds).index(cat_id)
        p = evaluator.eval["precision"][:, :, k, 0, -1]
        aps.append(float(p[p > -1].mean()) * 100 if (p > -1).any() else None)
    return aps


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_equals_pycocotools_on_single_field_results_files(
    tmp_path, dataset, write_json, pycocotools_eval, only, iou_type
):
    gt, results = dataset
    gt_path = write_json(tmp_path / "gt.json", gt)
    results_path = write_json(tmp_path / "results.json", only(results, iou_type))

    oracle = pycocotools_eval(gt_path, results_path, iou_type)
    ours = evaluate_coco(gt_path, results_path, iou_types=(iou_type,))

    expected = _oracle_metrics(oracle)
    assert set(ours.metrics) == {iou_type}
    assert ours.metrics[iou_type] == pytest.approx(expected, abs=1e-9)
    # The made-up data exercises every size bucket and a real spread of AP.
    assert all(v is not None and 5 < v < 95 for v in expected.values()), expected
    per_class = [ours.per_class[iou_type][c["name"]] for c in gt["categories"]]
    assert per_class == pytest.approx(_oracle_per_class(oracle, [c["id"] for c in gt["categories"]]), abs=1e-9)
    assert ours.per_class[iou_type]["unicorn"] is None  # false positives only, no ground truth
    assert ours.precision[iou_type].shape == (10, 101, len(gt["categories"]))


def test_results_with_boxes_and_masks_score_each_field(tmp_path, dataset, write_json, pycocotools_eval, only):
    """Results as `maskrcnn predict` writes them (both fields, file names) equal pycocotools on each field alone."""
    gt, results = dataset
    gt_path = write_json(tmp_path / "gt.json", gt)
    results_path = write_json(tmp_path / "results.json", results)

    ours = evaluate_coco(gt_path, results_path)

    for iou_type in ("bbox", "segm"):
        expected = _oracle_metrics(pycocotools_eval(gt_path, only(results, iou_type), iou_type))
        assert ours.metrics[iou_type] == pytest.approx(expected, abs=1e-9)
    assert ours.metrics["bbox"]["AP75"] != pytest.approx(ours.metrics["segm"]["AP75"])
    assert ours.num_results == len(results) and ours.num_images == len(gt["images"])


def test_inputs_are_not_modified(dataset):
    gt, results = dataset
    gt_before, results_before = copy.deepcopy(gt), copy.deepcopy(results)
    evaluate_coco(gt, results)
    assert gt == gt_before and results == results_before


def test_results_are_matched_to_images_by_file_name(dataset):
    gt, results = dataset
    reference = evaluate_coco(gt, results)
    # Ids as a folder prediction numbers them: unrelated to the json's, some colliding with other images' ids.
    renumbered = [{**r, "image_id": 7 - r["image_id"] if r["image_id"] > 1 else 1000} for r in results]
    ours = evaluate_coco(gt, renumbered)
    assert ours.metrics == reference.metrics
    assert any("file name" in note for note in ours.notes)


def test_unknown_file_name_is_named(dataset):
    gt, results = dataset
    results[3] = {**results[3], "image_id": 99, "file_name": "holiday/beach.jpg"}
    with pytest.raises(UserError, match="beach.jpg"):
        evaluate_coco(gt, results)


def test_unknown_image_id_without_file_name(dataset):
    gt, results = dataset
    results = [{k: v for k, v in r.items() if k != "file_name"} for r in results]
    results[0]["image_id"] = 4242
    with pytest.raises(UserError, match="4242"):
        evaluate_coco(gt, results)


def test_unknown_category_is_named(dataset):
    gt, results = dataset
    results[5] = {**results[5], "category_id": 31}
    with pytest.raises(UserError, match=r"category ids 31 are not in the ground truth"):
        evaluate_coco(gt, results)


def test_empty_results_score_zero_where_ground_truth_exists(dataset):
    gt, _ = dataset
    # Without small objects, APs has nothing to score.
    gt["annotations"] = [a for a in gt["annotations"] if a["area"] >= 32**2]
    ours = evaluate_coco(gt, [])
    for iou_type in ("bbox", "segm"):
        assert ours.metrics[iou_type] == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "APs": None, "APm": 0.0, "APl": 0.0}
        assert ours.per_class[iou_type] == {"cat": 0.0, "dog": 0.0, "traffic light": 0.0, "unicorn": None}
    assert "AP" in format_summary(ours)


def test_segm_needs_segmentation(dataset):
    gt, results = dataset
    boxes_only = [{k: v for k, v in r.items() if k != "segmentation"} for r in results]
    with pytest.raises(UserError, match="segmentation"):
        evaluate_coco(gt, boxes_only)
    assert evaluate_coco(gt, boxes_only, iou_types=("bbox",)).metrics["bbox"] == pytest.approx(
        evaluate_coco(gt, results, iou_types=("bbox",)).metrics["bbox"]
    )


def test_mask_of_wrong_size_is_named(dataset):
    gt, results = dataset
    results[2]["segmentation"] = {"size": [10, 10], "counts": results[2]["segmentation"]["counts"]}
    message = r"result 2 \(image 1\): RLE size \[10, 10\] differs from the image size \[240, 320\]"
    with pytest.raises(UserError, match=message):
        evaluate_coco(gt, results)


def _square(x: int, y: int, size: int, height: int = 100, width: int = 100) -> dict:
    from pycocotools import mask as mask_utils

    bitmap = np.zeros((height, width), dtype=np.uint8)
    bitmap[y : y + size, x : x + size] = 1
    rle = mask_utils.encode(np.asfortranarray(bitmap))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def test_ground_truth_without_mask_is_an_ignored_region_for_segm():
    """A detection on an instance with no mask is neither a hit nor a false positive; it is not required either."""
    gt = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 100, "width": 100}],
        "categories": [{"id": 1, "name": "box"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0,
             "segmentation": [[10, 10, 30, 10, 30, 30, 10, 30]]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [60, 60, 20, 20], "area": 400, "iscrowd": 0},
        ],
    }
    results = [
        # The highest score sits on the unmasked instance: scored as a false positive, AP would drop to ~50.
        {"image_id": 1, "category_id": 1, "score": 0.9, "bbox": [60, 60, 20, 20], "segmentation": _square(60, 60, 20)},
        {"image_id": 1, "category_id": 1, "score": 0.8, "bbox": [10, 10, 20, 20], "segmentation": _square(10, 10, 20)},
    ]
    ours = evaluate_coco(gt, results)
    assert ours.metrics["segm"]["AP"] == pytest.approx(100.0)
    assert ours.metrics["bbox"]["AP"] == pytest.approx(100.0)
    assert any("without a mask" in note for note in ours.notes)
    # A miss of the masked instance still counts.
    assert evaluate_coco(gt, results[:1]).metrics["segm"]["AP"] == pytest.approx(0.0)


def test_ground_truth_without_any_mask_skips_segm(dataset):
    gt, results = dataset
    for a in gt["annotations"]:
        a.pop("segmentation")
    ours = evaluate_coco(gt, results)
    assert set(ours.metrics) == {"bbox"}
    assert any("segm was not scored" in note for note in ours.notes)


def test_format_summary_lists_metrics_and_every_class(dataset):
    gt, results = dataset
    text = format_summary(evaluate_coco(gt, results))
    lines = text.splitlines()
    assert any(line.split()[:7] == ["AP", "AP50", "AP75", "APs", "APm", "APl"] for line in lines)
    for name in ("cat", "dog", "traffic light", "unicorn"):
        assert any(line.startswith(name) for line in lines), name
    unicorn = next(line for line in lines if line.startswith("unicorn"))
    assert unicorn.split()[1:] == ["-", "-"]
