"""``--weights VALUE`` -> a file: a path as it is, or a known name downloaded into the cache.

    resolve_weights("runs/x/best.pt", purpose="predict")  # Path("runs/x/best.pt")
    resolve_weights("coco-r50-fpn", purpose="predict")    # ~/.cache/maskrcnn/weights/maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth
    resolve_weights("imagenet-r50", purpose="train")      # ~/.cache/maskrcnn/weights/resnet50-0676ba61.pth

An existing file always wins over a name. A value that is neither a file nor a name, and does not look like a path
(no folder, no extension), is taken for a mistyped name.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Literal

from maskrcnn.errors import UserError
from maskrcnn.http import HttpClient
from maskrcnn.zoo import registry
from maskrcnn.zoo.cache import fetch
from maskrcnn.zoo.registry import WeightsEntry, find_entry

Purpose = Literal["predict", "train"]


def resolve_weights(
    value: str | os.PathLike,
    *,
    purpose: Purpose,
    home: Path | None = None,
    http: HttpClient | None = None,
    progress: bool | None = None,
    entries: tuple[WeightsEntry, ...] | None = None,
) -> Path:
    """The weights file for ``value``: the path itself when it exists (or looks like a path), else the cached
    download of the known weights called ``value``.

    purpose: "predict" (predict, evaluate, export, ``maskrcnn.load``) needs a whole detector; "train" also takes
    an ImageNet backbone. UserError for an unknown name, an entry not usable yet or not for this purpose, and for
    the failures of ``zoo.cache.fetch``. entries: the known weights (default: ``registry.ENTRIES``).
    """
    entries = registry.ENTRIES if entries is None else entries
    path = Path(value)
    if path.exists():
        return path
    entry = find_entry(str(value), entries)
    if entry is None:
        if path.suffix or len(path.parts) > 1:
            return path  # a path: the loader says the file is missing
        raise UserError(_unknown_name(str(value), entries))
    if entry.kind == "backbone" and purpose != "train":
        raise UserError(
            f"weights {entry.name} are an ImageNet {entry.architecture} backbone, not a detector: start training "
            f"from them (maskrcnn train --weights {entry.name}) and predict with the trained model"
        )
    return fetch(entry, home=home, http=http, progress=progress)


def _unknown_name(value: str, entries: tuple[WeightsEntry, ...]) -> str:
    names = [e.name for e in entries]
    close = difflib.get_close_matches(value.lower(), names, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return (
        f"weights {value!r} are neither a file nor a known name{hint}; "
        f"known names: {', '.join(names)} (maskrcnn weights list)"
    )
