"""What the converters share: polygon clipping, placing images into the output, and
building and writing the COCO json.

Polygons here are ndarray[P, 2] float64 (x, y) in absolute pixels; COCO writes them flat, ``[x1, y1, x2, y2, ...]``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from maskrcnn.errors import UserError
from maskrcnn.io import atomic_write_json
from maskrcnn.structures.masks import MIN_POLYGON_POINTS, polygon_area, polygons_to_rle, rle_area



def clip_polygon(points: np.ndarray, width: float, height: float) -> np.ndarray:
    """The part of a polygon ndarray[P, 2] inside the image [0, width] x [0, height] -> ndarray[Q, 2] (Q may be 0).

    Sutherland-Hodgman against the four image edges: exact for any simple polygon (the clip window is convex).
    A polygon already inside comes back unchanged.
    """
    if len(points) and points.min() >= 0 and (points[:, 0] <= width).all() and (points[:, 1] <= height).all():
        return points
    # Each edge: (axis, limit, keep side): keep x >= 0, x <= width, y >= 0, y <= height.
    for axis, limit, keep_below in ((0, 0.0, False), (0, width, True), (1, 0.0, False), (1, height, True)):
        if len(points) == 0:
            break
        inside = points[:, axis] <= limit if keep_below else points[:, axis] >= limit
        out = []
        for i in range(len(points)):
            current, previous = points[i], points[i - 1]
            if inside[i] != inside[i - 1]:  # the edge previous -> current crosses the limit
                t = (limit - previous[axis]) / (current[axis] - previous[axis])
                crossing = previous + t * (current - previous)
                crossing[axis] = limit
                out.append(crossing)
            if inside[i]:
                out.append(current)
        points = np.array(out, dtype=np.float64).reshape(-1, 2)
    return points


def instance_from_polygons(
    polygons: list[np.ndarray], width: int, height: int
) -> tuple[dict[str, Any] | None, str]:
    """Polygons of one instance (ndarray[P, 2] each, pixels) -> (COCO fields, "") or (None, why it was skipped).

    The fields are ``segmentation`` (the polygons clipped to the image), ``area`` (pixels of the rasterised mask,
    as COCO counts it) and ``bbox`` ``[x, y, w, h]`` (extent of the clipped polygons).
    """
    for polygon in polygons:
        if len(polygon) < MIN_POLYGON_POINTS:
            points = f"{len(polygon)} point{'s' if len(polygon) != 1 else ''}"
            return None, f"polygon has {points} (need {MIN_POLYGON_POINTS})"
    clipped = [clip_polygon(p, width, height) for p in polygons]
    clipped = [p for p in clipped if len(p) >= MIN_POLYGON_POINTS and polygon_area(p) > 0]
    if not clipped:
        if all(polygon_area(p) == 0 for p in polygons):
            return None, "polygon has zero area"
        return None, f"polygon lies outside the {width}x{height} image"
    segmentation = [[round(v, 2) for v in p.ravel().tolist()] for p in clipped]  # 1/100 pixel is plenty
    area = rle_area(polygons_to_rle(segmentation, height, width))
    if area == 0:
        return None, "polygon covers no pixel"
    xy = np.concatenate(clipped)
    x1, y1 = xy.min(axis=0)
    x2, y2 = xy.max(axis=0)
    bbox = [round(float(v), 2) for v in (x1, y1, x2 - x1, y2 - y1)]
    return {"segmentation": segmentation, "area": area, "bbox": bbox}, ""


def place_image(source: Path, destination: Path) -> None:
    """Put ``source`` at ``destination``: a hard link when the file system allows, else a copy; atomic, and a no-op
    when ``destination`` already is ``source``."""
    with contextlib.suppress(FileNotFoundError):
        if os.path.samefile(source, destination):
            return
    tmp = None
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent)
        os.close(fd)
        os.unlink(tmp)
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        os.replace(tmp, destination)
    except BaseException as e:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(e, OSError):
            raise UserError(f"cannot write {destination}: {e.strerror or e}") from None
        raise


def add_image(images: list[dict], source: Path, output_dir: Path, output_name: str, *, width: int, height: int) -> int:
    """Place ``source`` at ``output_dir/output_name`` (``place_image``) and append its COCO entry to ``images`` -> its
    image id (1, 2, ... in order)."""
    image_id = len(images) + 1
    place_image(source, output_dir / output_name)
    images.append({"id": image_id, "file_name": output_name, "width": width, "height": height})
    return image_id


def write_coco(
    output_dir: Path,
    *,
    images: list[dict],
    annotations: list[dict],
    categories: list[tuple[int, str]],
    description: str,
) -> Path:
    """Write ``output_dir/annotations.json`` atomically -> its path. Annotations get ``id`` 1..N and ``iscrowd`` 0."""
    for i, annotation in enumerate(annotations):
        annotation["id"] = i + 1
        annotation.setdefault("iscrowd", 0)
    data = {
        "info": {"description": description},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cid, "name": name, "supercategory": ""} for cid, name in categories],
    }
    path = Path(output_dir) / "annotations.json"
    atomic_write_json(path, data)
    return path

