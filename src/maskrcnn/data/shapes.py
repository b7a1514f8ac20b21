"""Synthetic instance-segmentation data: squares, circles and triangles on random backgrounds, as a COCO dataset.

Each image has a background (a linear gradient between two random colours, plus noise) and up to
``max_instances`` shapes painted one over the other; about 5% of images have none. Shape sizes run from 1/8 to 1/2
of the image side (16 to 64 pixels at 128), squares and triangles are rotated at random. A shape painted later
hides what it covers, so each mask is the visible part of its shape; a shape left with less than
``MIN_VISIBLE_FRACTION`` of its pixels, or fewer than ``MIN_VISIBLE_PIXELS``, is not painted at all (so every
painted shape is annotated).

Output: ``DIR/images/000000.png``, ... and ``DIR/annotations.json`` (segmentation as compressed RLE of the visible
mask, ``bbox`` and ``area`` from that mask, ``iscrowd`` 0). Image i is drawn from ``np.random.default_rng([seed, i])``,
so the files are a pure function of (seed, image_size, max_instances): the same arguments give byte-identical
files, and the first N images do not depend on how many are generated.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

from maskrcnn.errors import check_at_least
from maskrcnn.io import atomic_write_bytes, atomic_write_json, output_folder
from maskrcnn.structures.masks import bitmap_to_box, bitmap_to_rle

CATEGORIES: tuple[tuple[int, str], ...] = ((1, "square"), (2, "circle"), (3, "triangle"))
EMPTY_IMAGE_FRACTION = 0.05
MIN_VISIBLE_FRACTION = 0.3
MIN_VISIBLE_PIXELS = 40
MIN_COLOUR_DISTANCE = 90.0  # Euclidean RGB distance between a shape's colour and the background under it


def _convex_polygon_mask(vertices: np.ndarray, size: int) -> np.ndarray:
    """Pixels whose centres lie inside a convex polygon (vertices ndarray[V, 2] x, y, counter-clockwise in image
    coordinates with y down) -> ndarray[size, size] bool."""
    centres = np.arange(size) + 0.5
    x, y = centres[None, :], centres[:, None]
    inside = np.ones((size, size), dtype=bool)
    for (x1, y1), (x2, y2) in zip(vertices, np.roll(vertices, -1, axis=0), strict=True):
        inside &= (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1) >= 0
    return inside


def _shape_mask(category_id: int, *, cx: float, cy: float, side: float, angle: float, size: int) -> np.ndarray:
    """Full mask of one shape of characteristic size ``side`` (square side, circle / triangle diameter)."""
    if category_id == 2:
        centres = np.arange(size) + 0.5
        return (centres[None, :] - cx) ** 2 + (centres[:, None] - cy) ** 2 <= (side / 2) ** 2
    corners = 4 if category_id == 1 else 3
    radius = side / math.sqrt(2) if category_id == 1 else side / 2
    # Increasing angles run clockwise on screen (y down); the inside test wants that orientation.
    theta = angle + 2 * math.pi * np.arange(corners) / corners
    vertices = np.stack([cx + radius * np.cos(theta), cy + radius * np.sin(theta)], axis=1)
    return _convex_polygon_mask(vertices, size)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A gradient between two random colours along a random direction, plus Gaussian noise -> ndarray[S, S, 3] f32."""
    start, end = rng.uniform(0, 255, size=(2, 3))
    direction = rng.uniform(0, 2 * math.pi)
    centres = (np.arange(size) + 0.5) / size - 0.5
    t = math.cos(direction) * centres[None, :] + math.sin(direction) * centres[:, None] + 0.5  # (S, S) in [0, 1]
    image = start + (end - start) * np.clip(t, 0, 1)[:, :, None]
    return image + rng.normal(0, rng.uniform(2, 12), size=(size, size, 3))


def _draw_image(
    rng: np.random.Generator, *, size: int, max_instances: int
) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """One image -> (ndarray[S, S, 3] uint8, [(category_id, visible mask ndarray[S, S] bool), ...] bottom to top)."""
    image = _background(rng, size)
    count = 0 if rng.random() < EMPTY_IMAGE_FRACTION else int(rng.integers(1, max_instances + 1))
    shapes = []
    for _ in range(count):
        category_id = int(rng.integers(1, len(CATEGORIES) + 1))
        side = rng.uniform(size / 8, size / 2)
        reach = side / math.sqrt(2)  # keeps any rotation of the shape inside the image
        cx, cy = rng.uniform(reach, size - reach, size=2)
        angle = rng.uniform(0, 2 * math.pi)
        mask = _shape_mask(category_id, cx=cx, cy=cy, side=side, angle=angle, size=size)
        under = image[mask].mean(axis=0)
        colour = rng.uniform(0, 255, size=3)
        for _ in range(8):  # a colour that stands out from the background under the shape
            if np.linalg.norm(colour - under) >= MIN_COLOUR_DISTANCE:
                break
            colour = rng.uniform(0, 255, size=3)
        shapes.append((category_id, mask, colour))

    # Top to bottom: a shape keeps what the kept shapes above leave of it, or is dropped when that is too little.
    kept: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
    covered = np.zeros((size, size), dtype=bool)
    for category_id, mask, colour in reversed(shapes):
        visible = mask & ~covered
        area = int(visible.sum())
        if area < MIN_VISIBLE_PIXELS or area < MIN_VISIBLE_FRACTION * mask.sum():
            continue
        kept.append((category_id, mask, visible, colour))
        covered |= mask
    kept.reverse()
    for _, mask, _, colour in kept:  # bottom to top, each over the ones before
        image[mask] = colour + rng.normal(0, 6, size=(int(mask.sum()), 3))
    pixels = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return pixels, [(category_id, visible) for category_id, _, visible, _ in kept]


def generate_shapes(
    output_dir: Path, *, num_images: int, seed: int = 0, image_size: int = 128, max_instances: int = 4
) -> Path:
    """Write a synthetic shapes dataset into ``output_dir`` -> the path of its ``annotations.json``.

    ``output_dir/images/{i:06d}.png`` (``image_size`` square, RGB) and ``output_dir/annotations.json`` (COCO
    instances; categories 1 square, 2 circle, 3 triangle). Existing files of the same names are replaced.
    """
    check_at_least("num_images", num_images, 1)
    check_at_least("image_size", image_size, 32, unit=" pixels")
    check_at_least("max_instances", max_instances, 1)
    check_at_least("seed", seed, 0)
    output_dir = output_folder(output_dir)
    images, annotations = [], []
    for i in range(num_images):
        rng = np.random.default_rng([seed, i])
        pixels, instances = _draw_image(rng, size=image_size, max_instances=max_instances)
        file_name = f"images/{i:06d}.png"
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
        atomic_write_bytes(output_dir / file_name, buffer.getvalue())
        images.append({"id": i + 1, "file_name": file_name, "width": image_size, "height": image_size})
        for category_id, visible in instances:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": category_id,
                    "segmentation": bitmap_to_rle(visible),
                    "area": int(visible.sum()),
                    "bbox": bitmap_to_box(visible),
                    "iscrowd": 0,
                }
            )
    dataset = {
        "info": {
            "description": f"maskrcnn synthetic shapes: seed {seed}, {num_images} images of {image_size} px, "
            f"up to {max_instances} instances each"
        },
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cid, "name": name, "supercategory": "shape"} for cid, name in CATEGORIES],
    }
    json_path = output_dir / "annotations.json"
    atomic_write_json(json_path, dataset)
    return json_path
