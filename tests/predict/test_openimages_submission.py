"""`maskrcnn predict --format openimages-csv`: the challenge submission file agrees with predictions.json."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from maskrcnn.cli import main
from maskrcnn.data.openimages.submission import decode_mask, encode_mask
from maskrcnn.structures.masks import rle_to_bitmap


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, (h, w) in {"0a1b2c3d4e5f6071": (90, 120), "ff00ee11dd22cc33": (64, 80)}.items():
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(folder / f"{name}.jpg")
    return folder


def test_submission_rows_hold_every_detection_with_its_mask(tiny_checkpoint, images, tmp_path):
    classes = tmp_path / "annotations.json"  # the training json: categories with their MIDs, by category id
    classes.write_text(json.dumps({"categories": [{"id": 5, "name": "triangle", "mid": "/m/0tri"},
                                                  {"id": 1, "name": "square", "mid": "/m/0sq"},
                                                  {"id": 2, "name": "circle", "mid": "/m/0ci"}]}))  # fmt: skip
    out = tmp_path / "out"
    assert main(["predict", "--weights", str(tiny_checkpoint), "--output", str(out), "--score-threshold", "0.05",
                 "--format", "openimages-csv", "--openimages-classes", str(classes), "--no-overlays",
                 str(images)]) == 0  # fmt: skip
    results = json.loads((out / "predictions.json").read_text())
    with open(out / "openimages-submission.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["ImageID"] for r in rows] == ["0a1b2c3d4e5f6071", "ff00ee11dd22cc33"]
    mids = {1: "/m/0sq", 2: "/m/0ci", 5: "/m/0tri"}
    total = 0
    for row in rows:
        width, height = int(row["ImageWidth"]), int(row["ImageHeight"])
        assert (width, height) == Image.open(images / f"{row['ImageID']}.jpg").size
        fields = row["PredictionString"].split()
        assert len(fields) % 3 == 0
        got = [(fields[i], float(fields[i + 1]), decode_mask(fields[i + 2], height=height, width=width))
               for i in range(0, len(fields), 3)]  # fmt: skip
        want = [r for r in results if r["file_name"].endswith(f"{row['ImageID']}.jpg")]
        assert len(got) == len(want)
        for (mid, score, mask), r in zip(got, want):
            assert mid == mids[r["category_id"]] and score == pytest.approx(r["score"], abs=1e-5)
            assert np.array_equal(mask, rle_to_bitmap(r["segmentation"]))
        total += len(got)
    assert total == len(results) > 0


def test_mask_encoding_is_the_challenge_one():
    rng = np.random.default_rng(0)
    mask = rng.random((37, 53)) < 0.3
    assert np.array_equal(decode_mask(encode_mask(mask), height=37, width=53), mask)
    from oid_oracle import ORACLE_DIR, oracle_module

    if (ORACLE_DIR / "run_oid_eval.py").is_file():  # the reference codec, when the oracle is there
        oracle = oracle_module()
        assert encode_mask(mask) == oracle.encode_binary_mask(mask)
        assert np.array_equal(oracle.decode_binary_mask(encode_mask(mask), 37, 53).astype(bool), mask)


def test_classes_without_a_mid_are_one_error_line(tiny_checkpoint, images, tmp_path, capsys):
    code = main(["predict", "--weights", str(tiny_checkpoint), "--output", str(tmp_path / "out"),
                 "--format", "openimages-csv", str(images)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: no Open Images MID for classes 'square', 'circle', 'triangle'")
    assert "--openimages-classes" in err and not (tmp_path / "out").exists()
