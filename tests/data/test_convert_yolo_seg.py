"""YOLO-seg -> COCO: coco128-seg checked against its label files, and one small dataset per skip rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.coco_classes import COCO_CATEGORIES
from maskrcnn.data.convert.yolo_seg import convert_yolo_seg, read_names
from maskrcnn.errors import UserError


def _shoelace(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


@pytest.fixture(scope="module")
def coco128(shared_data: Path, tmp_path_factory) -> tuple[Path, Path, object]:
    source = shared_data / "coco128-seg"
    output = tmp_path_factory.mktemp("coco128")
    return source, output, convert_yolo_seg(source, output)


def test_coco128_counts(coco128):
    source, output, report = coco128
    labels = {p.stem: p for p in (source / "labels" / "train2017").glob("*.txt")}
    images = {p.stem: p for p in (source / "images" / "train2017").glob("*.jpg")}
    expected = sum(len(labels[s].read_text().splitlines()) for s in labels if s in images)
    data = json.loads((output / "annotations.json").read_text())
    assert report.images == len(data["images"]) == len(images) == 128  # images without labels are kept
    assert report.annotations == len(data["annotations"]) == expected
    orphans = sorted(set(labels) - set(images))
    assert len(orphans) == 2
    assert report.skipped == [
        f"coco128-seg/labels/train2017/{stem}.txt: no image for it in coco128-seg/images/train2017" for stem in orphans
    ]
    assert [(c["id"], c["name"]) for c in data["categories"]] == list(COCO_CATEGORIES)
    unlabelled = [im for im in data["images"] if Path(im["file_name"]).stem not in labels]
    assert len(unlabelled) == 2
    assert not any(a["image_id"] in {im["id"] for im in unlabelled} for a in data["annotations"])


def test_coco128_instances_match_their_lines(coco128):
    source, output, _ = coco128
    data = json.loads((output / "annotations.json").read_text())
    image = next(im for im in data["images"] if im["file_name"] == "images/train2017/000000000009.jpg")
    with Image.open(source / "images" / "train2017" / "000000000009.jpg") as pil:
        assert (image["width"], image["height"]) == pil.size
    lines = (source / "labels" / "train2017" / "000000000009.txt").read_text().splitlines()
    anns = [a for a in data["annotations"] if a["image_id"] == image["id"]]
    assert len(anns) == len(lines)
    for line, ann in zip(lines, anns, strict=True):
        values = [float(v) for v in line.split()]
        assert ann["category_id"] == COCO_CATEGORIES[int(values[0])][0]
        points = np.array(values[1:]).reshape(-1, 2) * [image["width"], image["height"]]
        exact = _shoelace(points)
        assert abs(ann["area"] - exact) <= 0.03 * exact + 30  # rasterised pixels vs exact polygon area
        x, y, w, h = ann["bbox"]
        assert abs(x - points[:, 0].min()) < 0.01 and abs(x + w - points[:, 0].max()) < 0.01
        assert abs(y - points[:, 1].min()) < 0.01 and abs(y + h - points[:, 1].max()) < 0.01


def test_coco128_areas_agree_with_shoelace_overall(coco128):
    _, output, _ = coco128
    data = json.loads((output / "annotations.json").read_text())
    big = [a for a in data["annotations"] if a["area"] > 2000]
    ratios = [a["area"] / _shoelace(np.array(a["segmentation"][0]).reshape(-1, 2)) for a in big]
    assert len(big) > 200
    # Some coco128-seg polygons cross themselves (several parts joined into one outline), where the shoelace sum
    # cancels out; for the simple ones (about 95%) rasterised and exact areas agree within 3%.
    assert 0.99 < np.median(ratios) < 1.01
    assert np.mean(np.abs(np.array(ratios) - 1) < 0.03) > 0.9


def test_coco128_loads_with_the_classes_present(coco128):
    source, output, _ = coco128
    images = {p.stem for p in (source / "images" / "train2017").glob("*.jpg")}
    present = {
        int(line.split()[0])
        for p in (source / "labels" / "train2017").glob("*.txt")
        if p.stem in images
        for line in p.read_text().splitlines()
    }
    dataset = CocoDataset(output / "annotations.json")
    assert len(dataset) == 128
    assert dataset.class_names == [COCO_CATEGORIES[i][1] for i in sorted(present)]
    assert dataset.category_ids == [COCO_CATEGORIES[i][0] for i in sorted(present)]


def test_labels_folder_as_input(shared_data, tmp_path):
    report = convert_yolo_seg(shared_data / "coco128-seg" / "labels" / "train2017", tmp_path)
    assert report.images == 128 and len(report.skipped) == 2
    data = json.loads((tmp_path / "annotations.json").read_text())
    assert data["images"][0]["file_name"] == "images/000000000009.jpg"
    assert (tmp_path / "images" / "000000000009.jpg").is_file()
    assert convert_yolo_seg(shared_data / "coco128-seg" / "labels" / "train2017", tmp_path).images == 128  # re-run


# ----------------------------------------------------------------------------------------------- small datasets
def _dataset(root: Path, write_image, labels: dict[str, str], *, images=None) -> Path:
    """root/images/<name>.png (100 x 50 each) and root/labels/<name>.txt."""
    for name in images if images is not None else labels:
        write_image(root / "images" / f"{name}.png", 100, 50)
    for name, text in labels.items():
        (root / "labels" / f"{name}.txt").parent.mkdir(parents=True, exist_ok=True)
        (root / "labels" / f"{name}.txt").write_text(text)
    return root


def test_every_skip_rule_is_reported_with_file_and_line(tmp_path, write_image):
    lines = [
        "0 0.1 0.2 0.5 0.2 0.5 0.8 0.1 0.8",  # good: 40 x 30 px
        "1 0.5 0.5 0.2 0.2",  # detection box
        "0 0.1 0.1",  # 1 point (2 points would be 4 values: a detection box)
        "0 0.1 0.1 0.2 0.2 0.3",  # odd
        "0 0.1 0.1 0.2 x 0.3 0.3",  # not a number
        "7 0.1 0.1 0.2 0.1 0.2 0.2",  # unknown class with 2 names
        "1 1.2 0.1 1.5 0.1 1.5 0.9",  # right of the image
        "",  # blank lines are fine
        "1 0.9 0.5 1.1 0.5 1.1 0.9 0.9 0.9",  # half outside: clipped to 10 x 20 px
        "0.5 0.1 0.1 0.2 0.1 0.2 0.2",  # class not an integer
    ]
    root = _dataset(tmp_path / "ds", write_image, {"a": "\n".join(lines), "orphan": "0 0.1 0.1 0.2 0.1 0.2 0.2"},
                    images=["a", "empty"])
    (root / "names.txt").write_text("cat\n\ndog\n")
    report = convert_yolo_seg(root, tmp_path / "out", names_file=root / "names.txt")
    assert report.skipped == [
        "ds/labels/orphan.txt: no image for it in ds/images",
        "ds/labels/a.txt:2: box-only line (YOLO detection label), not a segmentation polygon",
        "ds/labels/a.txt:3: polygon has 1 point (need 3)",
        "ds/labels/a.txt:4: odd number of coordinates (5)",
        "ds/labels/a.txt:5: not a number: 'x'",
        "ds/labels/a.txt:6: unknown class id 7 (the names list has 2 classes, ids 0..1)",
        "ds/labels/a.txt:7: polygon lies outside the 100x50 image",
        "ds/labels/a.txt:10: class id '0.5' is not an integer",
    ]
    data = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert [(c["id"], c["name"]) for c in data["categories"]] == [(1, "cat"), (2, "dog")]
    assert [im["file_name"] for im in data["images"]] == ["images/a.png", "images/empty.png"]
    assert [(a["category_id"], a["bbox"], a["area"]) for a in data["annotations"]] == [
        (1, [10, 10, 40, 30], 1200),
        (2, [90, 25, 10, 20], 200),
    ]


def test_names_from_data_yaml(tmp_path, write_image):
    root = _dataset(tmp_path / "ds", write_image, {"train/a": "1 0.1 0.1 0.5 0.1 0.5 0.5"})
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nnames:\n  0: ant\n  1: bee\n")
    report = convert_yolo_seg(root, tmp_path / "out")
    data = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert [c["name"] for c in data["categories"]] == ["ant", "bee"]
    assert data["annotations"][0]["category_id"] == 2
    assert data["images"][0]["file_name"] == "images/train/a.png"  # split subfolder kept
    assert report.skipped == []


def test_read_names_formats_and_errors(tmp_path):
    (tmp_path / "list.yaml").write_text("names: [a, b, c]\n")
    assert read_names(tmp_path / "list.yaml") == ["a", "b", "c"]
    (tmp_path / "gap.yaml").write_text("names: {0: a, 2: c}\n")
    with pytest.raises(UserError, match=r"gap.yaml: 'names' must map the class ids 0..1"):
        read_names(tmp_path / "gap.yaml")
    (tmp_path / "none.yaml").write_text("nc: 3\n")
    with pytest.raises(UserError, match="has no 'names:' list"):
        read_names(tmp_path / "none.yaml")
    (tmp_path / "twice.txt").write_text("a\nb\na\n")
    with pytest.raises(UserError, match="class names repeat: a"):
        read_names(tmp_path / "twice.txt")
    with pytest.raises(UserError, match="cannot read names file"):
        read_names(tmp_path / "missing.txt")


def test_missing_folders_raise_user_errors(tmp_path, write_image):
    with pytest.raises(UserError, match="input not found"):
        convert_yolo_seg(tmp_path / "nothing", tmp_path / "out")
    (tmp_path / "ds" / "labels").mkdir(parents=True)
    with pytest.raises(UserError, match=r"images folder not found: .*ds/images"):
        convert_yolo_seg(tmp_path / "ds", tmp_path / "out")
    (tmp_path / "ds" / "images").mkdir()
    with pytest.raises(UserError, match="no YOLO label files"):
        convert_yolo_seg(tmp_path / "ds", tmp_path / "out")
