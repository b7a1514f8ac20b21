"""VIA -> COCO: the balloon set checked against its source json, and one small file per skip rule."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.convert.via import convert_via, dataset_class_name
from maskrcnn.errors import UserError


def _shoelace(xs: list[float], ys: list[float]) -> float:
    x, y = np.array(xs, float), np.array(ys, float)
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _source_regions(via_json: Path) -> dict[str, list[dict]]:
    """filename -> its regions' shape attributes, read straight from the VIA file."""
    data = json.loads(via_json.read_text())
    out = {}
    for entry in data.values():
        regions = entry["regions"]
        regions = list(regions.values()) if isinstance(regions, dict) else regions
        out[entry["filename"]] = [r["shape_attributes"] for r in regions]
    return out


@pytest.fixture(scope="module")
def balloon_train(shared_data: Path, tmp_path_factory) -> tuple[Path, Path, object]:
    source = shared_data / "balloon" / "train"
    output = tmp_path_factory.mktemp("balloon")
    report = convert_via(source, output)
    return source, output, report


def test_balloon_counts_and_class(balloon_train):
    source, output, report = balloon_train
    regions = _source_regions(source / "via_region_data.json")
    data = json.loads((output / "annotations.json").read_text())
    assert report.skipped == []
    assert report.images == len(data["images"]) == len(regions) == 61
    assert report.annotations == len(data["annotations"]) == sum(len(r) for r in regions.values()) == 255
    assert data["categories"] == [{"id": 1, "name": "balloon", "supercategory": ""}]
    # a known image keeps exactly its regions
    name = "34020010494_e5cb88e1c4_k.jpg"
    image = next(im for im in data["images"] if im["file_name"] == f"images/{name}")
    assert (image["width"], image["height"]) == (2048, 1536)
    assert sum(a["image_id"] == image["id"] for a in data["annotations"]) == len(regions[name])


def test_balloon_masks_match_the_source_polygons(balloon_train):
    source, output, _ = balloon_train
    regions = _source_regions(source / "via_region_data.json")
    data = json.loads((output / "annotations.json").read_text())
    images = {im["id"]: im for im in data["images"]}
    by_file: dict[str, list[dict]] = {}
    for ann in data["annotations"]:
        by_file.setdefault(images[ann["image_id"]]["file_name"].removeprefix("images/"), []).append(ann)
    for name, shapes in regions.items():
        image = next(im for im in data["images"] if im["file_name"] == f"images/{name}")
        for shape, ann in zip(shapes, by_file.get(name, []), strict=True):
            xs, ys = shape["all_points_x"], shape["all_points_y"]
            exact = _shoelace(xs, ys)
            rle = mask_utils.frPyObjects(ann["segmentation"], image["height"], image["width"])
            pixels = int(mask_utils.area(mask_utils.merge(rle)))
            assert ann["area"] == pixels
            assert abs(pixels - exact) / exact < 0.02
            x, y, w, h = ann["bbox"]
            assert (x, y) == (max(min(xs), 0), max(min(ys), 0))
            assert (x + w, y + h) == (min(max(xs), image["width"]), min(max(ys), image["height"]))


def test_balloon_images_are_placed_and_the_result_loads(balloon_train):
    source, output, _ = balloon_train
    data = json.loads((output / "annotations.json").read_text())
    for image in data["images"][:5]:
        placed = output / image["file_name"]
        assert placed.read_bytes() == (source / Path(image["file_name"]).name).read_bytes()
    dataset = CocoDataset(output / "annotations.json")
    assert len(dataset) == 61 and dataset.class_names == ["balloon"]
    assert dataset.images_dir == output


def test_rerun_into_the_same_output(shared_data, tmp_path):
    source = shared_data / "balloon" / "val" / "via_region_data.json"
    first = convert_via(source, tmp_path)
    text = (tmp_path / "annotations.json").read_text()
    second = convert_via(source, tmp_path)
    assert (first.images, first.annotations) == (second.images, second.annotations) == (13, 50)
    assert (tmp_path / "annotations.json").read_text() == text
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_dataset_class_name_rule(tmp_path):
    assert dataset_class_name(tmp_path / "balloon" / "train" / "via_region_data.json") == "balloon"
    assert dataset_class_name(tmp_path / "kites" / "val" / "x.json") == "kites"
    assert dataset_class_name(tmp_path / "kites" / "x.json") == "kites"


# ----------------------------------------------------------------------------------------------- small files
def _poly(xs, ys) -> dict:
    return {"name": "polygon", "all_points_x": xs, "all_points_y": ys}


def _via(folder: Path, write_image, entries: dict[str, list[dict]], *, missing=(), sizes=None) -> Path:
    """folder/via_region_data.json with one 100 x 80 image per entry (except those in ``missing``)."""
    data = {}
    for name, regions in entries.items():
        if name not in missing:
            write_image(folder / name, *(sizes or {}).get(name, (100, 80)))
        data[f"{name}123"] = {"filename": name, "size": 123, "regions": regions, "file_attributes": {}}
    path = folder / "via_region_data.json"
    path.write_text(json.dumps(data))
    return path


def _region(shape: dict, **attributes) -> dict:
    return {"shape_attributes": shape, "region_attributes": attributes}


def test_every_skip_rule_is_reported_with_file_key_and_region(tmp_path, write_image):
    folder = tmp_path / "toys"
    via_json = _via(
        folder,
        write_image,
        {
            "a.png": [
                _region(_poly([10, 50, 50, 10], [10, 10, 40, 40])),  # good square, 40 x 30
                _region(_poly([1, 5], [1, 5])),  # 2 points
                _region({"name": "rect", "x": 200, "y": 10, "width": 20, "height": 20}),  # outside the 100 x 80 image
                _region({"name": "point", "cx": 5, "cy": 5}),
                _region({"name": "rect", "x": 90, "y": 70, "width": 20, "height": 20}),  # clipped to 10 x 10
                _region({"name": "circle", "cx": 50, "cy": 40}),  # no radius
            ],
            "gone.png": [_region(_poly([1, 9, 9], [1, 1, 9]))],
            "empty.png": [],
        },
        missing=("gone.png",),
    )
    report = convert_via(folder, tmp_path / "out")
    where = str(via_json)
    assert report.skipped == [
        f"{where}: 'a.png123' region 1: polygon has 2 points (need 3)",
        f"{where}: 'a.png123' region 2: polygon lies outside the 100x80 image",
        f"{where}: 'a.png123' region 3: shape 'point' is not a region "
        "(need polygon, polyline, rect, circle or ellipse)",
        f"{where}: 'a.png123' region 5: circle lacks r",
        f"{where}: 'gone.png123': image 'gone.png' not found in {folder} or {folder / 'images'} or "
        f"{folder / 'JPEGImages'} (1 region skipped)",
    ]
    data = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert [im["file_name"] for im in data["images"]] == ["images/a.png", "images/empty.png"]  # empty image kept
    assert data["categories"] == [{"id": 1, "name": "toys", "supercategory": ""}]
    assert [a["bbox"] for a in data["annotations"]] == [[10, 10, 40, 30], [90, 70, 10, 10]]
    assert [a["area"] for a in data["annotations"]] == [1200, 100]
    assert report.images == 2 and report.annotations == 2


def test_classes_from_region_attributes_and_shapes(tmp_path, write_image):
    folder = tmp_path / "pets"
    _via(
        folder,
        write_image,
        {
            "a.png": [
                _region({"name": "circle", "cx": 30, "cy": 30, "r": 20}, kind="dog"),
                _region({"name": "ellipse", "cx": 70, "cy": 40, "rx": 20, "ry": 10, "theta": 0.5}, kind="cat"),
                _region(_poly([1, 9, 9], [1, 1, 9]), kind=""),  # no class: skipped
                _region({"name": "polyline", "all_points_x": [60, 90, 90], "all_points_y": [60, 60, 75]},
                        kind={"cat": True, "dog": False}),  # a ticked checkbox
            ]
        },
    )
    report = convert_via(folder / "via_region_data.json", tmp_path / "out")
    where = folder / "via_region_data.json"
    assert report.skipped == [f"{where}: 'a.png123' region 2: no class in region attribute 'kind'"]
    data = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert [(c["id"], c["name"]) for c in data["categories"]] == [(1, "cat"), (2, "dog")]
    assert [a["category_id"] for a in data["annotations"]] == [2, 1, 1]
    circle, ellipse = data["annotations"][0]["area"], data["annotations"][1]["area"]
    assert abs(circle - math.pi * 20**2) / (math.pi * 20**2) < 0.03
    assert abs(ellipse - math.pi * 20 * 10) / (math.pi * 20 * 10) < 0.03


def test_via2_project_with_list_regions_and_an_images_folder(tmp_path, write_image):
    write_image(tmp_path / "pictures" / "x.jpg", 64, 48)
    project = {
        "_via_settings": {},
        "_via_img_metadata": {
            "x.jpg1": {"filename": "x.jpg", "size": 1, "regions": [_region(_poly([0, 20, 20], [0, 0, 20]))]}
        },
        "_via_attributes": {"region": {}, "file": {}},
    }
    (tmp_path / "project.json").write_text(json.dumps(project))
    report = convert_via(tmp_path / "project.json", tmp_path / "out", images_dir=tmp_path / "pictures")
    assert (report.images, report.annotations, report.skipped) == (1, 1, [])
    data = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert data["images"] == [{"id": 1, "file_name": "images/x.jpg", "width": 64, "height": 48}]


def test_unusable_inputs_raise_user_errors(tmp_path):
    with pytest.raises(UserError, match="input not found"):
        convert_via(tmp_path / "nothing", tmp_path / "out")
    with pytest.raises(UserError, match="no VIA json in"):
        convert_via(tmp_path, tmp_path / "out")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(UserError, match=r"broken.json is not valid json"):
        convert_via(tmp_path / "broken.json", tmp_path / "out")
    (tmp_path / "coco.json").write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(UserError, match="not a VIA annotation file"):
        convert_via(tmp_path / "coco.json", tmp_path / "out")
    (tmp_path / "v3.json").write_text(json.dumps({"project": {}, "file": {}, "metadata": {}, "view": {}}))
    with pytest.raises(UserError, match="VIA 3 project"):
        convert_via(tmp_path / "v3.json", tmp_path / "out")
