"""Items 7-9: bad config values, flags and files give one clear line (exit status 2 for bad usage or input, 1 for
images skipped), never a hang, a traceback or a silently changed value."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from faults import one_error_line, train_args, train_job
from PIL import Image

from maskrcnn.checkpoint import save_checkpoint
from maskrcnn.cli import build_parser, main
from maskrcnn.config import preset
from maskrcnn.engine.train import train
from maskrcnn.errors import UserError
from maskrcnn.model.build import build_model
from maskrcnn.predict import Predictor


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """The small model with random weights in our format, for the shapes' 3 classes."""
    torch.manual_seed(0)
    config = preset("small")
    path = tmp_path_factory.mktemp("weights") / "small.pt"
    save_checkpoint(path, model=build_model(config.model), config=config, class_names=["a", "b", "c"],
                    category_ids=[1, 2, 3])  # fmt: skip
    return path


@pytest.mark.parametrize(
    "override, message",
    [
        ("solver.batch_size=0", "solver.batch_size=0: must be >= 1"),  # hung, memory growing
        ("solver.max_iter=-5", "solver.max_iter=-5: must be >= 1"),  # exited 0 with untrained weights
        ("model.num_classes=1", "model.num_classes=1, but"),  # silently replaced by the data's 3
        ("solver.base_lr=-1", "solver.base_lr=-1.0: must be >= 0"),  # tracebacks, from here on
        ("solver.schedule=linear", "solver.schedule=linear: must be one of step, cosine"),
        ("model.backbone.depth=7", "model.backbone.depth=7: must be one of 18, 34, 50, 101"),
    ],
)
def test_bad_config_values_are_one_line_naming_key_value_and_rule(override, message, shapes_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(shapes_data, out, "solver.max_iter=2", override)) == 2
    error = one_error_line(capsys.readouterr().err)
    assert message in error, error
    if override.startswith("model.num_classes"):
        assert "3 classes (square, circle, triangle)" in error
    assert not out.exists()


def test_a_class_count_that_the_user_did_not_choose_is_replaced_with_a_note(shapes_data, tmp_path, capsys):
    # small's num_classes is 3; a preset value is the config's default, not the user's choice
    summary = train(train_job(shapes_data, tmp_path / "run", "solver.max_iter=1", "model.num_classes=7"))
    assert summary["iteration"] == 1
    assert "note: model.num_classes=7 of the config is replaced by 3" in capsys.readouterr().err


def test_output_naming_an_existing_file(shapes_data, weights, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    assert main(train_args(shapes_data, taken, "solver.max_iter=1")) == 2
    assert f"output is not a folder: {taken}" in one_error_line(capsys.readouterr().err)
    image = shapes_data["val"].parent / "images" / "000000.png"
    assert main(["predict", "--weights", str(weights), "--output", str(taken), str(image)]) == 2
    assert f"output is not a folder: {taken}" in one_error_line(capsys.readouterr().err)
    assert taken.read_text() == "not a folder"


def test_an_image_array_without_pixels(weights):
    predictor = Predictor.from_file(weights)
    with pytest.raises(UserError, match=r"shape \(0, 0, 3\) has no pixels"):
        predictor.predict(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(UserError, match="has no pixels"):
        predictor.predict(np.zeros((5, 0, 3), np.uint8))


def test_images_over_the_pixel_limit_are_skipped_named_and_counted(weights, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "images"
    folder.mkdir()
    for name, side in (("a.png", 64), ("big.png", 100), ("c.png", 64)):
        Image.fromarray(np.full((side, side, 3), 90, np.uint8)).save(folder / name)
    # Pillow's own limit, lowered: every image is over it, big.png over twice (where Pillow refuses to open it).
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)
    out = tmp_path / "out"
    assert main(["predict", "--weights", str(weights), "--output", str(out), "--max-pixels", "5000", str(folder)]) == 1
    err = capsys.readouterr().err
    assert f"{folder / 'big.png'} is 100x100 = 10,000 pixels, more than the 5,000 allowed" in err
    assert "1 image(s) skipped" in one_error_line(err) and "1 of them over --max-pixels 5000" in err
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png", "c.png"]  # over Pillow's limit, under ours
    assert {r["file_name"] for r in json.loads((out / "predictions.json").read_text())} <= {
        str(folder / "a.png"), str(folder / "c.png")}  # fmt: skip
    assert Image.MAX_IMAGE_PIXELS == 3000  # Pillow's setting is left as it was


def test_an_unreadable_image_is_named_with_the_reason(weights, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "empty.png").write_bytes(b"")
    (folder / "page.jpg").write_text("<html>proxy error</html>")
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(folder / "good.png")
    assert main(["predict", "--weights", str(weights), "--output", str(tmp_path / "out"), str(folder)]) == 1
    err = capsys.readouterr().err
    assert f"{folder / 'empty.png'}: the file is empty" in err
    assert f"{folder / 'page.jpg'}: not an image format Pillow reads" in err and "starts with b'<html>" in err
    assert "2 image(s) skipped" in one_error_line(err)


class _Payload:
    """Unpickling this creates a file: what a malicious checkpoint would do, harmlessly."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("kind", ["text", "pickle", "onnx"])
def test_a_weights_file_that_is_not_a_checkpoint(kind, tmp_path, capsys):
    marker = tmp_path / "code-ran"
    path = tmp_path / ("model.onnx" if kind == "onnx" else "weights.pt")
    if kind == "pickle":
        torch.save({"model": _Payload(marker)}, path)
    else:
        path.write_text("<html>a login page, not weights</html>")
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    assert main(["predict", "--weights", str(path), "--output", str(tmp_path / "out"), str(image)]) == 2
    err = capsys.readouterr().err
    error = one_error_line(err)
    assert "weights_only" not in err and "False" not in err  # never the advice to unpickle anything
    expected = {
        "text": "not a PyTorch checkpoint (torch.save writes a zip archive), but a file that starts with b'<html>a ",
        "pickle": "holds Python objects other than tensors and plain data (such as io.open)",
        "onnx": "is an ONNX model: run it with --backend onnxruntime",
    }[kind]
    assert expected in error, error
    assert not marker.exists()


def test_via_conversion_whose_images_are_all_missing(tmp_path, capsys):
    via = {f"{name}123": {"filename": name, "size": 123, "regions": []} for name in ("a.jpg", "b.jpg")}
    (tmp_path / "via.json").write_text(json.dumps(via))
    out = tmp_path / "out"
    assert main(["convert", "--format", "via", str(tmp_path / "via.json"), "--output", str(out)]) == 2
    error = one_error_line(capsys.readouterr().err)
    assert "none of the 2 images of" in error and "'a.jpg' not found" in error
    assert not (out / "annotations.json").exists()


def test_results_matched_by_file_name_need_no_image_id(shapes_data, tmp_path, capsys):
    gt = json.loads(shapes_data["val"].read_text())
    names = {img["id"]: img["file_name"] for img in gt["images"]}
    results = [{"file_name": names[a["image_id"]], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in gt["annotations"]]  # fmt: skip
    (tmp_path / "results.json").write_text(json.dumps(results))
    out = tmp_path / "eval"
    assert main(["evaluate", "--data", str(shapes_data["val"]), "--predictions", str(tmp_path / "results.json"),
                 "--iou-types", "bbox", "--no-report", "--output", str(out)]) == 0  # fmt: skip
    assert json.loads((out / "metrics.json").read_text())["bbox"]["AP"] == 100.0


def test_every_command_defaults_to_the_cpu():
    parser = build_parser()
    common = {"evaluate": ["--data", "g.json", "--predictions", "r.json", "--output", "o"],
              "predict": ["--weights", "w.pt", "--output", "o", "a.png"],
              "train": ["--data", "t.json", "--output", "o"], "demo": []}  # fmt: skip
    assert {command: parser.parse_args([command, *args]).device for command, args in common.items()} == dict.fromkeys(
        common, "cpu")  # fmt: skip


@pytest.mark.parametrize("case", ["val_images", "batch_size", "iou_types", "yolo_images", "openimages_split"])
def test_library_errors_name_the_flag_of_the_command(case, shapes_data, weights, tmp_path, capsys):
    """Library code speaks of its arguments (``val_images_dir``, ``batch_size``); the command line names its flags."""
    val = tmp_path / "val" / "annotations.json"  # the validation json without its images
    val.parent.mkdir()
    val.write_text(shapes_data["val"].read_text())
    boxes_only = tmp_path / "boxes.json"
    gt = json.loads(shapes_data["val"].read_text())
    boxes_only.write_text(json.dumps([{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                                       "score": 1.0} for a in gt["annotations"]]))  # fmt: skip
    (tmp_path / "yolo" / "labels").mkdir(parents=True)
    for split in ("train", "validation"):
        (tmp_path / "oi" / f"{split}-annotations-object-segmentation.csv").parent.mkdir(exist_ok=True)
        (tmp_path / "oi" / f"{split}-annotations-object-segmentation.csv").write_text("MaskPath,ImageID\n")
    evaluate = ["evaluate", "--data", str(shapes_data["val"]), "--output", str(tmp_path / "eval"), "--no-report"]
    argv, expected = {
        "val_images": (train_args(shapes_data, tmp_path / "run", flags=("--val", str(val))),
                       f"looked in {val.parent}, {val.parent / 'images'}, {val.parent / 'JPEGImages'}; give the "
                       "images folder as --val-images"),
        "batch_size": ([*evaluate, "--weights", str(weights), "--batch-size", "0"],
                       "--batch-size must be at least 1, got 0"),
        "iou_types": ([*evaluate, "--predictions", str(boxes_only)],
                      "mask AP (segm) needs one in every result (score boxes only with --iou-types bbox)"),
        "yolo_images": (["convert", "--format", "yolo-seg", str(tmp_path / "yolo" / "labels"), "--output",
                         str(tmp_path / "out")], f"of {tmp_path / 'yolo' / 'labels'}; give it as --images)"),
        "openimages_split": (["convert", "--format", "openimages", str(tmp_path / "oi"), "--output",
                              str(tmp_path / "out")], "(train, validation): choose one with --split"),
    }[case]  # fmt: skip
    assert main(argv) == 2
    error = one_error_line(capsys.readouterr().err)
    assert error.endswith(expected), error
    assert "_dir" not in error and "batch_size" not in error and "iou_types" not in error
