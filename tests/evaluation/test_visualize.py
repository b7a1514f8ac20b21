"""draw_instances: masks blended where they are and nowhere else, opaque box outlines, fixed colours, captions."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np

from maskrcnn.visualize import class_colour, draw_instances


def _image(height: int = 120, width: int = 160, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_mask_pixels_blend_with_the_class_colour_and_others_stay():
    image = _image()
    masks = np.zeros((1, 120, 160), dtype=bool)
    masks[0, 50:90, 60:120] = True
    out = draw_instances(image, boxes=None, masks=masks, labels=["dog"], scores=None, alpha=0.4)

    colour = np.array(class_colour("dog"), dtype=np.float64)
    interior = np.zeros_like(masks[0])
    interior[60:85, 65:115] = True  # away from the outline and from the caption above the mask
    expected = image[interior].astype(np.float64) * 0.6 + colour * 0.4
    assert np.abs(out[interior].astype(np.float64) - expected).max() <= 1.0
    # The outline is drawn opaque on the mask's border.
    assert (out[70, 60] == colour).all() and (out[89, 100] == colour).all()
    # Outside the mask and its caption nothing changes.
    outside = np.ones_like(masks[0])
    outside[30:92, 55:160] = False
    assert (out[outside] == image[outside]).all()
    assert (image == _image()).all(), "the input image must not be modified"


def test_box_outline_is_drawn_and_box_interior_kept():
    image = np.full((100, 100, 3), 40, dtype=np.uint8)
    out = draw_instances(image, boxes=np.array([[20.0, 30.0, 60.0, 70.0]]), masks=None, labels=["cat"], scores=None)
    colour = class_colour("cat")
    for y, x in [(50, 20), (50, 59), (30, 40), (69, 40)]:  # the four sides: pixels x1..x2-1, y1..y2-1
        assert tuple(out[y, x]) == colour, (y, x)
    assert (out[40:65, 25:55] == 40).all()  # inside the box, below the caption
    assert (out[75:, :] == 40).all() and (out[:, 65:] == 40).all()


def test_higher_score_is_on_top_where_masks_overlap():
    image = np.zeros((80, 80, 3), dtype=np.uint8)
    masks = np.zeros((2, 80, 80), dtype=bool)
    masks[0, 20:60, 20:60] = True
    masks[1, 30:70, 30:70] = True
    labels = ["cat", "traffic light"]
    for scores, top in [(np.array([0.9, 0.3]), "cat"), (np.array([0.3, 0.9]), "traffic light")]:
        out = draw_instances(image, boxes=None, masks=masks, labels=labels, scores=scores, alpha=0.5)
        expected = (np.array(class_colour(top)) * 0.5 + 0.5).astype(np.uint8)
        assert np.abs(out[45, 45].astype(int) - expected).max() <= 1, top


def test_colours_are_fixed_per_class_across_processes():
    code = "from maskrcnn.visualize import class_colour; print(class_colour('traffic light'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == str(class_colour("traffic light"))
    names = ["cat", "dog", "person", "car", "wheel", "hood"]
    assert len({class_colour(n) for n in names}) == len(names)


def test_drawing_is_deterministic_and_empty_input_returns_a_copy():
    image = _image()
    masks = np.zeros((3, 120, 160), dtype=bool)
    masks[0, 10:40, 10:40] = masks[1, 30:90, 50:100] = masks[2, 80:110, 120:150] = True
    boxes = np.array([[10, 10, 40, 40], [50, 30, 100, 90], [120, 80, 150, 110]], dtype=np.float64)
    kwargs = dict(boxes=boxes, masks=masks, labels=["a", "b", "a"], scores=np.array([0.5, 0.9, 0.7]))
    assert (draw_instances(image, **kwargs) == draw_instances(image, **kwargs)).all()

    empty = draw_instances(image, boxes=np.zeros((0, 4)), masks=np.zeros((0, 120, 160), bool), labels=[], scores=None)
    assert (empty == image).all() and empty is not image


def test_caption_stays_inside_the_image():
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    label = "a rather long class name"
    out = draw_instances(image, boxes=np.array([[195.0, 0.0, 200.0, 5.0]]), masks=None, labels=[label], scores=[0.93])
    # The caption box (filled with the class colour) was moved left and down into the image, not clipped away.
    colour_pixels = (out == np.array(class_colour(label), dtype=np.uint8)).all(axis=2)
    assert colour_pixels.sum() > 300
    assert colour_pixels[:, :100].any()


def test_fast_enough_for_a_large_image_with_many_instances():
    height, width, count = 800, 1200, 100
    rng = np.random.default_rng(0)
    masks = np.zeros((count, height, width), dtype=bool)
    boxes = np.zeros((count, 4))
    for i in range(count):
        y, x = rng.integers(0, height - 200), rng.integers(0, width - 200)
        h, w = rng.integers(10, 200, size=2)
        masks[i, y : y + h, x : x + w] = True
        boxes[i] = [x, y, x + w, y + h]
    image = _image(height, width)
    labels = [f"class {i % 7}" for i in range(count)]
    scores = rng.random(count)
    draw_instances(image, boxes=boxes, masks=masks, labels=labels, scores=scores)  # warm the font cache
    start = time.perf_counter()
    draw_instances(image, boxes=boxes, masks=masks, labels=labels, scores=scores)
    # About 0.13 s measured on a shared 2-core machine; the bound leaves room for a busy one.
    assert time.perf_counter() - start < 1.0
