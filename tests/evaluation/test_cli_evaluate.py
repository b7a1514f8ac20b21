"""`maskrcnn evaluate --predictions`: metrics.json equals pycocotools; bad input is one error line and exit 2."""

from __future__ import annotations

import json

import pytest

from maskrcnn.cli import main


def _oracle(evaluator) -> dict:
    names = ("AP", "AP50", "AP75", "APs", "APm", "APl")
    return {name: (None if v < 0 else v * 100) for name, v in zip(names, evaluator.stats[:6])}


def test_metrics_json_equals_pycocotools(tmp_path, dataset, write_json, pycocotools_eval, only, capsys):
    gt, results = dataset
    # Without small ground truth pycocotools has no APs to report: metrics.json must say null, not -100.
    gt["annotations"] = [a for a in gt["annotations"] if a["area"] >= 32**2]
    gt_path = write_json(tmp_path / "gt.json", gt)
    results_path = write_json(tmp_path / "results.json", results)

    status = main(
        ["evaluate", "--data", str(gt_path), "--predictions", str(results_path), "--output", str(tmp_path / "out"),
         "--no-report"]
    )

    assert status == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert list(metrics) == ["bbox", "segm"]
    for iou_type in ("bbox", "segm"):
        expected = _oracle(pycocotools_eval(gt_path, only(results, iou_type), iou_type))
        assert expected["APs"] is None and metrics[iou_type]["APs"] is None
        assert metrics[iou_type] == pytest.approx(expected, abs=1e-9)
    out = capsys.readouterr().out
    assert "traffic light" in out and "metrics.json" in out
    assert not (tmp_path / "out" / "index.html").exists()


def test_report_is_written_by_default(tmp_path, dataset, write_json):
    gt, results = dataset
    gt_path = write_json(tmp_path / "gt.json", gt)
    results_path = write_json(tmp_path / "results.json", results)
    out = tmp_path / "out"
    args = ["evaluate", "--data", str(gt_path), "--predictions", str(results_path), "--output", str(out)]
    assert main(args + ["--iou-types", "bbox", "--max-images", "2"]) == 0
    assert set(json.loads((out / "metrics.json").read_text())) == {"bbox"}
    assert (out / "index.html").is_file() and (out / "predictions.png").is_file()


@pytest.mark.parametrize(
    "content, message",
    [
        ('[{"image_id": 1, "category_id": 1,', "is not valid json"),
        ('{"annotations": []}', "must hold a json list"),
        ('[{"image_id": 1, "category_id": 31, "score": 0.5, "bbox": [0, 0, 5, 5]}]', "category ids 31"),
    ],
)
def test_bad_results_file_is_one_error_line(tmp_path, dataset, write_json, capsys, content, message):
    gt, _ = dataset
    gt_path = write_json(tmp_path / "gt.json", gt)
    results_path = tmp_path / "results.json"
    results_path.write_text(content)

    status = main(
        ["evaluate", "--data", str(gt_path), "--predictions", str(results_path), "--output", str(tmp_path / "out")]
    )

    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert str(results_path) in err[0] and message in err[0]
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_missing_ground_truth_is_named(tmp_path, capsys):
    results_path = tmp_path / "results.json"
    results_path.write_text("[]")
    missing = tmp_path / "nope.json"
    status = main(["evaluate", "--data", str(missing), "--predictions", str(results_path), "--output", str(tmp_path)])
    assert status == 2
    assert capsys.readouterr().err.strip() == f"error: ground-truth file not found: {missing}"


def test_weights_predicts_then_scores(tmp_path, capsys):
    """--weights runs a (random, tiny) model on the json's images, keeps predictions.json and scores it."""
    import numpy as np
    from PIL import Image

    from maskrcnn.checkpoint import save_checkpoint
    from maskrcnn.config import preset
    from maskrcnn.evaluation.coco_eval import evaluate_coco
    from maskrcnn.model.build import build_model

    config = preset("small")
    model = build_model(config.model).eval()
    weights = tmp_path / "tiny.pt"
    save_checkpoint(weights, model=model, config=config, class_names=["a", "b", "c"], category_ids=[3, 9, 12])
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    images, annotations = [], []
    for i in (11, 12):
        Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(tmp_path / "images" / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", "height": 96, "width": 128})
        annotations.append(
            {"id": i, "image_id": i, "category_id": 3, "bbox": [10, 10, 40, 30], "area": 1200, "iscrowd": 0,
             "segmentation": [[10, 10, 50, 10, 50, 40, 10, 40]]}
        )
    categories = [{"id": 3, "name": "a"}, {"id": 9, "name": "b"}]
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    out = tmp_path / "out"

    status = main(
        ["evaluate", "--data", str(gt_path), "--weights", str(weights), "--output", str(out), "--device", "cpu",
         "--no-report"]
    )

    assert status == 0, capsys.readouterr().err
    predictions = json.loads((out / "predictions.json").read_text())
    assert predictions, "a random model at score threshold 0 detects something"
    assert {p["image_id"] for p in predictions} <= {11, 12} and {p["category_id"] for p in predictions} <= {3, 9}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(evaluate_coco(gt_path, predictions).metrics))
