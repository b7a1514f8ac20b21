"""Transforms move image, masks and boxes together: alignment is measured against shapes painted into the image."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from maskrcnn.data.transforms import (
    Compose,
    LazyMasks,
    RandomHorizontalFlip,
    ResizeShortestEdge,
    finish_target,
    masks_to_boxes,
    resized_shape,
)

# A triangle in the left half of a 300 x 400 image: a flip or a half-pixel shift would show.
H0, W0 = 300, 400
TRIANGLE = np.array([[30.3, 40.7], [20.6, 270.1], [180.2, 250.9]])


def _inside_convex(vertices: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pixel centres inside a convex polygon, by half-plane tests (independent of pycocotools)."""
    x = np.arange(width)[None, :] + 0.5
    y = np.arange(height)[:, None] + 0.5
    signs = [
        (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)
        for (x1, y1), (x2, y2) in zip(vertices, np.roll(vertices, -1, axis=0), strict=True)
    ]
    return np.all([s >= 0 for s in signs], axis=0) | np.all([s <= 0 for s in signs], axis=0)


def _painted_image() -> np.ndarray:
    image = np.zeros((H0, W0, 3), dtype=np.uint8)
    image[_inside_convex(TRIANGLE, H0, W0)] = 255
    return image


def _target(segmentation) -> dict:
    return {"masks": LazyMasks([segmentation], source_size=(H0, W0)), "labels": np.array([7])}


def _centroid(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask).mean(axis=0)


def test_resized_shape_follows_the_short_side_unless_the_long_side_is_capped():
    assert resized_shape(480, 640, short_size=800, max_size=1333) == (800, 1067)  # 640 * 800 / 480 = 1066.7
    assert resized_shape(640, 480, short_size=800, max_size=1333) == (1067, 800)
    assert resized_shape(500, 2000, short_size=800, max_size=1333) == (333, 1333)  # scale 1333/2000: 500 -> 333.25
    assert resized_shape(100, 100, short_size=50, max_size=1333) == (50, 50)
    assert resized_shape(3, 5, short_size=2, max_size=1000) == (2, 3)  # 5 * 2/3 = 3.33


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("short", [123, 437, 800])
@pytest.mark.parametrize("encoding", ["polygon", "rle"])
def test_masks_and_boxes_stay_aligned_with_the_image(flip, short, encoding):
    image = _painted_image()
    if encoding == "polygon":
        segmentation = [TRIANGLE.ravel()]
    else:
        segmentation = mask_utils.encode(np.asfortranarray(_inside_convex(TRIANGLE, H0, W0).astype(np.uint8)))
    transform = Compose([ResizeShortestEdge((short,), 2000), RandomHorizontalFlip(1.0 if flip else 0.0)])
    out_image, target = transform(image, _target(segmentation), np.random.default_rng(0))
    target = finish_target(out_image, target)

    assert out_image.shape == (short, round(W0 * short / H0), 3)
    painted = out_image[:, :, 0] >= 128
    mask = target["masks"][0].astype(bool)
    assert mask.shape == painted.shape
    iou = (painted & mask).sum() / (painted | mask).sum()
    assert iou > 0.97
    # A systematic half-pixel offset would move the centroid by 0.5; measured offsets are below 0.06 px.
    assert np.abs(_centroid(painted) - _centroid(mask)).max() < 0.2
    assert np.abs(target["boxes"][0] - masks_to_boxes(painted[None])[0]).max() <= 1.0
    left_half = painted[:, : painted.shape[1] // 2].sum() > painted.sum() / 2
    assert left_half != flip  # the triangle really moved to the right half when flipped
    assert target["labels"].tolist() == [7]


def test_flip_mirrors_the_mask_exactly_and_boxes_by_w_minus_x():
    image = _painted_image()
    crowd = np.array([[10.0, 20.0, 30.0, 40.0]], dtype=np.float32)
    start = {**_target([TRIANGLE.ravel()]), "crowd_boxes": crowd}
    plain_image, plain = ResizeShortestEdge((150,), 1000)(image, start, np.random.default_rng(0))
    flip_image, flipped = RandomHorizontalFlip(1.0)(plain_image, plain, np.random.default_rng(0))
    plain, flipped = finish_target(plain_image, plain), finish_target(flip_image, flipped)
    width = plain_image.shape[1]  # 200
    assert np.array_equal(flip_image, plain_image[:, ::-1])
    assert np.array_equal(flipped["masks"], plain["masks"][:, :, ::-1])
    x1, y1, x2, y2 = plain["boxes"][0]
    assert flipped["boxes"][0].tolist() == [width - x2, y1, width - x1, y2]
    # crowd boxes: scaled by 150 / 300 = 0.5, then x -> 200 - x
    assert plain["crowd_boxes"].tolist() == [[5.0, 10.0, 15.0, 20.0]]
    assert flipped["crowd_boxes"].tolist() == [[185.0, 10.0, 195.0, 20.0]]


def test_training_resize_draws_every_short_side_and_is_a_function_of_the_seed():
    resize = ResizeShortestEdge((64, 80, 96), 1000)
    image = np.zeros((50, 100, 3), dtype=np.uint8)
    seen = {resize(image, {}, np.random.default_rng(seed))[0].shape[0] for seed in range(40)}
    assert seen == {64, 80, 96}
    again = [resize(image, {}, np.random.default_rng(seed))[0].shape for seed in range(10)]
    assert again == [resize(image, {}, np.random.default_rng(seed))[0].shape for seed in range(10)]


def test_flip_probability_is_respected():
    flip = RandomHorizontalFlip(0.5)
    image = np.arange(12, dtype=np.uint8).reshape(1, 4, 3)
    flips = sum(not np.array_equal(flip(image, {}, np.random.default_rng(s))[0], image) for s in range(400))
    assert 160 < flips < 240
    assert not np.array_equal(RandomHorizontalFlip(1.0)(image, {}, np.random.default_rng(0))[0], image)
    assert np.array_equal(RandomHorizontalFlip(0.0)(image, {}, np.random.default_rng(0))[0], image)


def test_instances_that_vanish_are_dropped_with_their_labels():
    thin = [np.array([10.0, 10.0, 10.6, 10.0, 10.6, 60.0, 10.0, 60.0])]  # 0.6 px wide: nothing left at 1/4 scale
    big = [np.array([100.0, 100.0, 200.0, 100.0, 200.0, 200.0, 100.0, 200.0])]
    target = {"masks": LazyMasks([thin, big], source_size=(H0, W0)), "labels": np.array([1, 2])}
    image, target = ResizeShortestEdge((75,), 1000)(np.zeros((H0, W0, 3), np.uint8), target, np.random.default_rng(0))
    out = finish_target(image, target)
    assert out["labels"].tolist() == [2]
    assert out["masks"].shape == (1, 75, 100)
    assert out["boxes"].tolist() == [[25.0, 25.0, 50.0, 50.0]]  # the 100..200 square at scale 1/4


def test_images_without_instances_come_out_with_empty_arrays():
    target = {"masks": LazyMasks([], source_size=(H0, W0)), "labels": np.zeros(0, np.int64)}
    image, target = Compose([ResizeShortestEdge((60,), 1000), RandomHorizontalFlip(1.0)])(
        np.zeros((H0, W0, 3), np.uint8), target, np.random.default_rng(0)
    )
    out = finish_target(image, target)
    assert out["masks"].shape == (0, 60, 80) and out["masks"].dtype == np.uint8
    assert out["boxes"].shape == (0, 4) and out["labels"].shape == (0,)


def test_masks_to_boxes_covers_whole_pixels():
    masks = np.zeros((2, 10, 10), dtype=bool)
    masks[0, 5, 3] = True
    masks[1, 2:4, 6:10] = True
    assert masks_to_boxes(masks).tolist() == [[3, 5, 4, 6], [6, 2, 10, 4]]


def test_rle_is_sampled_at_pixel_centres_when_resized():
    # Left half set in a 4 x 8 RLE; at 2 x 4 the left two columns are set.
    bitmap = np.zeros((4, 8), dtype=np.uint8)
    bitmap[:, :4] = 1
    rle = mask_utils.encode(np.asfortranarray(bitmap))
    masks = LazyMasks([rle], source_size=(4, 8)).resized(2, 4).rasterize()
    assert masks[0].astype(int).tolist() == [[1, 1, 0, 0], [1, 1, 0, 0]]
    assert LazyMasks([rle], source_size=(4, 8)).resized(2, 4).hflipped().rasterize()[0].astype(int).tolist() == [
        [0, 0, 1, 1],
        [0, 0, 1, 1],
    ]
