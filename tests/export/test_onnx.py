"""The ONNX export against the PyTorch model it came from: same detections and masks on real images of several sizes
(the parity test's matching rule), the score threshold input, the metadata, and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import maskrcnn
from maskrcnn.errors import UserError
from maskrcnn.export import OnnxPredictor, export_onnx

from torchvision_oracle import match_detections


@pytest.fixture(scope="module")
def exported(small_checkpoint, tmp_path_factory):
    predictor = maskrcnn.load(small_checkpoint)
    path = tmp_path_factory.mktemp("onnx") / "small.onnx"
    report = export_onnx(predictor, path)
    assert report["path"] == path and path.stat().st_size == report["bytes"]
    return predictor, OnnxPredictor.from_file(path), path


def assert_same_detections(torch_predictor, onnx_predictor, images):
    total = matched = 0
    mask_ious = []
    for image in images:
        expected = torch_predictor.predict_arrays([image], score_threshold=0.0)[0]
        got = onnx_predictor.predict_arrays([image], score_threshold=0.0)[0]
        assert len(expected) >= 20, "the model must detect plenty for the comparison to mean anything"
        assert got.masks.shape == (len(got), *image.shape[:2]) and got.masks.dtype == bool
        assert got.masks.any(axis=(1, 2)).mean() > 0.5  # masks are not empty
        match = match_detections(expected, got)
        matched, total = matched + match.matched, total + match.total
        mask_ious += match.mask_ious
    print(f"\nONNX matched {matched}/{total}, worst mask IoU {min(mask_ious):.4f}")
    assert matched / total >= 0.97, f"{matched}/{total} detections matched"
    assert min(mask_ious) > 0.98, f"worst mask IoU {min(mask_ious):.3f}"


def test_onnx_runtime_gives_the_pytorch_detections_and_masks_at_any_image_size(exported, real_images):
    torch_predictor, onnx_predictor, _ = exported
    rng = np.random.default_rng(0)
    odd = (rng.random((97, 333, 3)) * 255).astype(np.uint8)  # neither side a multiple of the padding
    assert_same_detections(torch_predictor, onnx_predictor, [*real_images, odd])


def test_torchvision_conventions_export_too(torchvision_style_checkpoint, real_images, tmp_path):
    """Unaligned RoIAlign (ONNX RoiAlign's output_half_pixel mode) and torchvision's anchor stride rule."""
    predictor = maskrcnn.load(torchvision_style_checkpoint)
    export_onnx(predictor, tmp_path / "tv_style.onnx")
    assert_same_detections(predictor, OnnxPredictor.from_file(tmp_path / "tv_style.onnx"), real_images[1:])


def test_score_threshold_drops_detections_inside_the_graph(exported, real_images):
    torch_predictor, onnx_predictor, _ = exported
    image = real_images[0]
    everything = onnx_predictor.run(image, score_threshold=0.0)
    confident = onnx_predictor.run(image, score_threshold=0.8)
    keep = everything["scores"] >= 0.8
    assert 0 < keep.sum() < len(keep)
    np.testing.assert_array_equal(confident["labels"], everything["labels"][keep])
    np.testing.assert_allclose(confident["boxes"], everything["boxes"][keep], atol=1e-4)
    np.testing.assert_allclose(confident["mask_probs"], everything["mask_probs"][keep], atol=1e-5)
    # and the PyTorch predictor with the same threshold keeps the same detections
    expected = torch_predictor.predict_arrays([image], score_threshold=0.8)[0]
    got = onnx_predictor.predict_arrays([image], score_threshold=0.8)[0]
    assert match_detections(expected, got)[:2] == (len(expected), len(expected)) and len(got) == len(expected)


def test_metadata_carries_classes_and_config(exported, small_checkpoint):
    _, onnx_predictor, _ = exported
    assert onnx_predictor.class_names == ["square", "circle", "triangle"]
    assert onnx_predictor.category_ids == [1, 2, 5]
    assert onnx_predictor.mask_threshold == 0.5 and onnx_predictor.mask_paste == "torchvision"
    assert onnx_predictor.config["model"]["backbone"]["depth"] == 18
    prediction = onnx_predictor.predict(np.zeros((64, 80, 3), dtype=np.uint8), score_threshold=0.0)[0]
    assert prediction.masks.shape[1:] == (64, 80)
    assert set(prediction.category_ids.tolist()) <= {1, 2, 5}
    assert prediction.class_names == [["square", "circle", "triangle"][k - 1] for k in prediction.labels]


def test_cli_export_then_predict_with_onnxruntime_matches_the_torch_backend(small_checkpoint, shared_data, tmp_path, capsys):
    from maskrcnn.cli import main

    model = tmp_path / "model.onnx"
    assert main(["export", "--weights", str(small_checkpoint), "--format", "onnx", "--output", str(model)]) == 0
    assert "ONNX opset 17" in capsys.readouterr().out and model.is_file()

    images = [shared_data / "car-parts/train/JPEGImages/train1.jpg",
              shared_data / "coco128-seg/images/train2017/000000000009.jpg"]
    runs = {}
    for backend, weights in (("torch", small_checkpoint), ("onnxruntime", model)):
        out = tmp_path / backend
        code = main(["predict", *map(str, images), "--weights", str(weights), "--backend", backend,
                     "--output", str(out), "--score-threshold", "0.3"])
        assert code == 0
        runs[backend] = json.loads((out / "predictions.json").read_text())
        assert len(list(out.glob("*.png"))) == 2
    torch_results, onnx_results = runs["torch"], runs["onnxruntime"]
    assert len(torch_results) > 10
    key = lambda r: (r["image_id"], -r["score"])  # noqa: E731
    assert len(onnx_results) == len(torch_results)
    for a, b in zip(sorted(torch_results, key=key), sorted(onnx_results, key=key)):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        assert abs(a["score"] - b["score"]) < 1e-3
        np.testing.assert_allclose(a["bbox"], b["bbox"], atol=0.05)


def test_missing_corrupt_or_foreign_onnx_files_give_one_line_errors(exported, tmp_path, shared_data, capsys):
    import onnx
    from onnx import TensorProto, helper

    from maskrcnn.cli import main

    image = str(shared_data / "car-parts/train/JPEGImages/train1.jpg")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07this is not a protobuf" * 10)
    foreign = tmp_path / "foreign.onnx"
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17)]), foreign)
    unknown_rule = tmp_path / "unknown-rule.onnx"
    proto = onnx.load(str(exported[2]))
    next(p for p in proto.metadata_props if p.key == "mask_paste").value = "sideways"
    onnx.save(proto, unknown_rule)
    cases = [
        (tmp_path / "missing.onnx", "ONNX model file not found"),
        (corrupt, "cannot load ONNX model"),
        (foreign, "not a maskrcnn export"),
        (unknown_rule, "unknown mask pasting rule 'sideways'"),
    ]
    for path, message in cases:
        code = main(["predict", image, "--weights", str(path), "--backend", "onnxruntime", "--output",
                     str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code == 2
        assert err.startswith("error: ") and message in err and str(path) in err
        assert err.count("\n") == 1, err  # one line, no traceback
        with pytest.raises(UserError, match=message):
            OnnxPredictor.from_file(path)
    code = main(["predict", image, "--weights", str(foreign), "--backend", "onnxruntime", "--device", "cuda",
                 "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "runs on the CPU only" in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()  # nothing written for a run that could not start


def test_export_errors_are_one_line(small_checkpoint, tmp_path, capsys):
    from maskrcnn.cli import main

    cases = [
        (["--weights", str(small_checkpoint), "--output", str(tmp_path / "m.onnx"), "--opset", "13"], "opset"),
        (["--weights", str(small_checkpoint), "--output", str(tmp_path)], "is a folder"),
        (["--weights", str(tmp_path / "nope.pt"), "--output", str(tmp_path / "m.onnx")], "weights file not found"),
    ]
    for args, message in cases:
        assert main(["export", "--format", "onnx", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "m.onnx").exists()
