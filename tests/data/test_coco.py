"""CocoDataset: car-parts as it is, and small hand-made jsons for RLE, crowds, mappings, validation and folders."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from maskrcnn.data.coco import CocoDataset, find_images_dir, load_coco_json
from maskrcnn.data.transforms import Compose, RandomHorizontalFlip, ResizeShortestEdge
from maskrcnn.errors import UserError
from coco_rle import uncompressed_rle


@pytest.fixture(scope="module")
def car_parts(shared_data: Path) -> Path:
    return shared_data / "car-parts" / "train" / "annotations.json"


def _shoelace(flat: list[float]) -> float:
    x, y = np.array(flat[0::2]), np.array(flat[1::2])
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


# ----------------------------------------------------------------------------------------------- car-parts
def test_car_parts_drops_the_background_category_and_keeps_18_classes(car_parts, caplog):
    with caplog.at_level(logging.WARNING, logger="maskrcnn.data.coco"):
        dataset = CocoDataset(car_parts)
    raw = json.loads(car_parts.read_text())
    assert len(dataset) == len(raw["images"]) == 400
    assert len(dataset.class_names) == 18
    assert "_background_" not in dataset.class_names
    names = {c["id"]: c["name"] for c in raw["categories"]}
    assert dataset.category_ids == sorted({a["category_id"] for a in raw["annotations"]})
    assert dataset.class_names == [names[c] for c in dataset.category_ids]
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1 and "_background_" in notes[0]
    assert dataset.images_dir == car_parts.parent / "JPEGImages"
    assert dataset.image_ids == [im["id"] for im in raw["images"]]
    assert dataset.aspect_ratios() == [im["width"] / im["height"] for im in raw["images"]]
    assert dataset.image_path(0) == car_parts.parent / "JPEGImages" / raw["images"][0]["file_name"]


def test_car_parts_multi_polygon_instance_covers_all_its_polygons(car_parts):
    dataset = CocoDataset(car_parts)
    raw = json.loads(car_parts.read_text())
    ann = next(a for a in raw["annotations"] if len(a["segmentation"]) >= 3)
    same_image = [a for a in raw["annotations"] if a["image_id"] == ann["image_id"]]
    index = dataset.image_ids.index(ann["image_id"])
    image, target = dataset[index]

    assert image.shape == (3, 512, 512) and image.dtype == torch.uint8
    expected_labels = [dataset.category_ids.index(a["category_id"]) + 1 for a in same_image]
    assert target["labels"].tolist() == expected_labels  # instances in json order, none lost
    assert target["masks"].shape == (len(same_image), 512, 512) and target["masks"].dtype == torch.uint8
    assert target["crowd_boxes"].shape == (0, 4)  # iscrowd is the boolean False throughout car-parts
    assert target["image_id"] == ann["image_id"] and target["orig_size"] == (512, 512)

    mask = target["masks"][same_image.index(ann)].numpy().astype(bool)
    for polygon in ann["segmentation"]:  # each polygon, drawn by PIL, lies inside the instance's mask
        canvas = Image.new("L", (512, 512))
        ImageDraw.Draw(canvas).polygon(list(map(float, polygon)), fill=1)
        drawn = np.asarray(canvas).astype(bool)
        assert (drawn & mask).sum() / drawn.sum() > 0.9
    polygons_area = sum(_shoelace(p) for p in ann["segmentation"])
    assert abs(mask.sum() - polygons_area) / polygons_area < 0.05
    boxes = target["boxes"].numpy()
    ys, xs = np.nonzero(mask)
    assert boxes[same_image.index(ann)].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_car_parts_with_training_transform(car_parts):
    transform = Compose([ResizeShortestEdge((256, 320), 1000), RandomHorizontalFlip(0.5)])
    dataset = CocoDataset(car_parts, transform=transform)
    image, target = dataset[3, 12345]
    size = image.shape[1]
    assert size in (256, 320) and image.shape == (3, size, size)
    assert target["masks"].shape[1:] == (size, size)
    boxes = target["boxes"]
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert (boxes >= 0).all() and (boxes <= size).all()
    again_image, again_target = dataset[3, 12345]
    assert torch.equal(image, again_image) and torch.equal(target["masks"], again_target["masks"])
    plain_image, _ = dataset[3]
    assert torch.equal(plain_image, dataset[3, 3][0])  # an int key uses the index as the seed
    sizes = {dataset[3, seed][0].shape[1] for seed in range(12)}
    assert sizes == {256, 320}


def test_boolean_iscrowd_true_becomes_an_ignore_region(car_parts, tmp_path):
    raw = json.loads(car_parts.read_text())
    image_id = raw["annotations"][0]["image_id"]
    crowd = raw["annotations"][0]
    crowd["iscrowd"] = True
    (tmp_path / "annotations.json").write_text(json.dumps(raw))
    dataset = CocoDataset(tmp_path / "annotations.json", car_parts.parent / "JPEGImages")
    _, target = dataset[dataset.image_ids.index(image_id)]
    n_image = sum(a["image_id"] == image_id for a in raw["annotations"])
    assert len(target["labels"]) == n_image - 1
    xs, ys = crowd["segmentation"][0][0::2], crowd["segmentation"][0][1::2]
    for polygon in crowd["segmentation"][1:]:
        xs, ys = xs + polygon[0::2], ys + polygon[1::2]
    np.testing.assert_allclose(target["crowd_boxes"].numpy(), [[min(xs), min(ys), max(xs), max(ys)]], atol=1e-3)


# ----------------------------------------------------------------------------------------------- small jsons
def _rle(bitmap: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(bitmap.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _dataset_dir(tmp_path: Path, write_image, annotations: list[dict], *, images=None, categories=None) -> Path:
    """tmp_path/annotations.json with images 0.png (40x30) and 1.png (20x20) in tmp_path/images/."""
    images = images or [
        {"id": 10, "file_name": "0.png", "width": 40, "height": 30},
        {"id": 11, "file_name": "1.png", "width": 20, "height": 20},
    ]
    for image in images:
        write_image(tmp_path / "images" / image["file_name"], image["width"], image["height"])
    categories = categories or [{"id": 5, "name": "cat"}, {"id": 9, "name": "dog"}, {"id": 3, "name": "unused"}]
    for i, ann in enumerate(annotations):
        ann.setdefault("id", i + 1)
    data = {"images": images, "annotations": annotations, "categories": categories}
    (tmp_path / "annotations.json").write_text(json.dumps(data))
    return tmp_path / "annotations.json"


def _bitmap(height: int, width: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    bitmap = np.zeros((height, width), dtype=bool)
    bitmap[y0:y1, x0:x1] = True
    return bitmap


def test_compressed_and_uncompressed_rle_and_crowd(tmp_path, write_image):
    a = _bitmap(30, 40, 2, 10, 3, 20)
    b = _bitmap(30, 40, 5, 25, 30, 40)
    b[0, 0] = True  # starts with a set pixel: the uncompressed counts begin with 0
    crowd = _bitmap(30, 40, 20, 30, 0, 10)
    json_path = _dataset_dir(
        tmp_path,
        write_image,
        [
            {"image_id": 10, "category_id": 9, "segmentation": _rle(a), "iscrowd": 0},
            {"image_id": 10, "category_id": 5, "segmentation": uncompressed_rle(b), "iscrowd": 0},
            {"image_id": 10, "category_id": 5, "segmentation": uncompressed_rle(crowd), "iscrowd": 1},
        ],
    )
    dataset = CocoDataset(json_path)
    assert dataset.category_ids == [5, 9] and dataset.class_names == ["cat", "dog"]
    _, target = dataset[0]
    assert target["labels"].tolist() == [2, 1]
    assert np.array_equal(target["masks"][0].numpy(), a)
    assert np.array_equal(target["masks"][1].numpy(), b)
    assert target["boxes"].tolist() == [[3, 2, 20, 10], [0, 0, 40, 25]]
    assert target["crowd_boxes"].tolist() == [[0, 20, 10, 30]]
    _, empty = dataset[1]  # image without annotations is kept
    assert empty["masks"].shape == (0, 20, 20) and empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)


def test_a_category_with_only_crowd_annotations_is_not_a_class(tmp_path, write_image):
    json_path = _dataset_dir(
        tmp_path,
        write_image,
        [
            {"image_id": 10, "category_id": 9, "segmentation": [[1, 1, 9, 1, 9, 9]], "iscrowd": 1},
            {"image_id": 11, "category_id": 5, "segmentation": [[1, 1, 9, 1, 9, 9]]},
        ],
    )
    assert CocoDataset(json_path).class_names == ["cat"]


def test_given_mapping_is_used_exactly_and_other_categories_skipped(tmp_path, write_image, caplog):
    square = [[2, 2, 12, 2, 12, 12, 2, 12]]
    json_path = _dataset_dir(
        tmp_path,
        write_image,
        [
            {"image_id": 10, "category_id": 9, "segmentation": square},
            {"image_id": 10, "category_id": 5, "segmentation": square},
            {"image_id": 11, "category_id": 5, "segmentation": square},
        ],
    )
    with caplog.at_level(logging.WARNING, logger="maskrcnn.data.coco"):
        dataset = CocoDataset(json_path, category_ids=[3, 9])
    assert dataset.class_names == ["unused", "dog"]
    assert dataset[0][1]["labels"].tolist() == [2]
    assert dataset[1][1]["labels"].tolist() == []
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1 and "skipped 2 annotations" in notes[0] and "ids 5" in notes[0]
    with pytest.raises(UserError, match=r"ids \[42\]"):
        CocoDataset(json_path, category_ids=[9, 42])


def test_degenerate_annotations_are_skipped_with_one_counted_note(tmp_path, write_image, caplog):
    good = [[2, 2, 12, 2, 12, 12]]
    json_path = _dataset_dir(
        tmp_path,
        write_image,
        [
            {"image_id": 10, "category_id": 5, "segmentation": good},
            {"image_id": 10, "category_id": 5, "segmentation": []},
            {"image_id": 10, "category_id": 5},
            {"image_id": 10, "category_id": 5, "segmentation": [[1, 1, 5, 5]]},  # 2 points
            {"image_id": 10, "category_id": 5, "segmentation": [[1, 1, 5, 5, 9, 9]]},  # collinear: zero area
            {"image_id": 10, "category_id": 5, "segmentation": _rle(np.zeros((30, 40), bool))},
            {"image_id": 10, "category_id": 5, "segmentation": [[1, 1, 5], [20, 20, 30, 20, 30, 28, 20, 28]]},  # 1 of 2
        ],
    )
    with caplog.at_level(logging.WARNING, logger="maskrcnn.data.coco"):
        dataset = CocoDataset(json_path)
    notes = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(notes) == 1 and "skipped 5 annotations" in notes[0]
    _, target = dataset[0]
    assert len(target["labels"]) == 2
    assert target["boxes"][1].tolist() == [20, 20, 30, 28]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["annotations"][0].update(image_id=99), r"annotation #0 \(id 1\) refers to image_id 99"),
        (lambda d: d["annotations"][0].update(category_id=77), r"refers to category_id 77"),
        (lambda d: d["annotations"][0].pop("category_id"), r"annotation #0 \(id 1\) lacks category_id"),
        (lambda d: d["images"][1].pop("width"), r"image #1 \(id 11\) lacks width"),
        (lambda d: d["images"][1].update(id=10), r"repeats image id 10"),
        (lambda d: d["categories"].append({"id": 5, "name": "again"}), r"repeats category id 5"),
        (lambda d: d["annotations"][0].update(iscrowd=2), r"iscrowd 2"),
        (lambda d: d.pop("categories"), r"'categories' is missing"),
        (lambda d: d["annotations"][0].update(segmentation={"size": [5, 5], "counts": "1"}), r"RLE size \[5, 5\]"),
        (lambda d: d["annotations"][0].update(segmentation=[["a", "b"]]), r"list of numbers"),
        (lambda d: d["annotations"][0].update(segmentation={"counts": "1"}), r"an RLE needs 'size' and 'counts'"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), r"has bbox \[1, 2, 3\], expected \[x, y, width"),
        (lambda d: d["images"][0].update(id="10"), r"image #0 \(id 10\) needs an integer 'id'"),
        (lambda d: d["categories"][0].pop("name"), r"category #0 \(id 5\) needs an integer 'id' and a 'name'"),
        (lambda d: d["images"][0].update(neg_category_ids=[4]), r"'neg_category_ids' names category ids \[4\]"),
    ],
)
def test_bad_json_entries_are_named_alike_in_training_and_evaluation(tmp_path, write_image, change, message):
    from maskrcnn.evaluation.coco_eval import load_ground_truth

    triangle = {"image_id": 10, "category_id": 5, "segmentation": [[1, 1, 9, 1, 9, 9]]}
    json_path = _dataset_dir(tmp_path, write_image, [triangle])
    data = json.loads(json_path.read_text())
    change(data)
    json_path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=message) as training:
        CocoDataset(json_path)
    with pytest.raises(UserError) as evaluation:
        load_ground_truth(json_path)
    assert str(training.value) == str(evaluation.value) and str(json_path) in str(training.value)


def test_unreadable_json(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [}')
    with pytest.raises(UserError, match=r"bad.json is not valid json: .* line 1"):
        load_coco_json(bad)
    with pytest.raises(UserError, match="annotations not found"):
        load_coco_json(tmp_path / "missing.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(UserError, match="expected a COCO json object"):
        load_coco_json(tmp_path / "list.json")


def test_missing_images_are_reported_together(tmp_path, write_image):
    json_path = _dataset_dir(tmp_path, write_image, [])
    (tmp_path / "images" / "1.png").unlink()
    data = json.loads(json_path.read_text())
    data["images"].append({"id": 12, "file_name": "gone.jpg", "width": 5, "height": 5})
    json_path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"2 of the 3 images .* are missing from .*images: '1.png', 'gone.jpg'"):
        CocoDataset(json_path)


def test_image_folder_resolution(tmp_path, write_image):
    # images/ beside the json
    json_path = _dataset_dir(tmp_path / "a", write_image, [])
    assert CocoDataset(json_path).images_dir == tmp_path / "a" / "images"
    # file names relative to the json's folder (as converters write them)
    data = json.loads(json_path.read_text())
    for image in data["images"]:
        image["file_name"] = "images/" + image["file_name"]
    (tmp_path / "a" / "rel.json").write_text(json.dumps(data))
    assert CocoDataset(tmp_path / "a" / "rel.json").images_dir == tmp_path / "a"
    # JPEGImages/
    (tmp_path / "a" / "images").rename(tmp_path / "a" / "JPEGImages")
    assert find_images_dir(json_path, ["0.png", "1.png"]) == tmp_path / "a" / "JPEGImages"
    # explicit folder elsewhere
    (tmp_path / "a" / "JPEGImages").rename(tmp_path / "elsewhere")
    dataset = CocoDataset(json_path, tmp_path / "elsewhere")
    assert dataset.image_path(1) == tmp_path / "elsewhere" / "1.png"
    with pytest.raises(UserError, match=r"cannot find the images .* '0.png'.*JPEGImages"):
        CocoDataset(json_path)
    with pytest.raises(UserError, match="images folder not found"):
        CocoDataset(json_path, tmp_path / "nowhere")


def test_image_of_another_size_than_the_json_says(tmp_path, write_image):
    json_path = _dataset_dir(tmp_path, write_image, [])
    write_image(tmp_path / "images" / "1.png", 21, 20)
    dataset = CocoDataset(json_path)
    with pytest.raises(UserError, match=r"1.png is 21x20 pixels but .* says 20x20"):
        dataset[1]


def test_dataset_pickles_for_worker_processes(tmp_path, write_image):
    triangle = {"image_id": 11, "category_id": 5, "segmentation": [[1, 1, 9, 1, 9, 9]]}
    json_path = _dataset_dir(tmp_path, write_image, [triangle])
    dataset = CocoDataset(json_path, transform=Compose([ResizeShortestEdge((40,), 100), RandomHorizontalFlip(0.5)]))
    copy = pickle.loads(pickle.dumps(dataset))
    for key in (1, (1, 7), (1, 8)):
        assert torch.equal(dataset[key][1]["masks"], copy[key][1]["masks"])
    with pytest.raises(IndexError):
        dataset[2]
    assert torch.equal(dataset[-1][0], dataset[1][0])


# ----------------------------------------------------------------------------------------------- one set of rules
def test_training_and_evaluation_read_every_kind_of_annotation_the_same_way(tmp_path, write_image, caplog):
    """One json with each kind of annotation: training and evaluation keep the same instances, box-only instances
    and crowd regions, and skip the same annotations."""
    from maskrcnn.evaluation.coco_eval import load_ground_truth

    square = [[2, 2, 12, 2, 12, 12, 2, 12]]
    annotations = [
        {"image_id": 10, "category_id": 5, "segmentation": square, "bbox": [2, 2, 10, 10]},  # 1: a mask
        {"image_id": 10, "category_id": 9, "segmentation": _rle(_bitmap(30, 40, 2, 10, 20, 30))},  # 2: RLE, no bbox
        {"image_id": 10, "category_id": 9, "segmentation": square, "bbox": [14, 4, 6, 8], "isbbox": True},  # 3
        {"image_id": 10, "category_id": 5, "segmentation": [[1, 1, 5, 5]], "bbox": [25, 15, 10, 10]},  # 4: box-only
        {"image_id": 10, "category_id": 5, "segmentation": [[1, 1, 5, 5, 9, 9]]},  # 5: zero area, no bbox: skipped
        {"image_id": 10, "category_id": 5, "bbox": [50, 50, 4, 4]},  # 6: no mask, box outside the image: skipped
        {"image_id": 11, "category_id": 5, "segmentation": uncompressed_rle(_bitmap(20, 20, 0, 5, 0, 5)),
         "iscrowd": 1},  # 7: crowd region with a mask
        {"image_id": 11, "category_id": 9, "bbox": [10, 10, 5, 5], "iscrowd": True},  # 8: crowd region, its box
        {"image_id": 11, "category_id": 9, "iscrowd": 1},  # 9: crowd region without mask or box: skipped
    ]  # fmt: skip
    json_path = _dataset_dir(tmp_path, write_image, annotations)
    with caplog.at_level(logging.WARNING, logger="maskrcnn.data.coco"):
        dataset = CocoDataset(json_path)
    truth = load_ground_truth(json_path)

    (_, first), (_, second) = dataset[0], dataset[1]
    assert first["labels"].tolist() == [1, 2, 2, 1]  # annotations 1-4; cat is 5, dog is 9
    assert first["has_mask"].tolist() == [True, True, False, False]
    assert first["boxes"].tolist() == [[2, 2, 12, 12], [20, 2, 30, 10], [14, 4, 20, 12], [25, 15, 35, 25]]
    assert second["labels"].tolist() == [] and second["crowd_boxes"].tolist() == [[0, 0, 5, 5], [10, 10, 15, 15]]
    notes = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(notes) == 1 and "skipped 3 annotations without a usable mask or box" in notes[0]

    assert [a["id"] for a in truth.annotations] == [1, 2, 3, 4, 7, 8]
    assert [a["segmentation"] is not None for a in truth.annotations] == [True, True, False, False, True, False]
    assert [a["iscrowd"] for a in truth.annotations] == [0, 0, 0, 0, 1, 1]
    assert truth.annotations[1]["bbox"] == [20.0, 2.0, 10.0, 8.0]  # no bbox in the json: the mask's
    assert truth.annotations[1]["area"] == 80.0 and truth.annotations[3]["area"] == 100.0  # mask's, box's
    assert truth.notes == [f"ground truth: {notes[0].removeprefix(f'{json_path}: ')}"]


def test_annotation_ids_are_made_unique(tmp_path, write_image):
    from maskrcnn.evaluation.coco_eval import load_ground_truth

    square = [[2, 2, 12, 2, 12, 12, 2, 12]]
    annotations = [{"image_id": 10, "category_id": 5, "segmentation": square, "id": i} for i in (4, 4, "a", 2)]
    annotations.append({"image_id": 10, "category_id": 5, "segmentation": square})
    json_path = _dataset_dir(tmp_path, write_image, annotations)
    data = json.loads(json_path.read_text())
    data["annotations"][-1].pop("id")
    assert [a["id"] for a in load_ground_truth(data).annotations] == [4, 5, 6, 2, 7]
