"""Synthetic shapes: reproducible bytes, masks that match what is painted, sizes and overlaps as promised."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from maskrcnn.cli import main
from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.shapes import generate_shapes


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def shapes_200(tmp_path_factory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("shapes") / "out", num_images=200, seed=3)


def test_same_seed_gives_identical_files_and_prefixes_do_not_depend_on_the_count(tmp_path):
    a = _files(generate_shapes(tmp_path / "a", num_images=12, seed=5).parent)
    b = _files(generate_shapes(tmp_path / "b", num_images=12, seed=5).parent)
    assert a == b and len(a) == 13
    c = _files(generate_shapes(tmp_path / "c", num_images=12, seed=6).parent)
    assert all(a[k] != c[k] for k in a if k.endswith(".png"))
    d = _files(generate_shapes(tmp_path / "d", num_images=5, seed=5).parent)
    assert all(d[f"images/{i:06d}.png"] == a[f"images/{i:06d}.png"] for i in range(5))


def test_masks_are_the_visible_painted_shapes(shapes_200):
    data = json.loads(shapes_200.read_text())
    assert [c["name"] for c in data["categories"]] == ["square", "circle", "triangle"]
    per_image: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        per_image.setdefault(ann["image_id"], []).append(ann)
    contrast = []
    for image in data["images"][:60]:
        pixels = np.asarray(Image.open(shapes_200.parent / image["file_name"])).astype(float)
        assert pixels.shape == (128, 128, 3)
        anns = per_image.get(image["id"], [])
        masks = [mask_utils.decode({**a["segmentation"], "counts": a["segmentation"]["counts"].encode()}) for a in anns]
        if masks:
            assert np.stack(masks).sum(axis=0).max() == 1  # visible parts never overlap
        covered = np.zeros((128, 128), bool)
        for m in masks:
            covered |= m.astype(bool)
        for ann, m in zip(anns, masks, strict=True):
            m = m.astype(bool)
            assert ann["area"] == m.sum() >= 40
            ys, xs = np.nonzero(m)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            # A one-pixel ring just outside the mask, on background, looks different from the shape inside.
            grown = np.zeros_like(m)
            grown[1:, :] |= m[:-1, :]
            grown[:-1, :] |= m[1:, :]
            grown[:, 1:] |= m[:, :-1]
            grown[:, :-1] |= m[:, 1:]
            ring = grown & ~covered
            if ring.sum() >= 20:
                contrast.append(np.linalg.norm(pixels[m].mean(axis=0) - pixels[ring].mean(axis=0)))
    assert len(contrast) > 50
    assert np.median(contrast) > 40


def test_counts_sizes_and_overlaps(shapes_200):
    data = json.loads(shapes_200.read_text())
    counts = np.bincount([a["image_id"] for a in data["annotations"]], minlength=201)[1:]
    assert counts.max() <= 4
    assert 2 <= (counts == 0).sum() <= 25  # about 5% of 200 images have no shapes
    assert {a["category_id"] for a in data["annotations"]} == {1, 2, 3}
    sides = np.array([max(a["bbox"][2:]) for a in data["annotations"]])
    assert sides.min() >= 8 and sides.max() <= 92 and np.median(sides) > 25
    overlapping = 0
    for image_id in range(1, 201):
        boxes = [a["bbox"] for a in data["annotations"] if a["image_id"] == image_id]
        for i in range(len(boxes)):
            for j in range(i):
                (x1, y1, w1, h1), (x2, y2, w2, h2) = boxes[i], boxes[j]
                overlapping += min(x1 + w1, x2 + w2) > max(x1, x2) and min(y1 + h1, y2 + h2) > max(y1, y2)
    assert overlapping > 20


def test_loads_as_a_coco_dataset(shapes_200):
    dataset = CocoDataset(shapes_200)
    assert dataset.class_names == ["square", "circle", "triangle"] and dataset.category_ids == [1, 2, 3]
    image, target = dataset[0]
    assert image.shape == (3, 128, 128) and target["masks"].shape[1:] == (128, 128)


def test_generation_is_fast(tmp_path):
    start = time.perf_counter()
    generate_shapes(tmp_path, num_images=100, seed=0)
    assert time.perf_counter() - start < 5.0  # about 0.6 s on 2 shared cores


def test_cli_data_shapes(tmp_path, capsys):
    assert main(["data", "shapes", "--num-images", "3", "--output", str(tmp_path / "s"), "--image-size", "64"]) == 0
    assert "annotations.json" in capsys.readouterr().out
    data = json.loads((tmp_path / "s" / "annotations.json").read_text())
    assert len(data["images"]) == 3 and data["images"][0]["width"] == 64
    assert Image.open(tmp_path / "s" / data["images"][2]["file_name"]).size == (64, 64)
    assert main(["data", "shapes", "--num-images", "0", "--output", str(tmp_path / "t")]) == 2
    assert capsys.readouterr().err.strip() == "error: --num-images must be at least 1, got 0"
