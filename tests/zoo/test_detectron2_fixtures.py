"""The detectron2 oracle fixtures stay meaningful: made from the weights the tests regenerate, with plenty of
confident detections of several classes and masks that are neither empty nor whole boxes.

tests/fixtures/detectron2_r50_fpn_3x.json was written by tools/detectron2_fixtures.py: detectron2 (commit
02b5c4e295e990042a714712c21dc79b731e8833, built on the CPU) ran DefaultPredictor with
COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml and MODEL.DEVICE=cpu on three images of the shared data, with
the weights of tests/detectron2_weights.py (R50-FPN, seed 0) in a model-zoo pickle.
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

FIXTURE = Path(__file__).parents[1] / "fixtures" / "detectron2_r50_fpn_3x.json"


@pytest.fixture(scope="module")
def fixture() -> dict:
    return json.loads(FIXTURE.read_text())


def test_the_fixtures_were_made_from_the_weights_the_tests_regenerate(fixture):
    made = fixture["weights"]
    assert made["depth"] == 50 and made["seed"] == 0
    assert weights_digest(detectron2_fpn_weights(depth=made["depth"], seed=made["seed"])) == made["sha256"]
    assert fixture["detectron2"]["commit"] == "02b5c4e295e990042a714712c21dc79b731e8833"


def test_detections_are_plentiful_confident_and_varied(fixture, shared_data):
    assert len(fixture["images"]) == 3
    for image in fixture["images"]:
        assert (shared_data / image["file"]).is_file()
        detections = image["detections"]
        scores = np.array([d["score"] for d in detections])
        classes = {d["class"] for d in detections}
        assert len(detections) >= 50 and len(classes) >= 4 and all(0 <= c < 80 for c in classes), image["file"]
        assert np.median(scores) > 0.8 and scores.min() > 0.5, image["file"]
        assert len(np.unique(scores.round(4))) > 0.8 * len(scores), "ties would make the ranking arbitrary"

        fills = []
        for d in detections:
            mask = mask_util.decode({"size": d["mask"]["size"], "counts": d["mask"]["counts"].encode()})
            assert mask.shape == (image["height"], image["width"])
            x1, y1, x2, y2 = d["box"]
            fills.append(mask.sum() / max((x2 - x1) * (y2 - y1), 1e-6))
        assert min(fills) > 0 and 0.3 < np.median(fills) < 0.8, image["file"]
