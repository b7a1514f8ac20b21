"""Box-only instances (``"isbbox": true``) through CocoDataset and the transforms: a box, a class, no mask."""

from __future__ import annotations

import json

import numpy as np
import torch

from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.transforms import Compose, RandomHorizontalFlip, ResizeShortestEdge


def _dataset(tmp_path, write_image) -> CocoDataset:
    write_image(tmp_path / "images" / "a.png", 40, 30)
    data = {
        "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
        "categories": [{"id": 5, "name": "cat"}, {"id": 9, "name": "dog"}],
        "annotations": [
            # a mask instance: a 10 x 6 rectangle at x 2..12, y 4..10
            {"id": 1, "image_id": 1, "category_id": 5, "iscrowd": 0, "bbox": [2, 4, 10, 6],
             "segmentation": [[2, 4, 12, 4, 12, 10, 2, 10]]},
            # box-only: the segmentation is just the box, the flag says so
            {"id": 2, "image_id": 1, "category_id": 9, "iscrowd": 0, "bbox": [20.5, 3, 15, 20], "isbbox": True,
             "segmentation": [[20.5, 3, 35.5, 3, 35.5, 23, 20.5, 23]]},
            # box-only and sticking out of the image: clipped
            {"id": 3, "image_id": 1, "category_id": 5, "iscrowd": 0, "bbox": [30, 25, 20, 20], "isbbox": True,
             "segmentation": [[30, 25, 50, 25, 50, 45, 30, 45]]},
        ],
    }  # fmt: skip
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(data))
    flip_and_double = Compose([ResizeShortestEdge((60,), 1000), RandomHorizontalFlip(1.0)])
    return CocoDataset(path, transform=flip_and_double)


def test_box_only_instances_keep_their_box_and_class_without_a_mask(tmp_path, write_image):
    dataset = _dataset(tmp_path, write_image)
    image, target = dataset[0]
    assert tuple(image.shape) == (3, 60, 80)
    assert target["labels"].tolist() == [1, 2, 1]
    assert target["has_mask"].tolist() == [True, False, False]
    # doubled, then mirrored in an 80-pixel-wide image: x -> 80 - x
    expected = [[80 - 24, 8, 80 - 4, 20], [80 - 71, 6, 80 - 41, 46], [0, 50, 80 - 60, 60]]
    assert torch.equal(target["boxes"], torch.tensor(expected, dtype=torch.float32))
    assert target["masks"][0].sum().item() == 20 * 12  # the mask instance is drawn
    assert target["masks"][1:].sum().item() == 0  # box-only instances have no mask pixels
    assert target["masks"].dtype == torch.uint8 and target["has_mask"].dtype == torch.bool


def test_box_only_instance_whose_box_leaves_the_image_is_dropped(tmp_path, write_image):
    write_image(tmp_path / "images" / "a.png", 40, 30)
    data = {
        "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [45, 0, 5, 5], "isbbox": True,
                         "segmentation": [[45, 0, 50, 0, 50, 5, 45, 5]]}],
    }  # fmt: skip
    (tmp_path / "annotations.json").write_text(json.dumps(data))
    _, target = CocoDataset(tmp_path / "annotations.json")[0]
    assert len(target["labels"]) == 0 and target["has_mask"].shape == (0,) and target["boxes"].shape == (0, 4)
    assert np.array_equal(target["masks"].shape, (0, 30, 40))
