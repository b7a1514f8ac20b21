"""The Open Images challenge metric against the reference evaluator, one small case per rule, then random cases."""

from __future__ import annotations

import numpy as np
import pytest
from oid_oracle import OidCase, oracle_module, rect

from maskrcnn.evaluation.openimages_eval import evaluate_openimages

TOLERANCE = 1e-4  # in AP fractions; the requirement is 0.01, the two agree to rounding
# The oracle divides by zero for its CorLoc of classes without ground truth (not a metric used here).
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")


def _compare(case: OidCase, tmp_path, *, evaluator: str = "challenge", **kw) -> tuple[dict, dict]:
    """Our result and the oracle's on ``case``: ({"mAP", mid: AP} ours, the oracle's), fractions."""
    oracle_module()  # skip early when the oracle is absent
    weight = {"challenge": 1.0, "instance_seg": 0.0}[evaluator]
    gt, results = case.coco()
    hierarchy = None
    if case.hierarchy is not None:
        from maskrcnn.data.openimages.hierarchy import parse_hierarchy

        hierarchy = parse_hierarchy(case.hierarchy, source="test")
    result = evaluate_openimages(gt, results, hierarchy=hierarchy, group_of_weight=weight, **kw)
    ours = {"mAP": None if result.mean_ap is None else result.mean_ap / 100}
    ours.update({mid: None if ap is None else ap / 100 for mid, ap in result.per_class.items()})
    theirs = case.oracle(tmp_path / evaluator, evaluator=evaluator)
    assert theirs["mAP"] is not None
    for key, value in theirs.items():
        if value is None:
            assert ours.get(key) is None, key
        else:
            assert ours[key] == pytest.approx(value, abs=TOLERANCE), (key, ours, theirs)
    return ours, theirs


def test_true_positives_duplicates_and_misses(tmp_path):
    case = OidCase(["A"])
    case.label("i1", "A", 1)
    case.gt("i1", "A", rect(0, 10, 0, 10))
    case.gt("i1", "A", rect(0, 10, 20, 30))  # missed
    case.pred("i1", "A", 0.95, rect(30, 40, 30, 40))  # on nothing: false positive
    case.pred("i1", "A", 0.90, rect(0, 10, 0, 10))  # true positive
    case.pred("i1", "A", 0.80, rect(1, 11, 0, 10))  # the same instance again: false positive
    ours, _ = _compare(case, tmp_path)
    assert ours["A"] == pytest.approx(0.25)  # FP, TP, FP over 2 instances: 0.5 recall at precision 0.5


def test_matching_takes_the_argmax_instance_without_fallback(tmp_path):
    case = OidCase(["A"])
    case.label("i1", "A", 1)
    case.gt("i1", "A", rect(0, 10, 0, 10))
    case.gt("i1", "A", rect(0, 10, 1, 11))  # IoU 0.82 with the first
    case.pred("i1", "A", 0.9, rect(0, 10, 0, 10))  # takes the first
    case.pred("i1", "A", 0.8, rect(0, 10, 0, 10))  # its best is taken; IoU 0.82 with the second does not count
    ours, _ = _compare(case, tmp_path)
    assert ours["A"] == pytest.approx(0.5)


@pytest.mark.parametrize("evaluator", ["challenge", "instance_seg"])
def test_group_of_regions_count_once(tmp_path, evaluator):
    case = OidCase(["A"])
    case.label("i1", "A", 1)
    case.gt("i1", "A", rect(0, 10, 0, 10))
    case.gt("i1", "A", rect(20, 40, 0, 20), group_of=True)
    case.gt("i1", "A", rect(0, 10, 25, 40), group_of=True)  # never hit: a miss with weight 1
    case.pred("i1", "A", 0.92, rect(10, 15, 30, 35))  # false positive
    case.pred("i1", "A", 0.90, rect(0, 10, 0, 10))  # true positive
    case.pred("i1", "A", 0.80, rect(22, 28, 2, 8))  # inside the group: folded
    case.pred("i1", "A", 0.70, rect(30, 36, 10, 16))  # inside the group: folded
    case.pred("i1", "A", 0.60, rect(18, 30, 0, 12))  # IoA 10x12 / 12x12 = 0.83: folded too
    ours, _ = _compare(case, tmp_path, evaluator=evaluator)
    # weight 1: FP .92, TP .90, group TP .80 over 3 counted -> precision 2/3 up to recall 2/3; weight 0: FP, TP
    assert ours["A"] == pytest.approx(0.5 if evaluator == "instance_seg" else 4 / 9)


def test_box_only_instances_ignore_their_first_detection(tmp_path):
    case = OidCase(["A"])
    case.label("i1", "A", 1)
    case.gt("i1", "A", rect(0, 10, 0, 10))
    case.gt("i1", "A", rect(20, 30, 30, 40), has_mask=False)
    case.gt("i1", "A", rect(20, 40, 0, 15), has_mask=False, group_of=True)
    case.pred("i1", "A", 0.97, rect(20, 30, 30, 40))  # box IoU 1 with the box-only instance: ignored
    case.pred("i1", "A", 0.95, rect(21, 29, 31, 39))  # the same one again: a false positive
    case.pred("i1", "A", 0.93, rect(25, 35, 2, 12))  # inside the box-only group: ignored
    case.pred("i1", "A", 0.90, rect(0, 10, 0, 10))  # true positive
    case.pred("i1", "A", 0.85, rect(0, 10, 0, 9))  # duplicate of a mask instance: false positive
    ours, _ = _compare(case, tmp_path)
    assert ours["A"] == pytest.approx(0.5)  # box-only instances are not counted: FP, TP, FP over 1


def test_verified_labels_decide_which_classes_are_scored(tmp_path):
    case = OidCase(["A", "B", "C", "D"])
    case.label("i1", "A", 1)
    case.label("i1", "B", 0)  # verified absent: its detections are false positives
    case.gt("i1", "A", rect(0, 10, 0, 10))
    case.pred("i1", "A", 0.9, rect(0, 10, 0, 10))
    case.pred("i1", "B", 0.6, rect(0, 10, 20, 30))
    case.pred("i1", "C", 0.99, rect(30, 40, 0, 10))  # C neither verified nor annotated on i1: ignored
    case.label("i2", "B", 1)
    case.label("i2", "C", 1)
    case.gt("i2", "B", rect(0, 20, 0, 20))
    case.gt("i2", "C", rect(20, 40, 20, 40))
    case.pred("i2", "B", 0.5, rect(0, 20, 0, 20))
    case.pred("i2", "C", 0.4, rect(20, 40, 20, 40))
    case.label("i3", "D", 0)
    case.pred("i3", "D", 0.7, rect(0, 10, 0, 10))  # D has no ground truth anywhere: left out of the mean
    ours, theirs = _compare(case, tmp_path)
    assert (ours["A"], ours["B"], ours["C"], ours["D"]) == (1.0, 0.5, 1.0, None)
    assert ours["mAP"] == pytest.approx(2.5 / 3)


def test_hierarchy_expands_ground_truth_up_and_absence_down(tmp_path):
    hierarchy = {"LabelName": "/m/root", "Subcategory": [
        {"LabelName": "P", "Subcategory": [{"LabelName": "A"}, {"LabelName": "B"}]}, {"LabelName": "Q"}]}  # fmt: skip
    case = OidCase(["A", "B", "P", "Q"], hierarchy=hierarchy)
    case.label("i1", "A", 1)
    case.gt("i1", "A", rect(5, 25, 5, 25))  # also a P instance
    case.pred("i1", "P", 0.9, rect(5, 25, 5, 25))
    case.pred("i1", "A", 0.8, rect(5, 25, 5, 25))
    case.label("i2", "P", 0)  # P absent: A and B absent too
    case.label("i2", "Q", 1)
    case.gt("i2", "Q", rect(0, 10, 0, 10))
    case.pred("i2", "A", 0.95, rect(20, 30, 20, 30))  # false positive through the expanded absence
    case.pred("i2", "B", 0.85, rect(20, 30, 20, 30))
    case.pred("i2", "Q", 0.3, rect(0, 10, 0, 10))
    case.label("i3", "B", 1)  # B present (no box drawn): B and P are scored on i3
    case.gt("i3", "B", rect(0, 10, 0, 10))
    case.pred("i3", "P", 0.99, rect(30, 40, 30, 40))  # false positive for P
    case.pred("i3", "B", 0.75, rect(0, 10, 0, 10))
    ours, _ = _compare(case, tmp_path)
    # A: TP .8 on i1, FP .95 on i2; P: 2 instances (A on i1, B on i3), TP .9 and FP .99
    assert ours["A"] == pytest.approx(0.5) and ours["P"] == pytest.approx(0.25)
    # Without the hierarchy the result differs: expansion did something.
    gt, results = case.coco()
    flat = evaluate_openimages(gt, results)
    assert flat.per_class["A"] == pytest.approx(100.0) and flat.per_class["P"] is None


def _random_case(seed: int, *, labelled: bool = True) -> OidCase:
    """12 images with a few instances of 4 classes (some group-of, some box-only) and noisy detections."""
    rng = np.random.default_rng(seed)
    mids = ["/m/a", "/m/b", "/m/c", "/m/d"]
    case = OidCase(mids)
    scores = iter(rng.permutation(np.linspace(0.05, 0.99, 400)))  # distinct scores: no ties to break
    for n in range(12):
        image = f"img{n:02d}"
        size = (int(rng.integers(30, 60)), int(rng.integers(30, 60)))
        present = set(rng.choice(mids, size=int(rng.integers(1, 3)), replace=False))
        for mid in present:
            for _ in range(int(rng.integers(1, 4))):
                h, w = int(rng.integers(4, size[0] // 2)), int(rng.integers(4, size[1] // 2))
                r, c = int(rng.integers(0, size[0] - h)), int(rng.integers(0, size[1] - w))
                mask = rect(r, r + h, c, c + w, size)
                kind = rng.random()
                case.gt(image, mid, mask, group_of=kind < 0.15, has_mask=not 0.15 <= kind < 0.3)
                for _ in range(int(rng.integers(0, 3))):  # detections near it
                    dr, dc = rng.integers(-2, 3, size=2)
                    r0, c0 = int(np.clip(r + dr, 0, size[0] - 1)), int(np.clip(c + dc, 0, size[1] - 1))
                    shape = rect(r0, min(size[0], r0 + h), c0, min(size[1], c0 + w), size)
                    case.pred(image, mid if rng.random() < 0.85 else str(rng.choice(mids)), float(next(scores)), shape)
            if labelled:
                case.label(image, mid, 1)
        for mid in mids:
            if labelled and mid not in present and rng.random() < 0.5:
                case.label(image, mid, 0)
            if not labelled and mid not in present:
                case.label(image, mid, 1)  # the oracle's way of saying "every class verified"
        for _ in range(int(rng.integers(0, 3))):  # background detections
            r, c = int(rng.integers(0, size[0] - 5)), int(rng.integers(0, size[1] - 5))
            case.pred(image, str(rng.choice(mids)), float(next(scores)), rect(r, r + 5, c, c + 5, size))
    return case


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_cases_agree_with_the_oracle(tmp_path, seed):
    case = _random_case(seed)
    for evaluator in ("challenge", "instance_seg"):
        ours, theirs = _compare(case, tmp_path, evaluator=evaluator)
        assert 0.05 < theirs["mAP"] < 0.95  # a case with both hits and misses


def test_ground_truth_without_verified_labels_is_exhaustive(tmp_path):
    case = _random_case(5, labelled=False)
    gt, results = case.coco()
    for image in gt["images"]:  # plain COCO: no verified labels anywhere
        del image["pos_category_ids"], image["neg_category_ids"]
    ours = evaluate_openimages(gt, results)
    theirs = case.oracle(tmp_path)  # there, every class is verified present on every image
    assert ours.mean_ap / 100 == pytest.approx(theirs["mAP"], abs=TOLERANCE)
    assert any("every class is scored on every image" in n for n in ours.notes)


def test_cli_metric_openimages_and_both(tmp_path, capsys):
    import json

    from maskrcnn.cli import main

    hierarchy = {"LabelName": "/m/root", "Subcategory": [
        {"LabelName": "P", "Subcategory": [{"LabelName": "A"}, {"LabelName": "B"}]}]}  # fmt: skip
    case = OidCase(["A", "B", "P"], hierarchy=hierarchy)
    case.label("i1", "A", 1)
    case.gt("i1", "A", rect(5, 25, 5, 25))
    case.gt("i1", "B", rect(0, 5, 30, 40), has_mask=False)
    case.pred("i1", "A", 0.8, rect(5, 25, 5, 25))
    case.pred("i1", "P", 0.9, rect(0, 5, 30, 40))  # on the box-only B, so also a box-only P: ignored
    case.pred("i1", "P", 0.7, rect(5, 25, 5, 25))  # the A instance is also a P instance
    gt, results = case.coco()
    data = tmp_path / "ds" / "annotations.json"
    (data.parent / ".openimages" / "2018_04").mkdir(parents=True)
    data.write_text(json.dumps(gt))
    (data.parent / ".openimages" / "2018_04" / "bbox_labels_600_hierarchy.json").write_text(json.dumps(hierarchy))
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps(results))
    base = ["evaluate", "--data", str(data), "--predictions", str(preds), "--no-report"]

    assert main([*base, "--output", str(tmp_path / "oi"), "--metric", "openimages"]) == 0
    metrics = json.loads((tmp_path / "oi" / "metrics.json").read_text())
    # The hierarchy beside the json was used: P has the expanded A and B instances (B is box-only, not counted).
    assert metrics == {"openimages": {"mAP": 100.0, "per_class": {"A": 100.0, "B": None, "P": 100.0}}}
    assert "mAP 100.0" in capsys.readouterr().out

    assert main([*base, "--output", str(tmp_path / "both"), "--metric", "coco,openimages"]) == 0
    both = json.loads((tmp_path / "both" / "metrics.json").read_text())
    assert list(both) == ["bbox", "segm", "openimages"] and both["openimages"] == metrics["openimages"]

    report = tmp_path / "report"
    assert main([*base[:-1], "--output", str(report), "--metric", "openimages", "--max-images", "0"]) == 0
    page = (report / "index.html").read_text()
    assert "Open Images challenge metric" in page and "<b>100.0</b>" in page

    assert main([*base, "--output", str(tmp_path / "x"), "--metric", "lvis"]) == 2
    assert capsys.readouterr().err.startswith("error: --metric 'lvis': choose from coco, openimages")
