"""COCO's uncompressed RLE written the plain way, for test datasets (pycocotools only writes the compressed form)."""

from __future__ import annotations

import numpy as np


def uncompressed_rle(bitmap: np.ndarray) -> dict:
    """ndarray[H, W] bool -> COCO uncompressed RLE (column-major run lengths, starting with a run of zeros)."""
    flat = bitmap.astype(np.uint8).reshape(-1, order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], changes, [len(flat)]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {"size": list(bitmap.shape), "counts": counts}
