import json

import numpy as np
import pytest
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.structures.masks import rle_to_bitmap


@pytest.fixture
def image_folder(tmp_path, shared_data):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((90, 120, 3)) * 255).astype(np.uint8)).save(folder / "rgb.jpg")
    Image.fromarray((rng.random((64, 80)) * 255).astype(np.uint8), mode="L").save(folder / "gray.png")
    Image.fromarray((rng.random((70, 50, 4)) * 255).astype(np.uint8), mode="RGBA").save(folder / "sub" / "rgba.png")
    Image.fromarray((rng.random((60, 60)) * 65535).astype(np.uint16)).save(folder / "deep16.png")
    real = (shared_data / "car-parts/train/JPEGImages/train10.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(real[: len(real) // 3])
    (folder / "garbage.png").write_bytes(b"definitely not a png")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    return folder


def test_predict_folder_with_corrupt_files(tiny_checkpoint, image_folder, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["predict", "--weights", str(tiny_checkpoint), "--output", str(out), "--score-threshold", "0",
               "--batch-size", "2", str(image_folder)])
    err = capsys.readouterr().err
    assert rc == 1
    assert "truncated.jpg" in err and "garbage.png" in err
    assert sorted(p.name for p in out.glob("*.png")) == ["deep16.png", "gray.png", "rgb.png", "rgba.png"]
    for name, size in [("rgb.png", (120, 90)), ("gray.png", (80, 64)), ("rgba.png", (50, 70)), ("deep16.png", (60, 60))]:
        overlay = Image.open(out / name)
        assert overlay.size == size and overlay.mode == "RGB"

    results = json.loads((out / "predictions.json").read_text())
    assert results, "a random model with threshold 0 detects something"
    by_file = {}
    for r in results:
        assert set(r) >= {"file_name", "image_id", "category_id", "category_name", "bbox", "score", "segmentation"}
        assert r["category_id"] in (1, 2, 5)
        assert r["category_name"] == {1: "square", 2: "circle", 5: "triangle"}[r["category_id"]]
        assert isinstance(r["segmentation"]["counts"], str)
        by_file.setdefault(r["file_name"], set()).add(r["image_id"])
        x, y, w, h = r["bbox"]
        assert w > 0 and h > 0
        mask = rle_to_bitmap(r["segmentation"])
        assert mask.shape == tuple(r["segmentation"]["size"])
    assert {name.split("/")[-1] for name in by_file} <= {"rgb.jpg", "gray.png", "rgba.png", "deep16.png"}
    assert all(len(ids) == 1 for ids in by_file.values())
    assert len({next(iter(ids)) for ids in by_file.values()}) == len(by_file)  # one id per image


def test_score_threshold_filters(tiny_checkpoint, image_folder, tmp_path):
    low, high = tmp_path / "low", tmp_path / "high"
    image = str(image_folder / "rgb.jpg")
    assert main(["predict", "--weights", str(tiny_checkpoint), "--output", str(low), "--score-threshold", "0", image]) == 0
    assert main(["predict", "--weights", str(tiny_checkpoint), "--output", str(high), "--score-threshold", "0.3",
                 "--no-overlays", image]) == 0
    all_scores = [r["score"] for r in json.loads((low / "predictions.json").read_text())]
    kept = [r["score"] for r in json.loads((high / "predictions.json").read_text())]
    assert kept == [s for s in all_scores if s >= 0.3]
    assert not list(high.glob("*.png"))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--weights", "{missing}", "{image}"], "weights file not found"),
        (["--weights", "{ckpt}"], "no input images"),
        (["--weights", "{ckpt}", "{empty}"], "no image files found"),
        (["--weights", "{ckpt}", "--device", "abacus", "{image}"], "device"),
        (["--weights", "{ckpt}", "{tmp}/does-not-exist.jpg"], "input not found"),
        (["--weights", "{bad_ckpt}", "{image}"], "cannot read weights file"),
    ],
)
def test_bad_invocations_are_one_line_errors(argv, message, tiny_checkpoint, image_folder, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.pt").write_bytes(b"\x00" * 64)
    values = {"missing": str(tmp_path / "missing.pt"), "image": str(image_folder / "rgb.jpg"),
              "ckpt": str(tiny_checkpoint), "empty": str(tmp_path / "empty"), "tmp": str(tmp_path),
              "bad_ckpt": str(tmp_path / "bad.pt")}
    argv = [a.format(**values) for a in argv]
    rc = main(["predict", "--output", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err


def test_python_api_accepts_paths_pil_and_arrays(tiny_checkpoint, image_folder):
    import maskrcnn

    model = maskrcnn.load(str(tiny_checkpoint))
    path = image_folder / "rgb.jpg"
    array = np.asarray(Image.open(path).convert("RGB"))
    results = model.predict([path, Image.open(path), array], score_threshold=0.0, batch_size=2)
    assert len(results) == 3
    for r in results:  # batched and single forward passes differ by float rounding only
        np.testing.assert_allclose(r.boxes, results[0].boxes, rtol=0, atol=1e-3)
        assert r.masks.shape == (len(r), 90, 120) and r.masks.dtype == bool
    single = model.predict(str(path), score_threshold=0.0)
    np.testing.assert_allclose(single[0].scores, results[0].scores, rtol=0, atol=1e-5)
