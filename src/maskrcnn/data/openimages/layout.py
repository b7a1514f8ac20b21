"""Where Open Images files live: on the servers, and in the output folder once fetched.

Remote layout (the defaults; a mirror given by ``--annotations-url`` / ``--images-url`` must copy it):

- ``{annotations}v5/class-descriptions-boxable.csv``            MID,DisplayName (no header)
- ``{annotations}v5/classes-segmentation.txt``                  one MID a line (350 classes with masks)
- ``{annotations}v5/{split}-annotations-object-segmentation.csv``
- ``{annotations}v5/{split}-masks/{split}-masks-{s}.zip``       s = first hex digit of the ImageID, 0-9 a-f
- ``{annotations}v5/{validation,test}-annotations-bbox.csv``,
  ``{annotations}v6/oidv6-train-annotations-bbox.csv``           every box (train: 14.6M rows, 2.2 GB; streamed)
- ``{annotations}v5/{split}-annotations-human-imagelabels-boxable.csv``  verified image-level labels
- ``{annotations}2018_04/bbox_labels_600_hierarchy.json``        the class hierarchy
- ``{images}{split}/{ImageID}.jpg``

Local layout of an output folder DIR:

- ``DIR/annotations.json``, ``DIR/images/{ImageID}.jpg``      the COCO dataset
- ``DIR/.openimages/v5/...``                                   annotation files, as on the server (cache)
- ``DIR/.openimages/boxes/{split}-{key}.csv``                   the box CSV's rows of the chosen images (key: the
                                                                 choice's hash), and ``.part`` + ``.progress`` while
                                                                 the stream is under way
- ``DIR/.openimages/masks/{split}/{MaskPath}``                 mask PNGs read out of the shard zips (cache)
- ``DIR/.openimages/masks/{split}/{MaskPath}.bad``             why that mask is unusable (a corrupt member, ...)

Names that come from the CSV (ImageID, MaskPath) end up in file names, so they are checked here: a name that could
point outside its folder is refused (``safe_image_id``, ``safe_mask_name``).
"""

from __future__ import annotations

import re
from pathlib import Path

DEFAULT_ANNOTATIONS_URL = "https://storage.googleapis.com/openimages/"
DEFAULT_IMAGES_URL = "https://open-images-dataset.s3.amazonaws.com/"
SPLITS = ("train", "validation", "test")
SHARDS = "0123456789abcdef"

CLASS_DESCRIPTIONS = "v5/class-descriptions-boxable.csv"
SEGMENTATION_CLASSES = "v5/classes-segmentation.txt"
HIERARCHY = "2018_04/bbox_labels_600_hierarchy.json"

CACHE_DIR = ".openimages"

_IMAGE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_MASK_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,254}")


def base_url(url: str) -> str:
    """``url`` with exactly one trailing slash, so that relative paths join onto it."""
    return url.rstrip("/") + "/"


def segmentation_csv(split: str) -> str:
    """Relative path of a split's segmentation CSV, e.g. ``v5/validation-annotations-object-segmentation.csv``."""
    return f"v5/{split}-annotations-object-segmentation.csv"


def box_csv(split: str) -> str:
    """Relative path of a split's box CSV: the train one is V6's (``v6/oidv6-train-annotations-bbox.csv``)."""
    return "v6/oidv6-train-annotations-bbox.csv" if split == "train" else f"v5/{split}-annotations-bbox.csv"


def labels_csv(split: str) -> str:
    """Relative path of a split's verified image-level labels of the boxable classes."""
    return f"v5/{split}-annotations-human-imagelabels-boxable.csv"


def mask_shard(split: str, shard: str) -> str:
    """Relative path of one mask zip, e.g. ``mask_shard("train", "a") == "v5/train-masks/train-masks-a.zip"``."""
    return f"v5/{split}-masks/{split}-masks-{shard}.zip"


def image_url(images_url: str, split: str, image_id: str) -> str:
    return f"{base_url(images_url)}{split}/{image_id}.jpg"


def shard_of(image_id: str) -> str | None:
    """The mask shard holding an image's masks: its ID's first hex digit (``"0a1b..." -> "0"``), or None."""
    first = image_id[:1].lower()
    return first if first and first in SHARDS else None


def safe_image_id(image_id: str) -> bool:
    """True when ``image_id`` can name a file: letters, digits, ``_`` and ``-`` only (real IDs are 16 hex digits)."""
    return _IMAGE_ID.fullmatch(image_id) is not None


def safe_mask_name(name: str) -> bool:
    """True when a zip member / MaskPath is a plain file name: no folder, no ``..``, no backslash, no leading dot."""
    return _MASK_NAME.fullmatch(name) is not None and ".." not in name


def cache_root(output_dir: Path) -> Path:
    return output_dir / CACHE_DIR


def box_cache_dir(output_dir: Path) -> Path:
    return output_dir / CACHE_DIR / "boxes"


def mask_cache_dir(output_dir: Path, split: str) -> Path:
    return output_dir / CACHE_DIR / "masks" / split


def image_path(output_dir: Path, image_id: str) -> Path:
    return output_dir / "images" / f"{image_id}.jpg"
