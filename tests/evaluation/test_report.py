"""The evaluation report: every picture written, non-trivial, linked from index.html, and the same on a re-run."""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

from maskrcnn.evaluation.coco_eval import evaluate_coco
from maskrcnn.evaluation.report import write_report

BACKGROUND = (10, 200, 30)  # the made-up images' colour, so the grid can be seen to show them


def _write_images(root, gt: dict) -> None:
    for img in gt["images"]:
        path = root / img["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (img["width"], img["height"]), BACKGROUND).save(path)


def _pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_report_pictures_are_written_linked_and_deterministic(tmp_path, dataset, write_json):
    gt, results = dataset
    gt_path = write_json(tmp_path / "gt.json", gt)
    _write_images(tmp_path, gt)  # beside the json, as file_name says: val/img_N.jpg
    evaluation = evaluate_coco(gt_path, results)

    index = write_report(
        tmp_path / "report", gt=gt_path, results=results, eval_result=evaluation, images_dir=None, max_images=4
    )

    assert index == tmp_path / "report" / "index.html"
    pngs = sorted(p.name for p in index.parent.glob("*.png"))
    assert pngs == ["per_class_ap.png", "pr_curves.png", "pr_curves_per_class.png", "predictions.png"]
    page = index.read_text(encoding="utf-8")
    assert sorted(set(re.findall(r'<img src="([^"]+)"', page))) == pngs
    for name in pngs:
        pixels = _pixels(index.parent / name)
        assert min(pixels.shape[:2]) >= 200, name
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20, f"{name} looks blank"
    # The grid shows the real images (their colour), not the grey stand-in for missing ones.
    grid = _pixels(index.parent / "predictions.png")
    assert (grid == BACKGROUND).all(axis=2).sum() > 10_000
    assert "not found" not in page
    # The page carries the numbers and every class.
    for iou_type, metrics in evaluation.metrics.items():
        row = re.search(rf"<tr><th>{iou_type}</th>(.*?)</tr>", page).group(1)
        assert re.findall(r">([\d.]+)<", row) == [f"{v:.1f}" for v in metrics.values()]
    for category in gt["categories"]:
        assert f"<td>{category['name']}</td>" in page

    again = write_report(
        tmp_path / "again", gt=gt_path, results=results, eval_result=evaluation, images_dir=None, max_images=4
    )
    for name in pngs:
        assert (_pixels(again.parent / name) == _pixels(index.parent / name)).all(), name


def test_missing_images_are_drawn_on_grey_and_noted(tmp_path, dataset):
    gt, results = dataset
    evaluation = evaluate_coco(gt, results)
    index = write_report(tmp_path, gt=gt, results=results, eval_result=evaluation, images_dir=tmp_path, max_images=2)
    page = index.read_text(encoding="utf-8")
    assert "6 images" in page and "were not found" not in page.split("Notes")[0]
    assert re.search(r"2 images were not found in .*val/img_1\.jpg", page)
    grid = _pixels(tmp_path / "predictions.png")
    assert (grid == 128).all(axis=2).sum() > 10_000  # the grey stand-in


def test_no_grid_when_max_images_is_zero(tmp_path, dataset):
    gt, results = dataset
    evaluation = evaluate_coco(gt, results, iou_types=("bbox",))
    index = write_report(tmp_path, gt=gt, results=results, eval_result=evaluation, images_dir=None, max_images=0)
    assert not (tmp_path / "predictions.png").exists()
    page = index.read_text(encoding="utf-8")
    assert "predictions.png" not in page and "<th>segm</th>" not in page
