"""detectron2 is the oracle: a model-zoo file loads through ``maskrcnn.load`` and gives detectron2's detections and
masks on real images, through the fast inference path (Predictor).

How the fixtures were made: tools/detectron2_fixtures.py ran detectron2 (commit
02b5c4e295e990042a714712c21dc79b731e8833, built for the CPU outside the repository) with its
COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml config, MODEL.DEVICE=cpu and ``DefaultPredictor`` on three
images of the shared data (512 x 512, 640 x 480, 2048 x 1365), with the R50-FPN weights of
tests/detectron2_weights.py (numpy seed 0) in a model-zoo pickle, and saved every detection's box, score, class
and mask RLE in tests/fixtures/detectron2_r50_fpn_3x.json. This test regenerates those weights (the fixture
records their digest, checked by test_detectron2_fixtures.py), writes them as a model-zoo ``.pkl`` and loads it
like a downloaded file (the restricted unpickler, detectron2_config).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))  # detectron2_weights, torchvision_oracle

from detectron2_weights import detectron2_fpn_weights, write_model_zoo_pickle  # noqa: E402
from torchvision_oracle import Detections, match_detections  # noqa: E402

import maskrcnn  # noqa: E402
from maskrcnn.data.coco_classes import COCO_CATEGORIES  # noqa: E402
from maskrcnn.data.images import read_image  # noqa: E402

FIXTURE = Path(__file__).parents[1] / "fixtures" / "detectron2_r50_fpn_3x.json"


@pytest.fixture(scope="module")
def d2_file(tmp_path_factory) -> Path:
    fixture = json.loads(FIXTURE.read_text())["weights"]
    path = tmp_path_factory.mktemp("d2") / "model_final_random.pkl"
    write_model_zoo_pickle(path, detectron2_fpn_weights(depth=fixture["depth"], seed=fixture["seed"]))
    return path


def detectron2_detections(image: dict) -> Detections:
    """One fixture image's detections, with detectron2's contiguous classes 0-79 as our labels 1-80."""
    dets = image["detections"]
    masks = [mask_util.decode({"size": d["mask"]["size"], "counts": d["mask"]["counts"].encode()}) for d in dets]
    return Detections(
        boxes=np.array([d["box"] for d in dets], np.float32).reshape(-1, 4),
        labels=np.array([d["class"] + 1 for d in dets], np.int64),
        scores=np.array([d["score"] for d in dets], np.float32),
        masks=np.stack(masks).astype(bool),
    )


def test_a_model_zoo_file_gives_detectron2s_detections_and_masks(d2_file, shared_data):
    ours = maskrcnn.load(d2_file, device="cpu")
    assert ours.class_names == [name for _, name in COCO_CATEGORIES]
    assert ours.category_ids[:3] == [1, 2, 3] and ours.category_ids[-1] == 90
    model = ours.config.model
    assert model.backbone.stride_in_1x1 and model.input.resize == "detectron2"
    assert model.roi_heads.mask_paste == "detectron2" and model.roi_heads.sampling_ratio == 0

    total = matched = 0
    mask_ious: list[float] = []
    for image in json.loads(FIXTURE.read_text())["images"]:
        pixels = read_image(shared_data / image["file"])
        expected = detectron2_detections(image)
        got = ours.predict(pixels, score_threshold=0.0)[0]
        assert got.masks.shape[1:] == pixels.shape[:2]
        assert len(got) <= len(expected.scores) * 1.03  # matching is one way: no extra detections either
        match = match_detections(expected, got, mask_size=None)  # detectron2 pastes without snapping to a grid
        matched, total, mask_ious = matched + match.matched, total + match.total, mask_ious + match.mask_ious

    print(f"\nDETECTRON2 PARITY matched {matched}/{total}, worst mask IoU {min(mask_ious):.4f}")
    assert total >= 150
    assert matched / total >= 0.97, f"{matched}/{total} detections matched"
    assert min(mask_ious) > 0.98, f"worst mask IoU {min(mask_ious):.3f}"


def test_an_onnx_export_of_a_model_zoo_file_gives_the_pytorch_detections_and_masks(d2_file, shared_data, tmp_path):
    """The export records detectron2's pasting rule, so ONNX Runtime's masks are the PyTorch path's (pasted by
    torchvision's rule instead, they would differ along every mask edge), and the graph resizes by PIL's fixed-point
    arithmetic (structures/resize.py), so it sees the image the PyTorch path sees."""
    pytest.importorskip("onnxruntime")
    from maskrcnn.export import OnnxPredictor, export_onnx

    export_onnx(maskrcnn.load(d2_file), tmp_path / "d2.onnx")
    onnx_predictor = OnnxPredictor.from_file(tmp_path / "d2.onnx")
    assert onnx_predictor.mask_paste == "detectron2"
    pixels = read_image(shared_data / json.loads(FIXTURE.read_text())["images"][1]["file"])  # 640 x 480
    expected = maskrcnn.load(d2_file).predict(pixels, score_threshold=0.0)[0]
    got = onnx_predictor.predict_arrays([pixels], score_threshold=0.0)[0]
    match = match_detections(expected, got, mask_size=None)
    print(f"\nDETECTRON2 ONNX matched {match.matched}/{match.total}, worst mask IoU {min(match.mask_ious):.4f}")
    assert len(expected) >= 50 and match.matched / match.total >= 0.97
    assert min(match.mask_ious) > 0.98
