"""The Open Images Challenge instance-segmentation submission file, and the class MIDs it needs.

One row per image: ``ImageID,ImageWidth,ImageHeight,PredictionString``, the PredictionString holding
``LabelName Confidence EncodedMask`` for each detection, space-separated (empty when there is none). ImageID is the
image file's name without its suffix. A mask is encoded at the image's size as the challenge defines it: its COCO
compressed RLE string (pycocotools ``encode``, column-major), compressed with zlib (level 9), then base64.

>>> encode_mask(np.eye(3, dtype=bool))
'eNozMDQ2MDAAAAQHASU='
>>> decode_mask("eNozMDQ2MDAAAAQHASU=", height=3, width=3).astype(int).tolist()
[[1, 0, 0], [0, 1, 0], [0, 0, 1]]
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from pathlib import Path

import numpy as np

from maskrcnn.data.openimages.catalog import read_class_descriptions
from maskrcnn.errors import ArgumentError, UserError
from maskrcnn.io import atomic_open
from maskrcnn.structures.masks import bitmap_to_rle, rle_to_bitmap

HEADER = "ImageID,ImageWidth,ImageHeight,PredictionString"


def encode_mask(mask: np.ndarray) -> str:
    """bool[H, W] -> the challenge's text form of the mask."""
    counts = bitmap_to_rle(mask)["counts"].encode("ascii")
    return base64.b64encode(zlib.compress(counts, zlib.Z_BEST_COMPRESSION)).decode("ascii")


def decode_mask(text: str, *, height: int, width: int) -> np.ndarray:
    """The challenge's text form of a mask -> bool[height, width]; ValueError when it is not one."""
    try:
        counts = zlib.decompress(base64.b64decode(text, validate=True))
    except (binascii.Error, zlib.error) as e:
        raise ValueError(f"not an encoded mask ({e})") from None
    return rle_to_bitmap({"size": [height, width], "counts": counts})


def submission_row(image_id: str, *, width: int, height: int, detections: list[tuple[str, float, np.ndarray]]) -> str:
    """One CSV line (no newline) for an image and its detections ``(MID, score, bool[H, W] mask)``."""
    parts = [f"{mid} {score:.6g} {encode_mask(mask)}" for mid, score, mask in detections]
    return f"{image_id},{width},{height},{' '.join(parts)}"


def write_submission(path: Path, rows: list[str]) -> None:
    """The submission file (atomically): the header and one row per image."""
    with atomic_open(path, "w") as f:
        f.write(HEADER + "\n")
        f.writelines(row + "\n" for row in rows)


def class_mids(classes_file: Path | None, *, class_names: list[str], category_ids: list[int]) -> list[str]:
    """The MID of each of a model's classes, in label order.

    ``classes_file``: the COCO json the model was trained on, whose categories carry ``mid`` (``maskrcnn openimages
    download`` writes it), matched by category id; or a class-descriptions CSV (``MID,DisplayName``), matched by
    name, any case. None: the class names must be MIDs themselves. ``UserError`` naming what is missing.
    """
    if classes_file is None:
        mids = list(class_names)
        source = "the model's class names"
    elif classes_file.suffix.lower() == ".json":
        mids = _mids_from_json(classes_file, class_names=class_names, category_ids=category_ids)
        source = str(classes_file)
    else:
        by_name = {name.lower(): mid for mid, name in read_class_descriptions(classes_file).items()}
        mids, source = [by_name.get(name.lower(), name) for name in class_names], str(classes_file)
    unknown = [name for name, mid in zip(class_names, mids) if not mid.startswith(("/m/", "/g/"))]
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:5])
        raise ArgumentError(
            "classes_file",
            f"no Open Images MID for classes {shown} in {source}: give {{arg}}, the training annotations.json (its "
            "categories carry `mid`) or class-descriptions-boxable.csv",
        )
    return mids


def _mids_from_json(path: Path, *, class_names: list[str], category_ids: list[int]) -> list[str]:
    try:
        categories = json.loads(path.read_text(encoding="utf-8"))["categories"]
        by_id = {c["id"]: c.get("mid", "") for c in categories}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"cannot read the categories of {path}: {e}") from None
    return [str(by_id.get(cid, name)) for cid, name in zip(category_ids, class_names)]
