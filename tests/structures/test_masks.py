"""structures.masks: polygons and RLE against pycocotools (the oracle), the polygon rule, boxes, resizing, errors."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from coco_rle import uncompressed_rle
from maskrcnn.structures.masks import (
    bitmap_to_box,
    bitmap_to_rle,
    ious,
    is_valid_polygon,
    polygon_area,
    resize_bitmap,
    rle_area,
    rle_box,
    rle_to_bitmap,
    segmentation_box,
    segmentation_to_bitmap,
    segmentation_to_rle,
)

HEIGHT, WIDTH = 30, 40
TRIANGLE = [2.5, 3.0, 30.0, 5.5, 12.0, 25.0]
SQUARE = [20.0, 20.0, 36.0, 20.0, 36.0, 28.0, 20.0, 28.0]


def _oracle_polygons(polygons: list[list[float]]) -> np.ndarray:
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, HEIGHT, WIDTH))).astype(bool)


def test_polygons_decode_as_pycocotools_decodes_them():
    bitmap = segmentation_to_bitmap([TRIANGLE, SQUARE], HEIGHT, WIDTH)
    expected = _oracle_polygons([TRIANGLE, SQUARE])
    assert bitmap.shape == (HEIGHT, WIDTH) and 250 < expected.sum() < 500
    assert np.array_equal(bitmap, expected)
    rle = segmentation_to_rle([TRIANGLE, SQUARE], HEIGHT, WIDTH)
    assert rle_area(rle) == expected.sum()
    assert rle_box(rle) == [float(v) for v in mask_utils.toBbox(mask_utils.encode(np.asfortranarray(expected)))]


def test_invalid_polygons_are_passed_over():
    for polygon in ([1, 1, 5, 5], [1, 1, 5, 5, 9], [1, 1, 5, np.nan, 9, 9], np.zeros((3, 2))):
        assert not is_valid_polygon(np.asarray(polygon, dtype=np.float64)), polygon
    assert is_valid_polygon(np.asarray(TRIANGLE))
    bitmap = segmentation_to_bitmap([[1, 1, 5, 5], TRIANGLE, [0, 0, 9]], HEIGHT, WIDTH)
    assert np.array_equal(bitmap, _oracle_polygons([TRIANGLE]))
    assert not segmentation_to_bitmap([[1, 1, 5, 5]], HEIGHT, WIDTH).any()  # nothing valid: an empty mask


def test_every_rle_form_decodes_to_the_same_bitmap():
    bitmap = _oracle_polygons([TRIANGLE, SQUARE])
    bitmap[0, 0] = True  # starts with a set pixel: the uncompressed counts begin with 0
    compressed = bitmap_to_rle(bitmap)  # counts a str, as in a json
    as_bytes = {"size": compressed["size"], "counts": compressed["counts"].encode("ascii")}
    for rle in (compressed, as_bytes, uncompressed_rle(bitmap)):
        assert np.array_equal(rle_to_bitmap(rle), bitmap)
        assert segmentation_to_rle(rle, HEIGHT, WIDTH)["counts"] == as_bytes["counts"]


@pytest.mark.parametrize(
    ("segmentation", "message"),
    [
        ({"size": [5, 5], "counts": "1"}, r"RLE size \[5, 5\] differs from the image size \[30, 40\]"),
        ({"counts": "1"}, "an RLE needs 'size' and 'counts'"),
        ({"size": [HEIGHT, WIDTH], "counts": 17}, "RLE counts must be a string or a list of ints, got int"),
        ({"size": [HEIGHT, WIDTH], "counts": [3, "x"]}, "unreadable RLE"),
        ([["a", "b", "c", "d", "e", "f"]], "unreadable polygons"),
        ("0 0 1 1", "polygons .* or an RLE .*, not a str"),
    ],
)
def test_what_is_not_a_mask_of_the_image_is_a_value_error(segmentation, message):
    with pytest.raises(ValueError, match=message):
        segmentation_to_rle(segmentation, HEIGHT, WIDTH)


def test_areas_and_boxes():
    assert polygon_area(np.asarray(SQUARE)) == polygon_area(np.asarray(SQUARE).reshape(-1, 2)) == 16 * 8
    assert polygon_area(np.asarray([1.0, 1, 5, 5, 9, 9])) == 0.0  # collinear
    # polygons: the extent of their points, clipped to the image; an RLE: the extent of its pixels
    box = segmentation_box([np.asarray(TRIANGLE), np.asarray([30.0, 20, 45, 20, 45, 35])], HEIGHT, WIDTH)
    assert box.tolist() == [2.5, 3.0, 40.0, 30.0]
    bitmap = np.zeros((HEIGHT, WIDTH), bool)
    bitmap[4:9, 10:12] = True
    rle = segmentation_to_rle(bitmap_to_rle(bitmap), HEIGHT, WIDTH)
    assert segmentation_box(rle, HEIGHT, WIDTH).tolist() == [10, 4, 12, 9]
    assert rle_box(rle) == bitmap_to_box(bitmap) == [10.0, 4.0, 2.0, 5.0]
    assert bitmap_to_box(np.zeros((3, 3), bool)) is None


def test_resize_bitmap_samples_pixel_centres():
    bitmap = np.random.default_rng(0).random((7, 5)) > 0.5
    out = resize_bitmap(bitmap, height=10, width=12)
    for i in range(10):
        for j in range(12):
            assert out[i, j] == bitmap[int((i + 0.5) * 7 / 10), int((j + 0.5) * 5 / 12)]
    assert resize_bitmap(bitmap, height=7, width=5) is bitmap


def test_ious_of_masks_and_boxes_with_the_crowd_rule():
    inner = np.zeros((HEIGHT, WIDTH), bool)
    inner[10:20, 10:20] = True
    outer = np.zeros((HEIGHT, WIDTH), bool)
    outer[5:25, 5:25] = True
    dt, gt = [segmentation_to_rle(bitmap_to_rle(inner), HEIGHT, WIDTH)], [
        segmentation_to_rle(bitmap_to_rle(outer), HEIGHT, WIDTH)
    ]
    assert ious(dt, gt).tolist() == [[100 / 400]]
    assert ious(dt, gt, crowd=True).tolist() == [[1.0]]  # all of the detection lies in the crowd region
    boxes = ious(np.array([[10, 10, 10, 10], [0, 0, 5, 5]]), np.array([[5, 5, 20, 20]]))
    assert boxes.tolist() == [[0.25], [0.0]]
    assert ious([], gt).shape == (0, 1) and ious(dt, []).shape == (1, 0)
