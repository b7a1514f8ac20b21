"""The detectron2 oracle fixtures stay meaningful: made from the weights the tests regenerate, with plenty of
confident detections of several classes and masks that are neither empty nor whole boxes.

tests/fixtures/detectron2_{r50,r101,x101_32x8d}_fpn_3x.json were written by tools/detectron2_fixtures.py
(--arch r50, r101, x101): detectron2 (commit 02b5c4e295e990042a714712c21dc79b731e8833, built on the CPU) ran
DefaultPredictor with COCO-InstanceSegmentation/mask_rcnn_{R_50,R_101,X_101_32x8d}_FPN_3x.yaml and MODEL.DEVICE=cpu
on three images of the shared data, with the weights of tests/detectron2_weights.py (seed 0) in a model-zoo pickle.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))  # detectron2_weights

from detectron2_weights import detectron2_fpn_weights, weights_digest  # noqa: E402

FIXTURES = Path(__file__).parents[1] / "fixtures"
# fixture -> (its weights' shape, least classes per image, least score, least share of distinct scores). Random
# deeper backbones let fewer classes win and repeat detections along the image borders with nearly equal scores;
# R50's fixture is the one that checks the class mapping and the ranking exactly (test_detectron2_parity.py).
EXPECTED = {
    "detectron2_r50_fpn_3x.json": ({"depth": 50}, 4, 0.5, 0.8),
    "detectron2_r101_fpn_3x.json": ({"depth": 101}, 2, 0.5, 0.3),
    "detectron2_x101_32x8d_fpn_3x.json": ({"depth": 101, "groups": 32, "width_per_group": 8}, 4, 0.3, 0.5),
}


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def fixture(request) -> dict:
    return {"name": request.param, **json.loads((FIXTURES / request.param).read_text())}


def test_the_fixtures_were_made_from_the_weights_the_tests_regenerate(fixture):
    made = dict(fixture["weights"])
    shape = EXPECTED[fixture["name"]][0]
    assert made.pop("sha256") == weights_digest(detectron2_fpn_weights(**shape, seed=0))
    assert made == {"made_by": "tests/detectron2_weights.py detectron2_fpn_weights", **shape, "seed": 0}
    assert fixture["detectron2"]["commit"] == "02b5c4e295e990042a714712c21dc79b731e8833"


def test_detections_are_plentiful_confident_and_varied(fixture, shared_data):
    _, least_classes, least_score, distinct = EXPECTED[fixture["name"]]
    assert len(fixture["images"]) == 3
    for image in fixture["images"]:
        assert (shared_data / image["file"]).is_file()
        detections = image["detections"]
        scores = np.array([d["score"] for d in detections])
        classes = {d["class"] for d in detections}
        assert len(detections) >= 50 and len(classes) >= least_classes, image["file"]
        assert all(0 <= c < 80 for c in classes), image["file"]
        assert np.median(scores) > 0.8 and scores.min() > least_score, image["file"]
        assert len(np.unique(scores.round(4))) > distinct * len(scores), "ties would make the ranking arbitrary"

        fills = []
        for d in detections:
            mask = mask_util.decode({"size": d["mask"]["size"], "counts": d["mask"]["counts"].encode()})
            assert mask.shape == (image["height"], image["width"])
            x1, y1, x2, y2 = d["box"]
            fills.append(mask.sum() / max((x2 - x1) * (y2 - y1), 1e-6))
        assert min(fills) > 0 and 0.3 < np.median(fills) < 0.8, image["file"]
